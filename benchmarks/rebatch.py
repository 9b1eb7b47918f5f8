"""Building one on-policy step's batch at the Tinker cookbook's DeepMath scale.

`groups_per_batch=512` from a 100,000-prompt dataset, as the cookbook's on-policy distillation
command asks for. Measured in one run against the batching this project had before (the inner
dataset's `get_batch` called once per group: 512 x 512 group objects per step), and against the
path for datasets that do not expose their groups (`get_batch` once per inner batch). Prints
one JSON object: seconds and peak traced memory per step, group objects built, and ratios;
`within_bounds` checks a step against the bounds below.

    python benchmarks/rebatch.py [--prompts 100000] [--groups-per-batch 512] [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import tracemalloc
from collections.abc import Callable

from tinker_cookbook.distillation.datasets import PromptDataset, PromptEnvGroupBuilder
from tinker_cookbook.distillation.train_on_policy import RebatchedDataset
from tinker_cookbook.renderers import get_renderer
from tinker_cookbook.rl.types import EnvGroupBuilder, RLDataset
from tinker_cookbook.tokenizer_utils import get_tokenizer

MAX_STEP_SECONDS = 0.25  # bounds for one step's batch (this 2-core CPU builds it in ~5 ms)
MAX_STEP_PEAK_MB = 16.0


class CountingPromptDataset(PromptDataset):
    """The real prompt dataset, counting the group objects it builds."""

    built = 0

    def get_group(self, index: int) -> PromptEnvGroupBuilder:
        CountingPromptDataset.built += 1
        return super().get_group(index)


class OpaqueDataset(RLDataset):
    """The same dataset seen only through `get_batch` (as a user's own RLDataset may be)."""

    def __init__(self, inner: PromptDataset):
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)

    def get_batch(self, index: int) -> list[EnvGroupBuilder]:
        return self.inner.get_batch(index)


class PerGroupRebatched(RebatchedDataset):
    """The former batching: the inner batch rebuilt for every group taken from it."""

    def get_batch(self, index: int) -> list[EnvGroupBuilder]:
        native = len(self.dataset.get_batch(0))
        total = len(self.dataset) * native
        first = index * self.groups_per_batch
        return [
            self.dataset.get_batch(((first + i) % total) // native)[((first + i) % total) % native]
            for i in range(self.groups_per_batch)
        ]


def measure(get_batch: Callable[[int], list], steps: int) -> dict[str, float]:
    seconds, peaks, built = [], [], []
    for step in range(steps):
        CountingPromptDataset.built = 0
        tracemalloc.start()
        start = time.perf_counter()
        batch = get_batch(step)
        seconds.append(time.perf_counter() - start)
        peaks.append(tracemalloc.get_traced_memory()[1] / 2**20)
        tracemalloc.stop()
        built.append(CountingPromptDataset.built)
        del batch
    return {
        "seconds_per_step": statistics.median(seconds),
        "peak_mb_per_step": statistics.median(peaks),
        "groups_built_per_step": statistics.median(built),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=100_000)
    parser.add_argument("--groups-per-batch", type=int, default=512)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--baseline-steps", type=int, default=2)
    args = parser.parse_args()
    gpb = args.groups_per_batch
    renderer = get_renderer("qwen3", get_tokenizer("tiny-qwen3-1m"))
    prompts = [
        ([{"role": "user", "content": f"What is {i} + {i}?"}], str(2 * i))
        for i in range(args.prompts)
    ]
    dataset = CountingPromptDataset(prompts, renderer, gpb, group_size=4, tag="deepmath")
    ours = measure(RebatchedDataset(dataset, gpb).get_batch, args.steps)
    opaque = measure(RebatchedDataset(OpaqueDataset(dataset), gpb).get_batch, args.steps)
    before = measure(PerGroupRebatched(dataset, gpb).get_batch, args.baseline_steps)
    result = {
        "prompts": args.prompts,
        "groups_per_batch": gpb,
        "group_indexed": ours,
        "opaque_dataset": opaque,
        "per_group_baseline": before,
        "speedup_vs_per_group": before["seconds_per_step"] / ours["seconds_per_step"],
        "speedup_opaque_vs_per_group": before["seconds_per_step"] / opaque["seconds_per_step"],
        "memory_ratio_vs_per_group": before["peak_mb_per_step"] / ours["peak_mb_per_step"],
        "within_bounds": ours["seconds_per_step"] <= MAX_STEP_SECONDS
        and ours["peak_mb_per_step"] <= MAX_STEP_PEAK_MB
        and ours["groups_built_per_step"] == gpb,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
