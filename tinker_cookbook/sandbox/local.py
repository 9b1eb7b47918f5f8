"""`LocalSandbox`: an isolated Linux sandbox with no container engine.

Each sandbox gets its own writable root folder on the host, with the host's /usr (and the
/bin, /lib symlinks) mounted read-only over it and a few harmless /etc files; nothing else of
the host is visible. It has no network, a cleared environment, its own PID namespace, and
limits on time, output, memory and processes (cgroup v1 when available). It runs through
bubblewrap when installed, else through `unshare` + `chroot` (root only).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import tempfile
import time
import uuid
from pathlib import Path
from typing import Literal

import chz

from tinker_cookbook.sandbox.base import CommandResult, SandboxError, SandboxInterface
from tinker_cookbook.sandbox.limits import CgroupLimits, cgroups_available

ETC_FILES = ("passwd", "group", "hosts", "nsswitch.conf", "ld.so.cache", "ld.so.conf", "ld.so.conf.d",
             "alternatives", "ssl", "localtime", "mime.types", "protocols", "services")  # fmt: skip
BASE_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@chz.chz
class LocalSandboxConfig:
    memory_mb: int = 1024
    max_processes: int = 256
    backend: Literal["auto", "bwrap", "unshare"] = "auto"
    root_dir: str | None = None  # where sandbox folders live (default: the system temp dir)


def available_backends() -> list[str]:
    found = []
    if shutil.which("bwrap"):
        found.append("bwrap")
    if shutil.which("unshare") and os.geteuid() == 0:
        found.append("unshare")
    return found


class LocalSandbox(SandboxInterface):
    def __init__(
        self,
        config: LocalSandboxConfig | None = None,
        env: dict[str, str] | None = None,
        workdir: str = "/",
    ):
        self.config = config or LocalSandboxConfig()
        backends = available_backends()
        wanted = self.config.backend
        if wanted == "auto":
            if not backends:
                raise SandboxError(
                    "no sandbox backend: install bubblewrap (`apt-get install bubblewrap`) or run as root with `unshare`"
                )
            wanted = backends[0]
        elif wanted not in backends:
            raise SandboxError(
                f"sandbox backend {wanted!r} is not available here (available: {backends or 'none'})"
            )
        self.backend = wanted
        self.id = uuid.uuid4().hex[:12]
        parent = Path(self.config.root_dir or tempfile.gettempdir()) / "tinker_sandboxes"
        self.host_dir = parent / self.id
        self.rootfs = self.host_dir / "rootfs"
        self._make_rootfs()
        self.env = {
            "PATH": DEFAULT_PATH,
            "HOME": "/root",
            "LANG": "C.UTF-8",
            "TERM": "dumb",
            **(env or {}),
        }
        self.workdir = workdir
        self.limits = (
            CgroupLimits(self.id, self.config.memory_mb * 2**20, self.config.max_processes)
            if cgroups_available()
            else None
        )
        self._closed = False
        self._lock = asyncio.Lock()
        self._running: set[asyncio.subprocess.Process] = set()

    def _make_rootfs(self) -> None:
        for sub in ("tmp", "root", "etc", "proc", "dev", "usr", "logs"):
            (self.rootfs / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.rootfs / "tmp", 0o1777)
        for name in BASE_DIRS:
            host = Path("/") / name
            if host.is_symlink():
                (self.rootfs / name).symlink_to(os.readlink(host))
            elif host.is_dir():
                (self.rootfs / name).mkdir(exist_ok=True)

    # ---- commands -----------------------------------------------------------------------
    def _bwrap_argv(self, workdir: str, env: dict[str, str]) -> list[str]:
        argv = ["bwrap", "--bind", str(self.rootfs), "/", "--ro-bind", "/usr", "/usr"]
        for name in BASE_DIRS:
            host = Path("/") / name
            if host.is_dir() and not host.is_symlink():
                argv += ["--ro-bind", str(host), f"/{name}"]
        for name in ETC_FILES:
            if (Path("/etc") / name).exists():
                argv += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
        argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/dev/shm"]
        argv += [
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--clearenv",
            "--chdir",
            workdir,
        ]
        for key, value in env.items():
            _check_env_key(key)
            argv += ["--setenv", key, value]
        # /usr/bin/bash, not /bin/bash: /bin is a symlink in the writable root the sandbox
        # could replace; /usr is a read-only bind of the host's.
        return argv + ["/usr/bin/bash", "-c"]

    def _unshare_argv(self, workdir: str, env: dict[str, str], command: str) -> list[str]:
        """Root-only fallback: new namespaces; every mount point is first recreated as a fresh
        folder (so a symlink the sandbox planted cannot redirect a mount onto the host); then
        `pivot_root` into the sandbox folder and detach the host's tree; a minimal /dev; and
        every capability dropped before the command runs. Values travel as arguments, never
        as script text."""
        binds = ["usr"] + [
            n for n in BASE_DIRS if (Path("/") / n).is_dir() and not (Path("/") / n).is_symlink()
        ]
        etc = [n for n in ETC_FILES if (Path("/etc") / n).exists()]
        lines = [
            "set -e",
            "root=$1; workdir=$2; command=$3; shift 3",
            "mount --make-rprivate /",
            'mount --bind "$root" "$root"',
            f'for d in {" ".join(binds)} etc proc dev; do rm -rf "$root/$d"; mkdir "$root/$d"; done',
        ]
        for name in binds:
            lines += [
                f'mount --rbind /{name} "$root/{name}"',
                f'mount -o remount,bind,ro "$root/{name}"',
            ]
        for name in etc:
            make = "mkdir" if (Path("/etc") / name).is_dir() else "touch"
            lines += [f'{make} "$root/etc/{name}"', f'mount --bind /etc/{name} "$root/etc/{name}"',
                      f'mount -o remount,bind,ro "$root/etc/{name}"']  # fmt: skip
        lines += [
            'mount -t proc proc "$root/proc"',
            'mount -t tmpfs -o mode=755 tmpfs "$root/dev"',
            'for d in null zero full random urandom tty; do touch "$root/dev/$d"; mount --bind /dev/$d "$root/dev/$d"; done',
            'cd "$root"; old=.host-$$; rm -rf "$old"; mkdir "$old"',
            'pivot_root . "$old"; cd /',
            'umount -l "/$old"; rmdir "/$old"',
            'exec /usr/bin/setpriv --bounding-set=-all --inh-caps=-all --no-new-privs -- /usr/bin/env -i "$@" '
            '/usr/bin/bash -c \'cd "$0" && exec /usr/bin/bash -c "$1"\' "$workdir" "$command"',
        ]
        for key in env:
            _check_env_key(key)
        return [
            "unshare", "--mount", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child",
            "/bin/sh", "-c", "\n".join(lines), "sandbox", str(self.rootfs), workdir, command,
            *[f"{k}={v}" for k, v in env.items()],
        ]  # fmt: skip

    async def run_command(
        self,
        command: str,
        workdir: str | None = None,
        timeout: float = 60.0,
        max_output_bytes: int = 1_000_000,
        env: dict[str, str] | None = None,
        stdin: bytes | None = None,
    ) -> CommandResult:
        if self._closed:
            raise SandboxError(f"sandbox {self.id} was cleaned up")
        workdir = workdir or self.workdir
        full_env = {**self.env, **(env or {})}
        if self.backend == "bwrap":
            argv = self._bwrap_argv(workdir, full_env) + [command]
        else:
            argv = self._unshare_argv(workdir, full_env, command)
        if self.limits is not None:
            argv = self.limits.join_prefix() + argv
        # One command at a time: every process in the sandbox's cgroup is stopped when a
        # command ends, which would take a concurrent command down with it.
        async with self._lock:
            return await self._execute(argv, timeout, max_output_bytes, stdin)

    async def _execute(
        self, argv: list[str], timeout: float, max_output: int, stdin: bytes | None
    ) -> CommandResult:
        start = time.monotonic()
        before = self.limits.counters() if self.limits is not None else (0, 0)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            env={"PATH": DEFAULT_PATH},
        )
        budget = {"left": max_output, "over": False}
        out, err = bytearray(), bytearray()

        async def pump(stream: asyncio.StreamReader, sink: bytearray) -> None:
            while chunk := await stream.read(65536):
                keep = chunk[: max(budget["left"], 0)]
                sink += keep
                budget["left"] -= len(chunk)
                if budget["left"] < 0 and not budget["over"]:
                    budget["over"] = True
                    self._kill(proc)

        async def feed() -> None:
            if stdin is not None and proc.stdin is not None:
                try:
                    proc.stdin.write(stdin)
                    await proc.stdin.drain()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    proc.stdin.close()

        timed_out = False
        self._running.add(proc)
        try:
            await asyncio.wait_for(
                asyncio.gather(pump(proc.stdout, out), pump(proc.stderr, err), feed(), proc.wait()),
                timeout,
            )
        except TimeoutError:
            timed_out = True
            self._kill(proc)
        finally:
            if proc.returncode is None:  # cancelled: stop it rather than leave it running
                self._kill(proc)
            self._running.discard(proc)
            await proc.wait()
        if self.limits is not None:
            self.limits.kill_all()  # anything left behind in the background
        stderr = err.decode(errors="replace")
        if self.limits is not None:
            oom, forks = (a - b for a, b in zip(self.limits.counters(), before, strict=True))
            if oom:
                stderr += f"\n[sandbox: memory limit of {self.config.memory_mb} MB reached; process killed]"
            if forks:
                stderr += f"\n[sandbox: process limit of {self.config.max_processes} reached; {forks} forks refused]"
        return CommandResult(
            stdout=out.decode(errors="replace"),
            stderr=stderr,
            exit_code=proc.returncode if proc.returncode is not None else -9,
            timed_out=timed_out,
            output_truncated=budget["over"],
            seconds=time.monotonic() - start,
        )

    def _kill(self, proc: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        if self.limits is not None:
            self.limits.kill_all()

    async def cleanup(self) -> None:
        if self._closed:
            return
        self._closed = True
        for proc in list(self._running):
            self._kill(proc)
        if self.limits is not None:
            await asyncio.to_thread(self.limits.remove)
        await asyncio.to_thread(_remove_tree, self.host_dir)


def _remove_tree(path: Path) -> None:
    """Delete a sandbox folder, even one the sandbox made read-only or very deep."""

    def make_writable_and_retry(func, target, _exc_info):
        try:
            os.chmod(os.path.dirname(target), 0o700)
            if not os.path.islink(target):
                os.chmod(target, 0o700)
            func(target)
        except OSError:
            pass

    with contextlib.suppress(RecursionError, OSError):  # very deep trees: `rm -rf` below
        shutil.rmtree(path, onerror=make_writable_and_retry)  # `onexc` needs Python 3.12
    if path.exists():
        import subprocess

        subprocess.run(["chmod", "-R", "u+rwx", str(path)], capture_output=True)
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], capture_output=True)
    if path.exists():
        raise SandboxError(f"could not remove sandbox folder {path}")


def _check_env_key(key: str) -> None:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        raise SandboxError(f"environment variable name {key!r} is not a valid shell name")
