"""Futures with the Tinker SDK's calling conventions over the local engine's work."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future as ConcurrentFuture
from typing import Any, TypeVar

from tinker import APIFuture

T = TypeVar("T")


class LocalFuture[T](APIFuture[T]):
    """An `APIFuture` usable as `await f`, `f.result()` and `await f.result_async()`.

    The work runs on the engine thread, so blocking on `result()` from inside an event loop
    never deadlocks; it only blocks that loop, exactly as the SDK's sync calls do.
    """

    def __init__(self, future: ConcurrentFuture[T]):
        self._future = future

    def result(self, timeout: float | None = None) -> T:
        return self._future.result(timeout)

    async def result_async(self, timeout: float | None = None) -> T:
        async with asyncio.timeout(timeout):
            return await asyncio.wrap_future(self._future)

    def future(self) -> ConcurrentFuture[T]:
        return self._future

    def done(self) -> bool:
        return self._future.done()

    @classmethod
    def completed(cls, value: T) -> LocalFuture[T]:
        """A future that already holds `value` (for calls that need no engine work)."""
        cf: ConcurrentFuture[T] = ConcurrentFuture()
        cf.set_result(value)
        return cls(cf)


class ClientFuture[T](LocalFuture[T]):
    """A future of a client that may also be used directly as the client (SDK back-compat)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.result(), name)
