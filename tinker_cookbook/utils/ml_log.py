"""Metrics to `metrics.jsonl`, a console table, a log file, and Weights & Biases when asked."""

from __future__ import annotations

import io
import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tinker_cookbook.utils.checkpoints import append_jsonl

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
LOG_FILE = "log.txt"


def config_to_dict(config: Any) -> dict[str, Any]:
    import chz

    return json.loads(
        json.dumps(chz.asdict(config) if chz.is_chz(config) else dict(config), default=str)
    )


def read_metrics(log_path: str | Path) -> list[dict[str, Any]]:
    path = Path(log_path) / METRICS_FILE
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
    return rows


class MetricsLogger:
    """One `log_metrics(metrics, step)` call per step. On resume (`start_step > 0`) entries of
    steps at or after `start_step` are dropped first, so no step is ever recorded twice."""

    def __init__(
        self,
        log_path: str | Path,
        config: Any = None,
        wandb_project: str | None = None,
        wandb_name: str | None = None,
        start_step: int = 0,
        print_every: int = 1,
    ):
        self.log_path = Path(log_path)
        self.log_path.mkdir(parents=True, exist_ok=True)
        self.print_every = print_every
        self._truncate_from(start_step)
        if config is not None:
            (self.log_path / CONFIG_FILE).write_text(json.dumps(config_to_dict(config), indent=2))
        _attach_file_log(self.log_path / LOG_FILE)
        self._wandb = (
            _init_wandb(self.log_path, wandb_project, wandb_name, config) if wandb_project else None
        )

    def _truncate_from(self, start_step: int) -> None:
        kept = [r for r in read_metrics(self.log_path) if r.get("step", -1) < start_step]
        path = self.log_path / METRICS_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        os.replace(tmp, path)

    def log_metrics(self, metrics: dict[str, Any], step: int) -> None:
        record = {"step": step, **metrics}
        append_jsonl(self.log_path / METRICS_FILE, record)
        logging.getLogger("tinker_cookbook.metrics").info(json.dumps(record))
        if self._wandb is not None:
            self._wandb.log(metrics, step=step)
        if step % self.print_every == 0:
            _write_console(format_table(record))

    def close(self) -> None:
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


def format_table(record: dict[str, Any]) -> str:
    table = Table(show_header=False, box=None, padding=(0, 1))
    for key, value in record.items():
        table.add_row(key, f"{value:.6g}" if isinstance(value, float) else str(value))
    buffer = io.StringIO()
    Console(file=buffer, width=100, force_terminal=False).print(table)
    return buffer.getvalue().rstrip()


def _write_console(text: str) -> None:
    from tqdm import tqdm

    tqdm.write(text)  # keeps an active progress bar intact


def _attach_file_log(path: Path) -> None:
    root = logging.getLogger("tinker_cookbook")
    root.setLevel(logging.INFO)
    if not any(
        isinstance(h, logging.FileHandler) and h.baseFilename == str(path) for h in root.handlers
    ):
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)


def _init_wandb(log_path: Path, project: str, name: str | None, config: Any):
    """Online when an API key is configured, else offline (no account needed; `wandb sync`
    uploads later). The run id is kept in log_path so a resumed run continues the same run."""
    import wandb

    mode = os.environ.get("WANDB_MODE")
    if mode is None:
        has_key = bool(os.environ.get("WANDB_API_KEY")) or _netrc_has_wandb()
        mode = "online" if has_key else "offline"
    id_file = log_path / "wandb_id.txt"
    run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:8]
    id_file.write_text(run_id)
    return wandb.init(
        project=project,
        name=name or log_path.name,
        id=run_id,
        resume="allow",
        dir=str(log_path),
        mode=mode,
        config=config_to_dict(config) if config is not None else None,
    )


def _netrc_has_wandb() -> bool:
    netrc = Path.home() / ".netrc"
    return netrc.exists() and "api.wandb.ai" in netrc.read_text()
