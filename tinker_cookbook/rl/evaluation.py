"""Held-out evaluation of an RL dataset: the policy's rollouts on its test groups, reported as
`test/env/...` metrics (no training)."""

from __future__ import annotations

from tinker_cookbook.completers import TinkerTokenCompleter
from tinker_cookbook.rl.metrics import trajectory_group_metrics
from tinker_cookbook.rl.rollouts import do_group_rollouts
from tinker_cookbook.rl.types import Metrics, RLDataset


class RLTestSetEvaluator:
    """Every batch of `dataset`, sampled at `temperature`; failed groups are counted."""

    def __init__(
        self, dataset: RLDataset, max_tokens: int, temperature: float = 1.0, seed: int = 0
    ):
        self.dataset, self.max_tokens = dataset, max_tokens
        self.temperature, self.seed = temperature, seed

    async def __call__(self, sampling_client) -> Metrics:
        policy = TinkerTokenCompleter(
            sampling_client, self.max_tokens, self.temperature, seed=self.seed
        )
        builders = [b for i in range(len(self.dataset)) for b in self.dataset.get_batch(i)]
        groups, errors = await do_group_rollouts(builders, policy)
        graded = [
            g
            for g, b in zip(groups, builders, strict=True)
            if g is not None and not b.grading_errors()
        ]
        metrics = trajectory_group_metrics(graded, prefix="test/env") if graded else {}
        ungraded = sum(1 for b in builders if b.grading_errors())
        return {**metrics, "test/env/failed_groups": float(len(errors) + ungraded)}
