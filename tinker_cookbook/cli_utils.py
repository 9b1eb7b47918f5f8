"""Command-line helpers every training entry point shares: what to do with an existing log
directory, and reading one setting from argv before the rest is parsed."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Literal, get_args

from tinker_cookbook.utils.checkpoints import get_last_checkpoint

LogdirBehavior = Literal["delete", "resume", "ask", "raise"]
LOGDIR_BEHAVIORS: tuple[str, ...] = get_args(LogdirBehavior)


def model_name_from_argv(argv: list[str], default: str) -> str:
    """The last `model_name=...` in argv (chz's precedence), for settings that depend on the
    model (renderer, tokenizer) and must be known before the rest of argv is applied."""
    model_name = default
    for arg in argv:
        if arg.startswith("model_name="):
            model_name = arg.removeprefix("model_name=")
    return model_name


def check_log_dir(log_dir: str, behavior_if_exists: LogdirBehavior) -> None:
    """Call before training into `log_dir`. When it already holds files:
    `resume` keeps them (the training loop continues from the last checkpoint, also past a
    finished run's end when more steps are asked for, and says what it decided), `delete` removes
    them (a fresh run), `raise` refuses, `ask` asks on the terminal (refuses without one).
    Says on the console what it did."""
    if behavior_if_exists not in LOGDIR_BEHAVIORS:
        raise ValueError(
            f"behavior_if_log_dir_exists={behavior_if_exists!r} is not one of {LOGDIR_BEHAVIORS}"
        )
    path = Path(log_dir).expanduser()
    if not path.exists() or not any(path.iterdir()):
        return
    behavior = _ask(path) if behavior_if_exists == "ask" else behavior_if_exists
    if behavior == "raise":
        raise FileExistsError(
            f"log_path {str(path)!r} already holds a run (behavior_if_log_dir_exists=raise); "
            "pass behavior_if_log_dir_exists=resume to continue it or =delete to start over"
        )
    if behavior == "delete":
        print(f"{path}: deleting the earlier run there and starting over")
        shutil.rmtree(path)
        return
    print(f"{path}: {_resume_summary(path)} (behavior_if_log_dir_exists=resume)")


def _resume_summary(path: Path) -> str:
    last = get_last_checkpoint(path)
    if last is None:
        return "an earlier run without a checkpoint; starting from step 0, keeping its logs"
    if last.get("name") == "final":
        return f"found the earlier run, finished at step {last.get('step', last.get('batch'))}"
    step = last.get("step", last.get("batch"))
    return f"resuming the earlier run from its checkpoint {last.get('name')!r} at step {step}"


def _ask(path: Path) -> str:
    if not sys.stdin.isatty():
        raise FileExistsError(
            f"log_path {str(path)!r} already holds a run and there is no terminal to ask: "
            "set behavior_if_log_dir_exists=resume, delete or raise"
        )
    while True:
        answer = input(f"{path} already holds a run. [delete, resume, exit]: ").strip().lower()
        if answer in ("delete", "resume"):
            return answer
        if answer == "exit":
            raise SystemExit(0)
        print(f"Invalid input {answer!r}: enter delete, resume or exit")


def prepare_log_dir(log_path: str | Path, behavior: LogdirBehavior) -> bool:
    """Make `log_path` ready (through `check_log_dir`); True when an earlier run there should
    be resumed."""
    check_log_dir(str(log_path), behavior)
    path = Path(log_path).expanduser()
    resuming = path.exists() and any(path.iterdir())
    path.mkdir(parents=True, exist_ok=True)
    return resuming
