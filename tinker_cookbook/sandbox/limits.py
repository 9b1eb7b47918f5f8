"""Per-sandbox memory and process limits through cgroup v1 (when this machine offers them)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "pids")


def cgroups_available() -> bool:
    return all(os.access(CGROUP_ROOT / c, os.W_OK) for c in CONTROLLERS)


class CgroupLimits:
    """A memory and a pids cgroup for one sandbox; every process started inside joins both."""

    def __init__(self, name: str, memory_bytes: int, max_processes: int):
        self.dirs = [CGROUP_ROOT / c / "tinker_cookbook" / name for c in CONTROLLERS]
        for d in self.dirs:
            d.mkdir(parents=True, exist_ok=True)
        (self.dirs[0] / "memory.limit_in_bytes").write_text(str(memory_bytes))
        swap = self.dirs[0] / "memory.memsw.limit_in_bytes"
        if swap.exists():
            with contextlib.suppress(OSError):
                swap.write_text(str(memory_bytes))
        (self.dirs[1] / "pids.max").write_text(str(max_processes))

    def join_prefix(self) -> list[str]:
        """A command prefix that moves the new process into the cgroups, then execs the rest."""
        joins = " && ".join(f"echo $$ > {d / 'cgroup.procs'}" for d in self.dirs)
        return ["/bin/sh", "-c", f'{joins} && exec "$@"', "sandbox-join"]

    def pids(self) -> list[int]:
        procs = self.dirs[1] / "cgroup.procs"
        return [int(p) for p in procs.read_text().split()] if procs.exists() else []

    def kill_all(self, wait_s: float = 5.0) -> None:
        deadline = time.monotonic() + wait_s
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)

    def counters(self) -> tuple[int, int]:
        """(memory OOM kills, refused forks) so far; compare before/after a command."""
        return _field(self.dirs[0] / "memory.oom_control", "oom_kill"), _field(
            self.dirs[1] / "pids.events", "max"
        )

    def remove(self) -> None:
        self.kill_all()
        for d in self.dirs:
            with contextlib.suppress(OSError):
                d.rmdir()


def _field(path: Path, key: str) -> int:
    if not path.exists():
        return 0
    for line in path.read_text().splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0
