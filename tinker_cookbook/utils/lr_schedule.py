"""Learning-rate schedules as a multiplier of the base rate."""

from __future__ import annotations

import math
from typing import Literal, get_args

LRSchedule = Literal["constant", "linear", "cosine"]
LR_SCHEDULES: tuple[str, ...] = get_args(LRSchedule)


def lr_multiplier(
    schedule: LRSchedule, step: int, total_steps: int, warmup_steps: int = 0
) -> float:
    """`linear` and `cosine` decay from 1 at step 0 to 0 at `total_steps`. With `warmup_steps`,
    the first steps ramp up linearly (step 0 at 1/warmup): a run that starts from a checkpoint
    with a fresh optimizer otherwise takes a full-size sign step (Adam's first update) on every
    weight at once, which can undo much of what the checkpoint learned."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule={schedule!r} is not one of {LR_SCHEDULES}")
    if warmup_steps < 0:
        raise ValueError(f"lr_warmup_steps={warmup_steps} must be >= 0")
    ramp = min((step + 1) / warmup_steps, 1.0) if warmup_steps else 1.0
    return ramp * _decay(schedule, step, total_steps)


def _decay(schedule: str, step: int, total_steps: int) -> float:
    progress = min(max(step / max(total_steps, 1), 0.0), 1.0)
    if schedule == "constant":
        return 1.0
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))
