"""Harbor task folders: loading, finding them on disk, and building their environment in a
local sandbox from `environment/Dockerfile`."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinker_cookbook.sandbox import LocalSandbox, LocalSandboxConfig

BUNDLED_TASKS_DIR = Path(__file__).parent / "tasks"
SUPPORTED = ("FROM", "WORKDIR", "ENV", "ARG", "COPY", "RUN")
IGNORED = (
    "LABEL",
    "EXPOSE",
    "CMD",
    "ENTRYPOINT",
    "USER",
    "SHELL",
    "MAINTAINER",
    "STOPSIGNAL",
    "VOLUME",
)


class HarborTaskError(ValueError):
    """A task that cannot be loaded or prepared; the message names the task."""


@dataclass
class HarborTask:
    name: str
    path: Path
    instruction: str
    config: dict[str, Any]

    def timeout(self, section: str, default: float) -> float:
        return float(self.config.get(section, {}).get("timeout_sec", default))

    @property
    def environment_dir(self) -> Path:
        return self.path / "environment"


def load_harbor_task(path: str | Path) -> HarborTask:
    path = Path(path)
    name = path.name
    for required in ("task.toml", "instruction.md", "tests/test.sh"):
        if not (path / required).is_file():
            raise HarborTaskError(f"task {name!r} ({path}) has no {required}")
    try:
        config = tomllib.loads((path / "task.toml").read_text())
    except tomllib.TOMLDecodeError as exc:
        raise HarborTaskError(f"task {name!r}: task.toml is not valid TOML ({exc})") from exc
    instruction = (path / "instruction.md").read_text().strip()
    if not instruction:
        raise HarborTaskError(f"task {name!r}: instruction.md is empty")
    return HarborTask(name=name, path=path, instruction=instruction, config=config)


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


def resolve_tasks_dir(tasks_dir: str | None, dataset: str | None) -> Path:
    """`tasks_dir` if given; else where `harbor datasets download NAME@VERSION` put `dataset`;
    else the bundled tasks."""
    if tasks_dir:
        return Path(tasks_dir).expanduser()
    if not dataset:
        return BUNDLED_TASKS_DIR
    name, _, version = dataset.partition("@")
    candidates = [
        Path.home() / ".cache" / "harbor" / "tasks" / dataset,
        Path.home() / ".cache" / "harbor" / "datasets" / name / version,
        Path.home() / ".cache" / "harbor" / "tasks" / name,
        Path.cwd() / dataset,
        Path.cwd() / "datasets" / dataset,
    ]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise HarborTaskError(
        f"dataset {dataset!r} was not found (looked in {looked}); download it with "
        f"`uvx harbor datasets download {dataset}` or pass tasks_dir=/path/to/tasks"
    )


def load_tasks(folder: Path, name_filter: str | None = None) -> list[HarborTask]:
    tasks = [load_harbor_task(p) for p in find_harbor_tasks(folder)]
    if name_filter:
        tasks = [t for t in tasks if name_filter in t.name]
    if not tasks:
        raise HarborTaskError(
            f"no Harbor tasks in {folder}" + (f" matching {name_filter!r}" if name_filter else "")
        )
    return tasks


# ---- environment/Dockerfile -> sandbox ---------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[int, str, str]]:
    """(line number, INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    out, buffer, start = [], "", 0
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if not line.strip() or line.lstrip().startswith("#"):  # also inside a continuation
            continue
        if not buffer:
            start = n
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        keyword, _, rest = buffer.strip().partition(" ")
        out.append((start, keyword.upper(), rest.strip()))
        buffer = ""
    return out


def _exec_form(args: str) -> str:
    """`["a", "b"]` -> a shell command line; shell form passes through."""
    if args.startswith("["):
        return " ".join(shlex.quote(a) for a in json.loads(args))
    return args


def _parse_env(args: str, known: dict[str, str]) -> dict[str, str]:
    """`ENV K=V K2="v 2"` or `ENV K value`, with $VAR / ${VAR} expanded from `known`."""
    if "=" not in args.split(" ", 1)[0]:
        key, _, value = args.partition(" ")
        pairs = {key: value.strip().strip('"')}
    else:
        pairs = {k: v for k, _, v in (item.partition("=") for item in shlex.split(args))}
    out = {}
    for key, value in pairs.items():
        out[key] = expand_vars(value, {**known, **out})
    return out


def expand_vars(text: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), text)


