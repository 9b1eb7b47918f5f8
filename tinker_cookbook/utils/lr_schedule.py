"""Learning-rate schedules as a multiplier of the base rate."""

from __future__ import annotations

import math

LR_SCHEDULES = ("constant", "linear", "cosine")


def lr_multiplier(schedule: str, step: int, total_steps: int) -> float:
    """`linear` and `cosine` decay from 1 at step 0 to 0 at `total_steps`."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule={schedule!r} is not one of {LR_SCHEDULES}")
    progress = min(max(step / max(total_steps, 1), 0.0), 1.0)
    if schedule == "constant":
        return 1.0
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))
