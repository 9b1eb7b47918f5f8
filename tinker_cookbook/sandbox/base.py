"""What every sandbox offers: run a command, read and write files, clean up. Async, as the
rollout loop is."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path


@dataclass
class CommandResult:
    stdout: str
    stderr: str
    exit_code: int
    timed_out: bool = False
    output_truncated: bool = False  # the command was stopped at max_output_bytes
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the command inside it)."""


class SandboxInterface(ABC):
    @abstractmethod
    async def run_command(
        self,
        command: str,
        workdir: str | None = None,
        timeout: float = 60.0,
        max_output_bytes: int = 1_000_000,
        env: dict[str, str] | None = None,
        stdin: bytes | None = None,
    ) -> CommandResult:
        """Run `command` with bash. A command past `timeout` seconds, or printing more than
        `max_output_bytes`, is killed with everything it started, and reported as such."""

    async def read_file(self, path: str, max_bytes: int = 10_000_000) -> str:
        result = await self.run_command(f"cat -- {_quote(path)}", max_output_bytes=max_bytes)
        if result.output_truncated:
            raise SandboxError(f"sandbox: {path} is larger than max_bytes={max_bytes}")
        if result.exit_code != 0:
            raise FileNotFoundError(f"sandbox: cannot read {path}: {result.stderr.strip()}")
        return result.stdout

    async def write_file(self, path: str, content: str | bytes) -> None:
        data = content.encode() if isinstance(content, str) else content
        quoted = _quote(path)
        result = await self.run_command(
            f'mkdir -p -- "$(dirname -- {quoted})" && cat > {quoted}', stdin=data
        )
        if result.exit_code != 0:
            raise SandboxError(f"sandbox: cannot write {path}: {result.stderr.strip()}")

    async def upload_dir(self, host_dir: Path, sandbox_dir: str) -> None:
        """Copy a host folder's contents into the sandbox (through a tar stream, so nothing in
        the sandbox can redirect the write to the host; file modes are kept)."""
        await self._untar(_tar_of(host_dir, "."), sandbox_dir, f"{host_dir} to {sandbox_dir}")

    async def upload_file(self, host_file: Path, sandbox_path: str) -> None:
        """Copy one host file to `sandbox_path`, keeping its mode (e.g. executable)."""
        folder, _, name = sandbox_path.rstrip("/").rpartition("/")
        await self._untar(_tar_of(host_file, name), folder or "/", f"{host_file} to {sandbox_path}")

    async def _untar(self, data: bytes, sandbox_dir: str, what: str) -> None:
        quoted = _quote(sandbox_dir)
        result = await self.run_command(f"mkdir -p -- {quoted} && tar -x -C {quoted}", stdin=data)
        if result.exit_code != 0:
            raise SandboxError(f"sandbox: cannot copy {what}: {result.stderr.strip()}")

    @abstractmethod
    async def cleanup(self) -> None:
        """Stop every process and delete every file of this sandbox. Safe to call twice."""


def _quote(path: str) -> str:
    import shlex

    return shlex.quote(path)


def _tar_of(host_path: Path, arcname: str) -> bytes:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(str(host_path), arcname=arcname)
    return buffer.getvalue()
