"""A progress bar over training steps: step, rate and time left."""

from __future__ import annotations

from tqdm import tqdm


def step_progress(total: int, start: int, desc: str) -> tqdm:
    return tqdm(
        total=total, initial=start, desc=desc, unit="step", dynamic_ncols=True, smoothing=0.1
    )
