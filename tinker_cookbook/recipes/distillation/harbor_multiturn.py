"""Multi-turn distillation on Harbor tasks: the environment gives no reward at all.

`HarborDistillationDatasetBuilder` is `HarborDatasetBuilder` with `reward_fn=zero_reward` in
place of the tasks' grading: the teacher's per-token KL is the only training signal, so no
test runs during training and no format reward is needed. Held-out tasks (`test_size`) are
still graded, as the run's evaluation.
"""

from __future__ import annotations

import chz

from tinker_cookbook.recipes.harbor_rl.harbor_env import (
    HarborDataset,
    HarborDatasetBuilder,
)
from tinker_cookbook.renderers import Message


async def zero_reward(history: list[Message]) -> tuple[float, dict[str, float]]:
    """No correctness or format reward: distillation learns from the teacher alone."""
    return 0.0, {}


@chz.chz
class HarborDistillationDatasetBuilder(HarborDatasetBuilder):
    # No penalty either for a reply cut off or unparseable: the teacher's KL covers it.
    context_overflow_reward: float = 0.0
    failed_parse_reward: float = 0.0

    async def __call__(self) -> tuple[HarborDataset, HarborDataset | None]:
        """Training tasks with no reward; held-out tasks (`test_size`) graded by their own
        tests, so evaluation measures what the student can actually do."""
        return self.make_datasets(train_reward_fn=zero_reward)
