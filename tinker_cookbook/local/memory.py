"""Giving freed heap memory back to the operating system while a long run goes on.

Why: on CPU the bf16 matmuls run through oneDNN, which compiles a kernel per matrix shape and
keeps it in two LRU caches (oneDNN's and ideep's, 1024 entries each, ~0.3 MB an entry). Once
they are full, every new shape evicts and frees an old kernel, and glibc keeps those freed
chunks (pinned between live ones) instead of returning them: resident memory keeps growing
while the heap in use stays flat. `runtime.padded_width` keeps the number of shapes small;
this returns what churn frees anyway. Measured on one CPU thread:
- 3,000 distinct shapes of one bf16 Linear: 724 MB of heap in use, 3.8 GB resident;
  `malloc_trim(0)` brought it to 1.3 GB in 96 ms (4 ms when little was freed since).
- a 300-step distillation run with caches full (benchmarks/memory_growth.py, --max-tokens 96,
  width rounding off): 749 MB of heap in use at the end either way, 1,724 MB resident
  without trimming and 1,503 MB with it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Callable


def _load_malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None where the C library has none (macOS, musl): there the
    allocator returns memory its own way and there is nothing to do."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None


class HeapTrimmer:
    """Calls `malloc_trim(0)` when the engine goes idle, at most once per `min_interval_s`, so
    a busy engine pays a few milliseconds a second at most."""

    def __init__(
        self,
        min_interval_s: float = 1.0,
        trim: Callable[[int], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.min_interval_s = min_interval_s
        self._trim = trim if trim is not None else _load_malloc_trim()
        self._clock = clock
        self._last = float("-inf")
        self.trims = 0  # for tests and benchmarks

    @property
    def available(self) -> bool:
        return self._trim is not None

    def on_idle(self) -> None:
        now = self._clock()
        if self._trim is None or now - self._last < self.min_interval_s:
            return
        self._trim(0)
        self._last = now
        self.trims += 1
