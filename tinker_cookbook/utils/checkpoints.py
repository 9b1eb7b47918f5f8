"""`log_path/checkpoints.jsonl`: one line per saved checkpoint, written after the save is done,
so the last complete line always names a checkpoint that loads; rerunning a command resumes
from it. A record also names the renderer the run trained with, so that loading the
checkpoint later (student, teacher, evaluation) can use the same chat format."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

CHECKPOINTS_FILE = "checkpoints.jsonl"
RENDERER_KEY = "renderer_name"
CheckpointKind = Literal["state", "sampler", "both"]
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


def renderer_name_recorded_for(checkpoint_path: str) -> str | None:
    """The renderer recorded with a local checkpoint: the record naming `checkpoint_path` in the
    nearest `checkpoints.jsonl` above it (the local backend saves inside the run's folder)."""
    if "://" in checkpoint_path:
        return None
    path = Path(checkpoint_path).expanduser().resolve()
    for folder in [path, *path.parents]:
        if not (folder / CHECKPOINTS_FILE).exists():
            continue
        for record in reversed(load_checkpoints(folder)):
            paths = [record.get("state_path"), record.get("sampler_path")]
            if any(p and Path(p).expanduser().resolve() == path for p in paths):
                return record.get(RENDERER_KEY)
        return None
    return None


def _start_saves(
    training_client, name: str, kind: CheckpointKind, ttl_seconds: int | None = None
) -> dict[str, Any]:
    if kind not in ("state", "sampler", "both"):
        raise ValueError(f"checkpoint kind {kind!r} is not 'state', 'sampler' or 'both'")
    ttl = {} if ttl_seconds is None else {"ttl_seconds": ttl_seconds}
    futures = {}
    if kind in ("state", "both"):
        futures["state_path"] = training_client.save_state(name, **ttl)
    if kind in ("sampler", "both"):
        futures["sampler_path"] = training_client.save_weights_for_sampler(name, **ttl)
    return futures


def save_checkpoint(
    training_client,
    name: str,
    log_path: str | Path,
    loop_state: dict[str, Any],
    kind: CheckpointKind = "state",
    ttl_seconds: int | None = None,
) -> dict[str, Any]:
    """Save `state` (weights + optimizer, for resuming), `sampler` weights, or `both`, then
    record them with the loop's position and run facts (`loop_state`, e.g.
    {"step": 40, "renderer_name": "qwen3"})."""
    futures = _start_saves(training_client, name, kind, ttl_seconds)
    record = {"name": name, **loop_state, **{k: f.result().path for k, f in futures.items()}}
    append_jsonl(Path(log_path) / CHECKPOINTS_FILE, record)
    return record


async def save_checkpoint_async(
    training_client,
    name: str,
    log_path: str | Path,
    loop_state: dict[str, Any],
    kind: CheckpointKind = "state",
    ttl_seconds: int | None = None,
) -> dict[str, Any]:
    """`save_checkpoint` for code running in an event loop."""
    futures = _start_saves(training_client, name, kind, ttl_seconds)
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
