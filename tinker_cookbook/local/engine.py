"""The single compute thread of the local backend.

Every client call becomes a work item on one queue. Training operations run in submission
order; sampling and scoring requests that arrive together (e.g. from many coroutines) are
grouped by model, adapter and batch limits and run as batched forward passes, which is where
throughput on small models comes from. One thread also means torch never fights itself for the
cores. The engine itself has no settings: each request carries its client's `BatchLimits`, so
clients configured differently share the thread without changing each other's batching.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import torch

from tinker_cookbook.local.config import LocalBackendConfig
from tinker_cookbook.local.errors import LocalBackendError
from tinker_cookbook.local.lora import LoRAAdapter
from tinker_cookbook.local.memory import HeapTrimmer
from tinker_cookbook.local.runtime import ModelRuntime, TokenScores
from tinker_cookbook.local.sampler import SequenceJob, generate


@dataclass(frozen=True)
class BatchLimits:
    """How one client's sampling and scoring requests are batched (see `LocalBackendConfig`)."""

    gather_window_s: float
    max_batch_tokens: int
    max_sampling_batch: int

    @classmethod
    def of(cls, config: LocalBackendConfig) -> BatchLimits:
        limits = cls(config.gather_window_s, config.max_batch_tokens, config.max_sampling_batch)
        limits.check()
        return limits

    def check(self) -> None:
        if self.gather_window_s < 0:
            raise LocalBackendError(
                f"LocalBackendConfig.gather_window_s must be >= 0, got {self.gather_window_s}"
            )
        for name in ("max_batch_tokens", "max_sampling_batch"):
            if getattr(self, name) < 1:
                raise LocalBackendError(
                    f"LocalBackendConfig.{name} must be >= 1, got {getattr(self, name)}"
                )


@dataclass
class SampleWork:
    """A batchable request: generate `jobs`, or score `score_inputs`, then `finish` them."""

    runtime: ModelRuntime
    adapter: LoRAAdapter | None
    limits: BatchLimits
    jobs: list[SequenceJob] = field(default_factory=list)
    score_tokens: list[int] | None = None  # score this whole sequence (prompt logprobs)
    topk: int = 0
    finish: Callable[[SampleWork], Any] = lambda w: None
    future: Future = field(default_factory=Future)
    scores: TokenScores | None = None


@dataclass
class OpWork:
    fn: Callable[[], Any]
    future: Future = field(default_factory=Future)


class LocalEngine:
    def __init__(self) -> None:
        self._queue: list[OpWork | SampleWork] = []
        self.sampling_batches_run = 0  # batched sampling/scoring passes, for tests and benchmarks
        self.trimmer = HeapTrimmer()  # hands freed heap back to the OS when idle (see memory.py)
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="tinker-local-engine", daemon=True)
        self._thread.start()

    def submit(self, work: OpWork | SampleWork) -> Future:
        with self._cond:
            self._queue.append(work)
            self._cond.notify()
        return work.future

    def run_op(self, fn: Callable[[], Any]) -> Future:
        return self.submit(OpWork(fn))

    def _gather_window(self) -> float:
        """The window of the oldest waiting sampling request (0 when only ops wait: they run
        one by one in order, so gathering more of them gains nothing)."""
        with self._cond:
            return next(
                (w.limits.gather_window_s for w in self._queue if isinstance(w, SampleWork)), 0.0
            )

    def _take_batch(self) -> list[OpWork | SampleWork]:
        with self._cond:
            while not self._queue:
                self._cond.wait()
        # Let concurrent callers finish enqueueing before deciding what goes together.
        window = self._gather_window()
        deadline = time.monotonic() + 10 * window
        seen = -1
        while time.monotonic() < deadline:
            with self._cond:
                if len(self._queue) == seen:
                    break
                seen = len(self._queue)
            time.sleep(window)
        with self._cond:
            items, self._queue = self._queue, []
        return items

    def _loop(self) -> None:
        while True:
            self._run_batch(self._take_batch())  # its locals (work, results) die on return
            with self._cond:
                idle = not self._queue
            if idle:
                self.trimmer.on_idle()

    def _run_batch(self, items: list[OpWork | SampleWork]) -> None:
        for item in items:
            if isinstance(item, OpWork):
                _settle(item.future, item.fn)
        self._run_sampling([w for w in items if isinstance(w, SampleWork)])

    def _run_sampling(self, works: list[SampleWork]) -> None:
        groups: dict[tuple[int, int, BatchLimits], list[SampleWork]] = defaultdict(list)
        for w in works:
            groups[(id(w.runtime), id(w.adapter), w.limits)].append(w)
        for group in groups.values():
            try:
                self._run_group(group)
            except BaseException as exc:  # noqa: BLE001 - every caller in the batch hears of it
                for w in group:
                    if not w.future.done():
                        w.future.set_exception(exc)
                continue
            for w in group:
                _settle(w.future, lambda w=w: w.finish(w))

    def _run_group(self, group: list[SampleWork]) -> None:
        runtime, adapter, limits = group[0].runtime, group[0].adapter, group[0].limits
        # Inference mode, not just no_grad: no autograd bookkeeping at all, which is a good
        # part of a small op's cost in a decode step.
        with torch.inference_mode():
            scoring = [w for w in group if w.score_tokens is not None]
            for chunk in _chunks(scoring, lambda w: len(w.score_tokens), limits):
                inputs = [w.score_tokens[:-1] for w in chunk]
                targets = [torch.tensor(w.score_tokens[1:]) for w in chunk]
                topk = max(w.topk for w in chunk)
                scores = runtime.sequence_logprobs(inputs, targets, adapter, topk)
                for w, s in zip(chunk, scores, strict=True):
                    w.scores = s
                self.sampling_batches_run += 1
            jobs = [j for w in group for j in w.jobs]
            jobs.sort(key=lambda j: len(j.prompt))
            for chunk in _chunks(jobs, lambda j: len(j.prompt) + j.max_tokens, limits):
                generate(runtime, chunk, adapter)
                self.sampling_batches_run += 1


def _chunks(items: list, length: Callable[[Any], int], limits: BatchLimits) -> list[list]:
    """Split into batches within the token budget (padded) and the sampling batch cap."""
    out, cur, widest = [], [], 0
    for item in items:
        w = max(widest, length(item))
        if cur and (
            w * (len(cur) + 1) > limits.max_batch_tokens or len(cur) >= limits.max_sampling_batch
        ):
            out.append(cur)
            cur, w = [], length(item)
        cur.append(item)
        widest = w
    if cur:
        out.append(cur)
    return out


def _settle(future: Future, fn: Callable[[], Any]) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(fn())
    except BaseException as exc:  # noqa: BLE001 - delivered to whoever awaits the future
        future.set_exception(exc)
