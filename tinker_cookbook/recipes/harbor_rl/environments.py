"""One episode's environment for a Harbor task: any environment type Harbor's factory knows
(docker, podman, modal, daytona, e2b, ...), the engine-free `local` sandbox, or a sandbox from a
user's `SandboxFactory`. Grading is Harbor's own `Verifier`, run as Harbor runs it."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from harbor.environments.base import BaseEnvironment
from harbor.environments.factory import EnvironmentFactory
from harbor.models.environment_type import EnvironmentType
from harbor.models.task.config import NetworkMode
from harbor.models.trial.paths import TrialPaths
from harbor.verifier.verifier import Verifier

from tinker_cookbook.recipes.harbor_rl.harbor_tasks import HarborTask, HarborTaskError
from tinker_cookbook.sandbox import SandboxInterface
from tinker_cookbook.sandbox.harbor_adapter import HarborSandbox, SandboxEnvironment
from tinker_cookbook.sandbox.local_environment import (
    BASE_IMAGE,
    LocalEnvironment,
    LocalEnvironmentError,
    local_support_problems,
)

# The Tinker cookbook's hook: (the task's environment/ folder, sandbox lifetime in seconds) ->
# a ready sandbox. It replaces the environment type; grading still runs Harbor's verifier in it.
SandboxFactory = Callable[[Path, int], Awaitable[SandboxInterface]]
LOCAL = "local"
FAST_STOP_OVERLAY = Path(__file__).parent / "compose" / "fast-stop.yaml"


class GradingError(RuntimeError):
    """The task's grader ran but produced no reward (missing file, crash, timeout, bad value)."""


def resolve_environment(name: str) -> str:
    """`auto` -> docker when its daemon answers, else podman when installed; other names are
    checked against Harbor's environment types (or `module:Class` import paths)."""
    if name == "auto":
        found = next((e for e in ("docker", "podman") if shutil.which(e) and _answers(e)), None)
        if found is not None:
            print(f"environment=auto: episodes run in {found}")
            name = found
    if name == "auto":
        raise HarborTaskError(
            "environment=auto found no working container engine (docker, podman); install one "
            "(`bash scripts/setup.sh` installs podman), or use environment=local for tasks "
            f"that build FROM {BASE_IMAGE} and install nothing"
        )
    known = [LOCAL, *(t.value for t in EnvironmentType)]
    if name not in known and ":" not in name:
        raise HarborTaskError(f"unknown environment {name!r}; choose auto, {', '.join(known)}, "
                              "or an import path module:Class")  # fmt: skip
    if name == "podman":
        _put_venv_on_path()
    return name


