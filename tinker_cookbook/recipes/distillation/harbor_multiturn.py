"""Multi-turn distillation on Harbor tasks: the environment gives no reward at all.

`HarborDistillationDatasetBuilder` is `HarborDatasetBuilder` with `reward_fn=zero_reward` in
place of the tasks' grading: the teacher's per-token KL is the only training signal, so no
test ever runs and no format reward is needed.
"""

from __future__ import annotations

import chz

from tinker_cookbook.recipes.harbor_rl.harbor_env import HarborDataset, HarborDatasetBuilder
from tinker_cookbook.renderers import Message


def zero_reward(history: list[Message]) -> float:
    """No correctness or format reward: distillation learns from the teacher alone."""
    return 0.0


@chz.chz
class HarborDistillationDatasetBuilder(HarborDatasetBuilder):
    async def __call__(self) -> tuple[HarborDataset, HarborDataset | None]:
        return self.make_datasets(reward_fn=zero_reward)
