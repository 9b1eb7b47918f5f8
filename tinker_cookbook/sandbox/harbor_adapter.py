"""Adapters between this project's `SandboxInterface` and Harbor's `BaseEnvironment`.

`HarborSandbox` lets the agent's tools run in any Harbor environment (docker, podman, modal,
daytona, ...), as the task's agent user in its workdir. `SandboxEnvironment` goes the other
way: it presents any `SandboxInterface` (the engine-free `LocalSandbox`, or one a user's
`SandboxFactory` returns) as a Harbor environment, so Harbor's own verifier grades every
episode the same way whichever sandbox ran it.
"""

from __future__ import annotations

import asyncio
import base64
import io
import math
import shlex
import tarfile
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from harbor.environments.base import BaseEnvironment, ExecResult
from harbor.environments.capabilities import EnvironmentCapabilities

from tinker_cookbook.sandbox.base import CommandResult, SandboxError, SandboxInterface

# Exit status of coreutils `timeout` when it stopped the command.
TIMEOUT_EXIT = 124
# Seconds Harbor waits beyond a command's own timeout before abandoning the exec client.
EXEC_GRACE_SECONDS = 15


class HarborSandbox(SandboxInterface):
    """Commands in a started Harbor environment. Each command runs under coreutils `timeout`
    inside the environment, so a hung command is stopped there, not only abandoned here."""

    def __init__(self, environment: BaseEnvironment, user: str | int | None = None):
        self.environment, self.user = environment, user
        self._stopped = False

    async def run_command(
        self,
        command: str,
        workdir: str | None = None,
        timeout: float = 60.0,
        max_output_bytes: int = 1_000_000,
        env: dict[str, str] | None = None,
        stdin: bytes | None = None,
    ) -> CommandResult:
        if stdin is not None:
            staged = f"/tmp/.tinker-stdin-{uuid.uuid4().hex}"
            await self._upload_bytes(stdin, staged)
            command = f"{{ {command}\n}} < {staged}; status=$?; rm -f {staged}; exit $status"
        limit = max(1, math.ceil(timeout))
        wrapped = f"timeout --kill-after=5 {limit} bash -c {shlex.quote(command)}"
        start = time.perf_counter()
        try:
            result = await self.environment.exec(
                wrapped, cwd=workdir, env=env, timeout_sec=limit + EXEC_GRACE_SECONDS,
                user=self.user,
            )  # fmt: skip
        except RuntimeError as exc:
            if "timed out" not in str(exc):
                raise SandboxError(f"{self.environment.session_id}: exec failed: {exc}") from exc
            result = ExecResult(stdout="", stderr=str(exc), return_code=TIMEOUT_EXIT)
        # Harbor's compose exec may attach a terminal: its \r\n line ends are not the program's.
        stdout = (result.stdout or "").replace("\r\n", "\n")
        stderr = (result.stderr or "").replace("\r\n", "\n")
        truncated = len(stdout.encode()) + len(stderr.encode()) > max_output_bytes
        if truncated:
            stdout = stdout.encode()[:max_output_bytes].decode(errors="replace")
            stderr = stderr.encode()[: max(0, max_output_bytes - len(stdout))].decode(
                errors="replace"
            )
        return CommandResult(
            stdout=stdout,
            stderr=stderr,
            exit_code=result.return_code,
            timed_out=result.return_code == TIMEOUT_EXIT,
            output_truncated=truncated,
            seconds=time.perf_counter() - start,
        )

    async def write_file(self, path: str, content: str | bytes) -> None:
        data = content.encode() if isinstance(content, str) else content
        await self._upload_bytes(data, path)

    async def _upload_bytes(self, data: bytes, path: str) -> None:
        with tempfile.TemporaryDirectory(prefix="tinker-upload-") as folder:
            local = Path(folder) / "data"
            local.write_bytes(data)
            parent = path.rsplit("/", 1)[0] or "/"
            await self.environment.exec(f"mkdir -p {shlex.quote(parent)}", user="root")
            await self.environment.upload_file(local, path)
            if self.user not in (None, "root", 0):  # the agent's file, as if it wrote it
                await self.environment.exec(f"chown {self.user} {shlex.quote(path)}", user="root")

    async def upload_dir(self, host_dir: Path, sandbox_dir: str) -> None:
        await self.environment.upload_dir(host_dir, sandbox_dir)

    async def upload_file(self, host_file: Path, sandbox_path: str) -> None:
        await self.environment.upload_file(host_file, sandbox_path)

    async def cleanup(self) -> None:
        """Stops and removes the environment's containers (the task's image is kept for the
        next episode). Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        await self.environment.stop(delete=False)


class SandboxEnvironment(BaseEnvironment):
    """A Harbor environment over a `SandboxInterface` that is already prepared: `start` does
    nothing, `stop` cleans the sandbox up. Harbor's verifier and agents can run in it."""

    def __init__(self, sandbox: SandboxInterface, **harbor_kwargs: Any):
        self.sandbox = sandbox
        super().__init__(**harbor_kwargs)

    @staticmethod
    def type() -> str:
        return "sandbox"

    @property
    def capabilities(self) -> EnvironmentCapabilities:
        return EnvironmentCapabilities(disable_internet=True)

    def _validate_definition(self) -> None:
        pass

    async def start(self, force_build: bool) -> None:
        pass

    async def stop(self, delete: bool) -> None:
        if self.sandbox is not None:
            await self.sandbox.cleanup()

    async def exec(
        self,
        command: str,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout_sec: int | None = None,
        user: str | int | None = None,
    ) -> ExecResult:
        user = self._resolve_user(user)
        if user not in (None, "root", 0):
            raise SandboxError(
                f"{type(self.sandbox).__name__} runs commands as root only (asked for user {user!r})"
            )
        result = await self.sandbox.run_command(
            command, workdir=cwd or self.task_env_config.workdir,
            timeout=float(timeout_sec or 24 * 3600), env=self._merge_env(env),
        )  # fmt: skip
        if result.timed_out:
            raise RuntimeError(f"Command timed out after {timeout_sec} seconds")
        return ExecResult(stdout=result.stdout, stderr=result.stderr, return_code=result.exit_code)

    async def upload_file(self, source_path: Path | str, target_path: str) -> None:
        await self.sandbox.upload_file(Path(source_path), target_path)

    async def upload_dir(self, source_dir: Path | str, target_dir: str) -> None:
        await self.sandbox.upload_dir(Path(source_dir), target_dir)

    async def download_file(self, source_path: str, target_path: Path | str) -> None:
        data = await self._tar_out(source_path)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = next(m for m in tar.getmembers() if m.isfile())
            extracted = tar.extractfile(member)
            assert extracted is not None
            Path(target_path).parent.mkdir(parents=True, exist_ok=True)
            Path(target_path).write_bytes(extracted.read())

    async def download_dir(self, source_dir: str, target_dir: Path | str) -> None:
        data = await self._tar_out(source_dir, contents=True)
        Path(target_dir).mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            await asyncio.to_thread(tar.extractall, target_dir, filter="data")

    async def _tar_out(self, path: str, contents: bool = False) -> bytes:
        """The sandbox's `path` as a tar stream, base64 through the text channel."""
        target = f"-C {shlex.quote(path)} ." if contents else shlex.quote(path)
        result = await self.sandbox.run_command(
            f"set -o pipefail; tar -c {target} | base64 -w0",
            timeout=120,
            max_output_bytes=200_000_000,
        )
        if result.exit_code != 0:
            raise FileNotFoundError(f"cannot download {path}: {result.stderr.strip()[:300]}")
        return base64.b64decode(result.stdout)