def _answers(engine: str) -> bool:
    try:
        return subprocess.run([engine, "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _put_venv_on_path() -> None:
    """Harbor finds podman-compose on PATH; it is installed beside this interpreter."""
    venv_bin = str(Path(sys.executable).parent)
    if not shutil.which("podman-compose") and (Path(venv_bin) / "podman-compose").exists():
        os.environ["PATH"] = f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"


class TaskEnvironment:
    """A started environment for one episode of `task`: `sandbox` runs the agent's commands
    (as `[agent] user`, in `[environment] workdir`), `verify` grades, `stop` removes it."""

    def __init__(self, task: HarborTask, environment: BaseEnvironment, sandbox: SandboxInterface,
                 trial_dir: Path):  # fmt: skip
        self.task, self.environment, self.sandbox, self.trial_dir = (
            task, environment, sandbox, trial_dir,
        )  # fmt: skip
        self._stopped = False

    @property
    def config(self):
        assert self.task.harbor is not None
        return self.task.harbor.config

    async def verify(self, timeout: float | None = None) -> dict[str, float]:
        """Harbor's verifier: tests uploaded to /tests, test.sh run as `[verifier] user` with
        `verifier.env` (templates resolved), rewards read from reward.json or reward.txt."""
        timeout = timeout or self.config.verifier.timeout_sec
        assert self.task.harbor is not None
        verifier = Verifier(self.task.harbor, TrialPaths(self.trial_dir), self.environment)
        try:
            with self.environment.with_default_user(self.config.verifier.user):
                result = await asyncio.wait_for(verifier.verify(), timeout=timeout)
        except TimeoutError as exc:
            raise GradingError(
                f"task {self.task.name!r}: verifier timed out after {timeout:g}s"
            ) from exc
        except Exception as exc:  # noqa: BLE001 - every verifier failure is a grading error
            cause = f"{type(exc).__name__}: {exc}"
            if exc.__cause__ is not None:
                cause += f" ({exc.__cause__})"
            raise GradingError(f"task {self.task.name!r}: {cause}"[:1500]) from exc
        rewards = {str(k): float(v) for k, v in (result.rewards or {}).items()}
        if not rewards:
            raise GradingError(f"task {self.task.name!r}: the verifier wrote an empty reward")
        return rewards

    async def run_solution(self, timeout: float | None = None) -> int:
        """The task's reference solution, as Harbor's oracle agent runs it: solution/ uploaded to
        /solution, solve.sh run as the agent user with `solution.env`. Returns its exit code."""
        from harbor.utils.env import resolve_env_vars

        await self.environment.upload_dir(self.task.task_dir / "solution", "/solution")
        env = resolve_env_vars(self.config.solution.env) if self.config.solution.env else None
        result = await self.sandbox.run_command(
            "bash /solution/solve.sh", timeout=timeout or self.config.agent.timeout_sec or 600,
            env=env, max_output_bytes=200_000,
        )  # fmt: skip
        return result.exit_code

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            await self.environment.stop(delete=False)
            if str(self.environment.type()) == "podman":
                await _untag_episode_image(self.environment.session_id)
        finally:
            shutil.rmtree(self.trial_dir, ignore_errors=True)


async def _untag_episode_image(session_id: str) -> None:
    """podman-compose tags each build `<project>_main`, one tag per episode; the image itself
    (and its layers, the build cache) stays for the task's next episode."""
    process = await asyncio.create_subprocess_exec(
        "podman", "image", "untag", f"localhost/{session_id}_main",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await process.wait()


async def start_environment(
    task: HarborTask,
    environment: str,
    environment_kwargs: dict[str, Any] | None = None,
    sandbox_factory: SandboxFactory | None = None,
    sandbox_timeout: int = 3600,
    work_dir: str | None = None,
) -> TaskEnvironment:
    """Builds (once per task and engine: images are reused) and starts one environment."""
    assert task.harbor is not None
    session = re.sub(r"[^a-z0-9_-]", "-", task.harbor.short_name.lower())
    trial_dir = Path(work_dir or tempfile.gettempdir()) / "tinker_harbor_trials"
    trial_dir /= f"{session}__{uuid.uuid4().hex[:8]}"
    paths = TrialPaths(trial_dir)
    paths.mkdir()
    common = dict(
        environment_dir=task.environment_dir, environment_name=task.harbor.short_name,
        session_id=trial_dir.name, trial_paths=paths, task_env_config=task.harbor.config.environment,
    )  # fmt: skip
    try:
        harbor_env = _create(task, environment, environment_kwargs or {}, sandbox_factory, common)
        if sandbox_factory is not None:
            harbor_env.sandbox = await sandbox_factory(task.environment_dir, sandbox_timeout)
        _rebind_build_lock(harbor_env)
        await _start(harbor_env, task.harbor.config.environment.build_timeout_sec)
    except Exception as exc:
        shutil.rmtree(trial_dir, ignore_errors=True)
        raise HarborTaskError(explain_start_failure(task, environment, exc)) from exc
    except BaseException:
        shutil.rmtree(trial_dir, ignore_errors=True)
        raise
    if isinstance(harbor_env, SandboxEnvironment):
        sandbox: SandboxInterface = harbor_env.sandbox
    else:
        sandbox = HarborSandbox(harbor_env, user=task.harbor.config.agent.user)
    return TaskEnvironment(task, harbor_env, sandbox, trial_dir)


async def _start(environment: BaseEnvironment, build_timeout: float) -> None:
    """`environment.start`, and on any failure its `stop`. An interrupt (Ctrl-C) first lets an
    in-flight start settle, briefly: a `compose up` still running after `compose down` would
    create a container nobody removes."""
    start = asyncio.ensure_future(environment.start(force_build=False))
    try:
        async with asyncio.timeout(build_timeout):
            await asyncio.shield(start)
    except BaseException as exc:
        if not start.done():
            if isinstance(exc, TimeoutError):
                start.cancel()
            await asyncio.wait([start], timeout=60)
        await environment.stop(delete=False)
        raise


def _rebind_build_lock(environment: BaseEnvironment) -> None:
    """Harbor's docker/podman environments serialise image builds with class-level asyncio
    locks, which stay bound to the first event loop that waited on them; a later
    `asyncio.run` in the same process (an evaluation after training, a second check) would
    fail on them. An idle lock from another loop is replaced by a fresh one."""
    locks = getattr(type(environment), "_image_build_locks", None)
    lock = locks.get(environment.environment_name) if isinstance(locks, dict) else None
    bound = getattr(lock, "_loop", None)
    stale = bound is not None and bound is not asyncio.get_running_loop()
    if lock is not None and stale and not lock.locked():
        locks[environment.environment_name] = asyncio.Lock()


def _create(task, environment, kwargs, sandbox_factory, common) -> BaseEnvironment:
    if sandbox_factory is not None:
        return SandboxEnvironment(sandbox=None, **common)  # the sandbox comes from the factory
    if environment == LOCAL:
        problems = local_support_problems(task.name, task.environment_dir, task.harbor.config)
        if problems:
            raise LocalEnvironmentError("; ".join(problems))
        return LocalEnvironment(**kwargs, **common)
    policy = task.harbor.config.environment.resolve_baseline()
    if environment in ("docker", "podman"):
        kwargs = {"extra_docker_compose": [str(FAST_STOP_OVERLAY)], **kwargs}
    if ":" in environment:
        return EnvironmentFactory.create_environment_from_import_path(
            environment, network_policy=policy, **kwargs, **common
        )
    return EnvironmentFactory.create_environment(
        EnvironmentType(environment), network_policy=policy, **kwargs, **common
    )


def explain_start_failure(task: HarborTask, environment: str, exc: BaseException) -> str:
    """The error, plus what to do about the failures users meet offline."""
    text = f"task {task.name!r}: could not start its {environment} environment: {type(exc).__name__}: {exc}"
    if isinstance(exc, TimeoutError):
        text += " (over [environment] build_timeout_sec)"
    lowered = str(exc).lower()
    image = _from_image(task)
    if image and any(w in lowered for w in ("pull", "registry", "manifest", "resolve", "dial tcp",
                                             "name or service not known", "short-name")):  # fmt: skip
        text += (
            f"\n-> its image {image!r} could not be pulled. Without a reachable registry, load "
            f"or build it locally first (`podman load`, `podman build`), or base the task on "
            f"{BASE_IMAGE} (`python -m tinker_cookbook.sandbox.base_image` builds it from "
            "Debian's packages)."
        )
    assert task.harbor is not None
    mode = task.harbor.config.environment.resolve_baseline().network_mode
    if mode != NetworkMode.PUBLIC and environment in ("docker", "podman"):
        text += (
            f"\n-> the task restricts the network (network_mode={mode.value}, e.g. "
            "allow_internet = false); Harbor enforces that on docker/podman with an "
            "egress-control sidecar image built from a registry image (gogost/gost), which must "
            "be pullable. Run such tasks where a registry is reachable or on a remote environment."
        )
    return text


def _from_image(task: HarborTask) -> str | None:
    dockerfile = task.environment_dir / "Dockerfile"
    if not dockerfile.exists():
        assert task.harbor is not None
        return task.harbor.config.environment.docker_image
    for line in dockerfile.read_text().splitlines():
        parts = line.split()
        if parts and parts[0].upper() == "FROM":
            return next((p for p in parts[1:] if not p.startswith("--")), None)
    return None
