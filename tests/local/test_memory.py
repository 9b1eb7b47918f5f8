"""A long run's memory stays flat: batch widths come from a few sizes (each new matrix shape
costs a cached CPU kernel), padding does not change any score, and the engine hands freed
heap back to the operating system when it goes idle."""

import time

import pytest
import torch

from tinker_cookbook.local.engine import LocalEngine
from tinker_cookbook.local.memory import HeapTrimmer
from tinker_cookbook.local.runtime import padded_width


def test_padded_batches_take_few_widths_and_score_as_if_alone(service):
    runtime = service.runtime("tiny-qwen3-1m")
    widths: list[int] = []
    hook = runtime.model.get_input_embeddings().register_forward_pre_hook(
        lambda module, args: widths.append(args[0].shape[1])
    )
    gen = torch.Generator().manual_seed(0)
    batches = [
        [torch.randint(0, 256, (n,), generator=gen).tolist() for n in (5, longest)]
        for longest in range(20, 52)
    ]
    try:
        with torch.no_grad():
            together = [
                runtime.sequence_logprobs(
                    [s[:-1] for s in b], [torch.tensor(s[1:]) for s in b], None
                )
                for b in batches
            ]
    finally:
        hook.remove()
    # 32 different longest lengths (3 padded widths): their 23-54 real tokens run as 64 rows.
    assert sorted(set(widths)) == [64]
    with torch.no_grad():
        alone = runtime.sequence_logprobs(
            [batches[-1][1][:-1]], [torch.tensor(batches[-1][1][1:])], None
        )
    torch.testing.assert_close(
        together[-1][1].target_logprobs, alone[0].target_logprobs, atol=2e-2, rtol=0
    )


def test_equal_lengths_are_not_padded():
    assert padded_width([17, 17]) == 17  # no mask: attention keeps its fused causal path
    assert padded_width([5, 17]) == 32


def test_trimmer_trims_at_most_once_per_interval():
    calls, now = [], [0.0]
    trimmer = HeapTrimmer(min_interval_s=1.0, trim=calls.append, clock=lambda: now[0])
    for t in (0.0, 0.5, 0.9, 1.0, 1.2, 2.5):
        now[0] = t
        trimmer.on_idle()
    assert calls == [0, 0, 0]  # at 0.0, 1.0 and 2.5
    assert trimmer.trims == 3


def test_the_engine_trims_the_heap_when_it_goes_idle():
    engine = LocalEngine()
    if not engine.trimmer.available:
        pytest.skip("no glibc malloc_trim on this platform")
    assert engine.run_op(lambda: 42).result() == 42
    deadline = time.monotonic() + 5
    while engine.trimmer.trims == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.trimmer.trims == 1
