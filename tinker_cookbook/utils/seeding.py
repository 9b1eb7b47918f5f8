"""Seeds for the parts of a run, derived from the run's one `seed`."""

from __future__ import annotations

import hashlib

_SEED_RANGE = 2**31  # what every sampler accepts (the hosted SDK's seed is an int32)


def derive_seed(base: int | None, *keys: int | str) -> int | None:
    """The seed of one part of a run (a step, a group, an episode, a turn, a sample),
    from the run's `base` seed and the part's position. Positions, not request order, pick
    the seed, so concurrent coroutines get the same seeds on every run; hashing keeps the
    streams of neighbouring parts (step 1 group 0 vs step 0 group 1) apart. None stays None:
    an unseeded run stays unseeded."""
    if base is None:
        return None
    text = "/".join(str(k) for k in (base, *keys))
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % _SEED_RANGE