async def prepare_sandbox(
    task: HarborTask, config: LocalSandboxConfig | None = None
) -> LocalSandbox:
    """A fresh sandbox with the task's environment built in it (WORKDIR, ENV, ARG, COPY, RUN
    of its Dockerfile; FROM is served by this machine's own /usr)."""
    sandbox = LocalSandbox(config)
    try:
        await _build(task, sandbox)
    except BaseException:
        await sandbox.cleanup()
        raise
    return sandbox


async def _build(task: HarborTask, sandbox: LocalSandbox) -> None:
    env_dir = task.environment_dir
    if (env_dir / "docker-compose.yaml").exists() or (env_dir / "docker-compose.yml").exists():
        raise HarborTaskError(
            f"task {task.name!r}: docker-compose environments need a container engine"
        )
    dockerfile = env_dir / "Dockerfile"
    steps = dockerfile_instructions(dockerfile.read_text()) if dockerfile.exists() else []
    build_timeout = float(task.config.get("environment", {}).get("build_timeout_sec", 600))
    workdir, env = "/", {}
    known = dict(sandbox.env)  # PATH, HOME, ... for $VAR expansion
    for line, keyword, args in steps:
        where = f"task {task.name!r}: Dockerfile line {line}"
        if keyword in IGNORED or keyword == "FROM":
            continue
        if keyword not in SUPPORTED:
            raise HarborTaskError(
                f"{where}: {keyword} is not supported by the local sandbox (supported: {', '.join(SUPPORTED)})"
            )
        if keyword == "WORKDIR":
            workdir = str(Path(workdir) / expand_vars(args.strip('"'), {**known, **env}))
            await _run(sandbox, f"mkdir -p {shlex.quote(workdir)}", "/", env, build_timeout, where)
        elif keyword in ("ENV", "ARG"):
            if keyword == "ARG" and "=" not in args:
                continue
            env.update(_parse_env(args, {**known, **env}))
        elif keyword == "RUN":
            await _run(sandbox, _exec_form(args), workdir, env, build_timeout, where)
        elif keyword == "COPY":
            await _copy(sandbox, env_dir, args, workdir, where)
    sandbox.workdir = workdir
    sandbox.env.update(env)


async def _run(
    sandbox: LocalSandbox, command: str, workdir: str, env: dict, timeout: float, where: str
) -> None:
    result = await sandbox.run_command(command, workdir=workdir, env=env, timeout=timeout)
    if not result.ok:
        tail = (result.stderr or result.stdout).strip()[-500:]
        status = "timed out" if result.timed_out else f"exit {result.exit_code}"
        raise HarborTaskError(f"{where}: `{command[:120]}` failed ({status}): {tail}")


async def _copy(sandbox: LocalSandbox, context: Path, args: str, workdir: str, where: str) -> None:
    parts = [
        p
        for p in (json.loads(args) if args.startswith("[") else shlex.split(args))
        if not p.startswith("--")
    ]
    if len(parts) < 2:
        raise HarborTaskError(f"{where}: COPY needs a source and a destination")
    *sources, raw_dest = parts
    dest = raw_dest if raw_dest.startswith("/") else str(Path(workdir) / raw_dest)
    into_dir = raw_dest.endswith("/") or len(sources) > 1
    if not into_dir:  # Docker copies into an existing directory too
        into_dir = (
            await sandbox.run_command(f"test -d {shlex.quote(dest)}", timeout=10)
        ).exit_code == 0
    for src in sources:
        host = (context / src).resolve()
        if not host.is_relative_to(context.resolve()) or not host.exists():
            raise HarborTaskError(f"{where}: COPY source {src!r} is not inside environment/")
        if host.is_dir():
            await sandbox.upload_dir(host, dest)
        else:
            await sandbox.upload_file(host, f"{dest.rstrip('/')}/{host.name}" if into_dir else dest)
