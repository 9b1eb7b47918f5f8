"""`log_path/checkpoints.jsonl`: one line per saved checkpoint, written after the save is done,
so the last complete line always names a checkpoint that loads; rerunning a command resumes
from it."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

CHECKPOINTS_FILE = "checkpoints.jsonl"
LOG_DIR_BEHAVIORS = ("resume", "overwrite", "ask", "raise")
logger = logging.getLogger(__name__)


def load_checkpoints(log_path: str | Path) -> list[dict[str, Any]]:
    """Every complete record; a line cut short by a crash is ignored."""
    path = Path(log_path) / CHECKPOINTS_FILE
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            logger.warning("Ignoring an incomplete line in %s", path)
    return records


def get_last_checkpoint(
    log_path: str | Path, required_key: str = "state_path"
) -> dict[str, Any] | None:
    records = [r for r in load_checkpoints(log_path) if r.get(required_key)]
    return records[-1] if records else None


def _start_saves(training_client, name: str, kind: str) -> dict[str, Any]:
    if kind not in ("state", "sampler", "both"):
        raise ValueError(f"checkpoint kind {kind!r} is not 'state', 'sampler' or 'both'")
    futures = {}
    if kind in ("state", "both"):
        futures["state_path"] = training_client.save_state(name)
    if kind in ("sampler", "both"):
        futures["sampler_path"] = training_client.save_weights_for_sampler(name)
    return futures


def save_checkpoint(
    training_client,
    name: str,
    log_path: str | Path,
    loop_state: dict[str, Any],
    kind: str = "state",
) -> dict[str, Any]:
    """Save `state` (weights + optimizer, for resuming), `sampler` weights, or `both`, then
    record them with the loop's position (`loop_state`, e.g. {"step": 40})."""
    futures = _start_saves(training_client, name, kind)
    record = {"name": name, **loop_state, **{k: f.result().path for k, f in futures.items()}}
    append_jsonl(Path(log_path) / CHECKPOINTS_FILE, record)
    return record


async def save_checkpoint_async(
    training_client,
    name: str,
    log_path: str | Path,
    loop_state: dict[str, Any],
    kind: str = "state",
) -> dict[str, Any]:
    """`save_checkpoint` for code running in an event loop."""
    futures = _start_saves(training_client, name, kind)
    record = {"name": name, **loop_state, **{k: (await f).path for k, f in futures.items()}}
    append_jsonl(Path(log_path) / CHECKPOINTS_FILE, record)
    return record


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one line; a previous line cut short by a crash is closed first, so only it
    (never the new record) is unreadable."""
    starts_clean = not path.exists() or path.stat().st_size == 0 or path.read_bytes()[-1:] == b"\n"
    with open(path, "a") as fh:
        fh.write(("" if starts_clean else "\n") + json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def prepare_log_dir(log_path: str | Path, behavior: str) -> bool:
    """Make `log_path` ready; returns True when an earlier run there should be resumed."""
    if behavior not in LOG_DIR_BEHAVIORS:
        raise ValueError(
            f"behavior_if_log_dir_exists={behavior!r} is not one of {LOG_DIR_BEHAVIORS}"
        )
    path = Path(log_path)
    if not path.exists() or not any(path.iterdir()):
        path.mkdir(parents=True, exist_ok=True)
        return False
    if behavior == "ask":
        behavior = _ask(path)
    if behavior == "raise":
        raise FileExistsError(
            f"log_path {str(path)!r} already holds a run (behavior_if_log_dir_exists=raise)"
        )
    if behavior == "overwrite":
        shutil.rmtree(path)
        path.mkdir(parents=True)
        return False
    return True


def _ask(path: Path) -> str:
    import sys

    if not sys.stdin.isatty():
        raise FileExistsError(
            f"log_path {str(path)!r} already holds a run and there is no terminal to ask: "
            "set behavior_if_log_dir_exists=resume, overwrite or raise"
        )
    answer = input(f"{path} already holds a run: [r]esume, [o]verwrite or [q]uit? ").strip().lower()
    return {"r": "resume", "o": "overwrite"}.get(answer[:1], "raise")
