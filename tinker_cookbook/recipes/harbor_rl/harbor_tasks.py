"""Harbor task folders, loaded and validated by Harbor's own `Task` model, so that every
`task.toml` field means what it means in Harbor. A dataset never fails whole for one bad task:
the loader skips it with one line naming the task and the reason (`strict=True` raises)."""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harbor.constants import DATASET_CACHE_DIR, TASK_CACHE_DIR
from harbor.models.task.task import Task
from harbor.models.task.verifier_mode import resolve_task_verifier_mode

logger = logging.getLogger(__name__)

BUNDLED_TASKS_DIR = Path(__file__).parent / "tasks"


class HarborTaskError(ValueError):
    """A task that cannot be loaded or run; the message names the task."""


@dataclass
class HarborTask:
    """One Harbor task (the Tinker cookbook's fields: `task_name`, `instruction`, `task_dir`,
    `config` as the raw task.toml), with Harbor's parsed `Task` beside them."""

    task_name: str
    instruction: str
    task_dir: Path
    config: dict[str, Any] = field(default_factory=dict)
    harbor: Task | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.task_dir = Path(self.task_dir)
        if self.harbor is None:
            self.harbor = _harbor_task(self.task_dir, self.task_name)

    @property
    def name(self) -> str:
        return self.task_name

    @property
    def path(self) -> Path:
        return self.task_dir

    @property
    def environment_dir(self) -> Path:
        return self.task_dir / "environment"

    def unsupported_reason(self) -> str | None:
        """Why an episode cannot run this task as Harbor would (None: it can)."""
        assert self.harbor is not None
        config = self.harbor.config
        if config.steps:
            return (
                f"task {self.task_name!r} has {len(config.steps)} [[steps]]: multi-step tasks "
                "are run by Harbor's trial loop, not as one RL episode"
            )
        if resolve_task_verifier_mode(config).value == "separate":
            return (
                f"task {self.task_name!r} grades in a separate verifier environment; an RL "
                "episode grades in the agent's own environment"
            )
        return None


def _harbor_task(task_dir: Path, name: str) -> Task:
    try:
        return Task(task_dir)
    except Exception as exc:  # noqa: BLE001 - Harbor raises many types; each names the problem
        raise HarborTaskError(f"task {name!r} ({task_dir}): {type(exc).__name__}: {exc}") from exc


def load_harbor_task(path: str | Path) -> HarborTask:
    path = Path(path)
    if not (path / "task.toml").is_file():
        raise HarborTaskError(f"task {path.name!r} ({path}) has no task.toml")
    try:
        raw = tomllib.loads((path / "task.toml").read_text())
    except tomllib.TOMLDecodeError as exc:
        raise HarborTaskError(f"task {path.name!r}: task.toml is not valid TOML ({exc})") from exc
    task = _harbor_task(path, path.name)
    if not task.has_steps and not task.instruction.strip():
        raise HarborTaskError(f"task {path.name!r}: instruction.md is empty")
    return HarborTask(path.name, task.instruction, path, raw, task)


def find_harbor_tasks(root: str | Path, max_depth: int = 5) -> list[Path]:
    """Task folders (those holding task.toml) under `root`: flat or nested layouts."""
    root = Path(root).expanduser()
    found: list[Path] = []

    def walk(folder: Path, depth: int) -> None:
        if (folder / "task.toml").is_file():
            found.append(folder)
            return
        if depth < max_depth:
            for child in sorted(
                p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
            ):
                walk(child, depth + 1)

    if not root.is_dir():
        raise HarborTaskError(f"tasks folder {str(root)!r} does not exist")
    walk(root, 0)
    return found


def dataset_candidates(dataset: str) -> list[Path]:
    """Where `harbor datasets download NAME@VERSION` (and older Harbor releases) put it."""
    name, _, version = dataset.partition("@")
    return [
        DATASET_CACHE_DIR / name / version if version else DATASET_CACHE_DIR / name,
        TASK_CACHE_DIR / dataset,
        TASK_CACHE_DIR / name,
        Path.cwd() / dataset,
    ]


def resolve_tasks_dir(tasks_dir: str | None, dataset: str | None) -> Path:
    """`tasks_dir` if given; else where Harbor downloaded `dataset`; else the bundled pack."""
    if tasks_dir:
        return Path(tasks_dir).expanduser()
    if not dataset:
        return BUNDLED_TASKS_DIR
    for candidate in dataset_candidates(dataset):
        if candidate.is_dir():
            return candidate
    looked = ", ".join(str(c) for c in dataset_candidates(dataset))
    raise HarborTaskError(
        f"dataset {dataset!r} was not found (looked in {looked}); download it with "
        f"`uvx harbor datasets download {dataset}` or pass tasks_dir=/path/to/tasks"
    )


@dataclass
class LoadedTasks:
    tasks: list[HarborTask]
    skipped: list[tuple[str, str]]  # (task folder, reason)


def load_tasks(
    folder: Path, name_filter: str | None = None, strict: bool = False, quiet: bool = False
) -> LoadedTasks:
    """Every task under `folder` (whose name contains `name_filter`). A task Harbor cannot load,
    or that cannot run as one episode, is skipped with one line saying why."""
    tasks, skipped = [], []
    for path in find_harbor_tasks(folder):
        if name_filter and name_filter not in path.name:
            continue
        try:
            task = load_harbor_task(path)
            reason = task.unsupported_reason()
            if reason:
                raise HarborTaskError(reason)
        except HarborTaskError as exc:
            if strict:
                raise
            skipped.append((path.name, str(exc)))
            if not quiet:
                print(f"skipped task {path.name}: {exc}")
            continue
        tasks.append(task)
    if skipped and not quiet:
        print(f"{len(skipped)} of {len(skipped) + len(tasks)} tasks in {folder} skipped "
              "(strict=True makes this an error)")  # fmt: skip
    if not tasks:
        raise HarborTaskError(
            f"no usable Harbor tasks in {folder}"
            + (f" matching {name_filter!r}" if name_filter else "")
            + (f" ({len(skipped)} skipped; first: {skipped[0][1]})" if skipped else "")
        )
    return LoadedTasks(tasks, skipped)


def load_harbor_tasks(dataset: str) -> list[HarborTask]:
    """The Tinker cookbook's loader: every usable task of a downloaded Harbor dataset."""
    return load_tasks(resolve_tasks_dir(None, dataset)).tasks
