"""`environment=local`: Harbor tasks in the engine-free `LocalSandbox`, for tasks that need no
image of their own.

The sandbox's userland is this host's read-only `/usr`, so it stands in for exactly one image:
the project's Debian base image (`BASE_IMAGE`, built from the same Debian release). A task is
run only when the sandbox reproduces its Dockerfile faithfully: `FROM` that image, then
`WORKDIR`, `ENV`, `ARG`, `COPY` (from the build context) and `RUN` lines that install nothing.
Anything else (another image, package installs, `COPY --from`, `USER`, compose services,
non-root users) is refused with the task and the Dockerfile line, never approximated.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

from harbor.models.task.config import TaskConfig

from tinker_cookbook.sandbox.base import SandboxInterface
from tinker_cookbook.sandbox.harbor_adapter import SandboxEnvironment
from tinker_cookbook.sandbox.local import LocalSandbox, LocalSandboxConfig

BASE_IMAGE = "localhost/tinker-cookbook-debian:bookworm"
LOCAL_IMAGES = (BASE_IMAGE, "tinker-cookbook-debian:bookworm")
APPLIED = ("FROM", "WORKDIR", "ENV", "ARG", "COPY", "RUN")
# Instructions that change nothing Harbor's container would show the agent (Harbor replaces
# the container's command, and metadata has no effect inside it).
NO_EFFECT = ("LABEL", "EXPOSE", "CMD", "ENTRYPOINT", "MAINTAINER", "STOPSIGNAL", "HEALTHCHECK")
# Commands that install software or users: the read-only host /usr cannot take them.
INSTALLERS = re.compile(
    r"(?:^|&&|\|\||;|\||\bsudo\s+)\s*(apt-get|apt|aptitude|dpkg|apk|yum|dnf|microdnf|zypper|"
    r"pacman|pip|pip3|uv|pipx|conda|mamba|npm|npx|yarn|pnpm|gem|cargo|go|useradd|adduser|"
    r"groupadd|addgroup|curl|wget|git)\b"
)


class LocalEnvironmentError(ValueError):
    """A task the local sandbox cannot reproduce faithfully; the message names why."""


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


def local_support_problems(task_name: str, environment_dir: Path, config: TaskConfig) -> list[str]:
    """Why the local sandbox cannot run this task as Harbor would (empty: it can)."""
    where = f"task {task_name!r}"
    problems = []
    if any((environment_dir / f).exists() for f in ("docker-compose.yaml", "docker-compose.yml")):
        problems.append(f"{where}: docker-compose services need a container engine")
    if config.environment.docker_image:
        problems.append(
            f"{where}: prebuilt image {config.environment.docker_image!r} needs a container engine"
        )
    for section, user in (("agent", config.agent.user), ("verifier", config.verifier.user)):
        if user not in (None, "root", 0):
            problems.append(
                f"{where}: [{section}] user = {user!r} (the local sandbox runs as root)"
            )
    if config.steps:
        problems.append(f"{where}: multi-step tasks ([[steps]]) are not run by the local sandbox")
    if config.environment.gpus or config.environment.mcp_servers:
        problems.append(f"{where}: GPUs and MCP servers need a container engine")
    dockerfile = environment_dir / "Dockerfile"
    if not dockerfile.exists():
        if not problems:
            problems.append(f"{where}: environment/Dockerfile is missing")
        return problems
    steps = dockerfile_instructions(dockerfile.read_text())
    froms = [(n, args) for n, keyword, args in steps if keyword == "FROM"]
    if len(froms) != 1:
        problems.append(
            f"{where}: Dockerfile has {len(froms)} FROM lines (multi-stage builds need an engine)"
        )
    for line, keyword, args in steps:
        at = f"{where}: Dockerfile line {line} ({keyword} {args[:80]})"
        if keyword == "FROM" and args.split()[0] not in LOCAL_IMAGES:
            problems.append(f"{at}: the local sandbox provides only {BASE_IMAGE}")
        elif keyword == "COPY" and "--from" in args:
            problems.append(f"{at}: COPY --from needs another image")
        elif keyword == "RUN" and INSTALLERS.search(_exec_form(args)):
            problems.append(f"{at}: installs software or users (the sandbox's /usr is read-only)")
        elif keyword not in APPLIED and keyword not in NO_EFFECT:
            problems.append(f"{at}: {keyword} is not reproduced by the local sandbox")
    if not Path("/etc/debian_version").exists():
        problems.append(f"{where}: the local sandbox serves {BASE_IMAGE} from a Debian host only")
    return problems


class LocalEnvironment(SandboxEnvironment):
    """A Harbor environment whose `start` builds the task's Dockerfile in a fresh
    `LocalSandbox`. Options (Harbor `environment_kwargs`): `memory_mb`, `max_processes`."""

    def __init__(self, memory_mb: int = 1024, max_processes: int = 256, **harbor_kwargs: Any):
        self.sandbox_config = LocalSandboxConfig(
            memory_mb=int(memory_mb), max_processes=int(max_processes)
        )
        super().__init__(sandbox=None, **harbor_kwargs)  # type: ignore[arg-type]

    @staticmethod
    def type() -> str:
        return "local"

    def _validate_definition(self) -> None:
        config = TaskConfig(environment=self.task_env_config)
        problems = local_support_problems(self.environment_name, self.environment_dir, config)
        if problems:
            raise LocalEnvironmentError("; ".join(problems))

    async def start(self, force_build: bool) -> None:
        sandbox = LocalSandbox(self.sandbox_config)
        try:
            await build_from_dockerfile(sandbox, self.environment_dir, self.environment_name,
                                        self.task_env_config.build_timeout_sec)  # fmt: skip
            await sandbox.run_command("mkdir -p /logs/agent /logs/verifier /logs/artifacts")
        except BaseException:
            await sandbox.cleanup()
            raise
        if self.task_env_config.workdir:
            sandbox.workdir = self.task_env_config.workdir
        sandbox.env.update(self.task_env_config.env)
        self.sandbox = sandbox


async def build_from_dockerfile(
    sandbox: LocalSandbox, context: Path, task_name: str, timeout: float
) -> None:
    """Applies WORKDIR, ENV, ARG, COPY and RUN of `context/Dockerfile` in `sandbox` (FROM is
    the host's own userland; `local_support_problems` has refused everything else)."""
    workdir, env = "/", {}
    known = dict(sandbox.env)  # PATH, HOME, ... for $VAR expansion
    for line, keyword, args in dockerfile_instructions((context / "Dockerfile").read_text()):
        where = f"task {task_name!r}: Dockerfile line {line}"
        if keyword == "WORKDIR":
            workdir = str(Path(workdir) / expand_vars(args.strip('"'), {**known, **env}))
            await _run(sandbox, f"mkdir -p {shlex.quote(workdir)}", "/", env, timeout, where)
        elif keyword in ("ENV", "ARG"):
            if keyword == "ARG" and "=" not in args:
                continue
            env.update(_parse_env(args, {**known, **env}))
        elif keyword == "RUN":
            await _run(sandbox, _exec_form(args), workdir, env, timeout, where)
        elif keyword == "COPY":
            await _copy(sandbox, context, args, workdir, where)
    sandbox.workdir = workdir
    sandbox.env.update(env)


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
    out: dict[str, str] = {}
    for key, value in pairs.items():
        out[key] = expand_vars(value, {**known, **out})
    return out


def expand_vars(text: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), text)


async def _run(
    sandbox: SandboxInterface, command: str, workdir: str, env: dict, timeout: float, where: str
) -> None:
    result = await sandbox.run_command(command, workdir=workdir, env=env, timeout=timeout)
    if not result.ok:
        tail = (result.stderr or result.stdout).strip()[-500:]
        status = "timed out" if result.timed_out else f"exit {result.exit_code}"
        raise LocalEnvironmentError(f"{where}: `{command[:120]}` failed ({status}): {tail}")


async def _copy(
    sandbox: SandboxInterface, context: Path, args: str, workdir: str, where: str
) -> None:
    parts = [
        p
        for p in (json.loads(args) if args.startswith("[") else shlex.split(args))
        if not p.startswith("--")
    ]
    if len(parts) < 2:
        raise LocalEnvironmentError(f"{where}: COPY needs a source and a destination")
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
            raise LocalEnvironmentError(f"{where}: COPY source {src!r} is not inside environment/")
        if host.is_dir():
            await sandbox.upload_dir(host, dest)
        else:
            await sandbox.upload_file(host, f"{dest.rstrip('/')}/{host.name}" if into_dir else dest)
