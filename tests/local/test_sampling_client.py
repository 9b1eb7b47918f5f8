"""Sampling and scoring: logprob consistency, stop rules, seeds, snapshots, batching."""

import asyncio

import numpy as np
import pytest
from tinker import types

from tests.helpers import chat_tokens, next_token_datum
from tinker_cookbook.local import LocalBackendError

# bf16 autocast: a token's logprob from a batched decode step and from a full-sequence
# scoring pass differ by rounding only; measured < 5e-3 on the tiny models.
LOGPROB_TOLERANCE = 2e-2


@pytest.fixture(scope="module")
def base(service):
    return service.create_sampling_client(base_model="tiny-qwen3-1m").result()


@pytest.fixture(scope="module")
def prompt(tokenizer):
    return types.ModelInput.from_ints(
        tokenizer.encode("<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n")
    )


def _sample(client, prompt, n=1, **params):
    return client.sample(prompt, n, types.SamplingParams(**params)).result()


def test_sampled_logprobs_equal_compute_logprobs(base, prompt):
    res = _sample(base, prompt, n=3, max_tokens=24, temperature=1.0, seed=5, stop=[])
    for seq in res.sequences:
        assert len(seq.tokens) == len(seq.logprobs) == 24
        scored = base.compute_logprobs(
            types.ModelInput.from_ints(prompt.to_ints() + seq.tokens)
        ).result()
        assert scored[0] is None and len(scored) == prompt.length + 24
        np.testing.assert_allclose(scored[-24:], seq.logprobs, atol=LOGPROB_TOLERANCE)


def test_temperature_zero_is_greedy_and_top_k_one_matches(base, prompt):
    greedy = _sample(base, prompt, max_tokens=12, temperature=0.0, stop=[]).sequences[0].tokens
    top1 = (
        _sample(base, prompt, max_tokens=12, temperature=1.0, top_k=1, seed=1, stop=[])
        .sequences[0]
        .tokens
    )
    assert greedy == top1
    scored = base.sample(
        prompt, 1, types.SamplingParams(max_tokens=1, temperature=0.0), topk_prompt_logprobs=3
    ).result()
    assert (
        scored.topk_prompt_logprobs[0] is None and len(scored.topk_prompt_logprobs) == prompt.length
    )


def test_seeds_make_samples_reproducible(base, prompt):
    a = _sample(base, prompt, n=2, max_tokens=20, temperature=1.0, seed=11, stop=[])
    b = _sample(base, prompt, n=2, max_tokens=20, temperature=1.0, seed=11, stop=[])
    c = _sample(base, prompt, n=2, max_tokens=20, temperature=1.0, seed=12, stop=[])
    assert [s.tokens for s in a.sequences] == [s.tokens for s in b.sequences]
    assert a.sequences[0].tokens != a.sequences[1].tokens  # samples of one request differ
    assert a.sequences[0].tokens != c.sequences[0].tokens


def test_a_sample_does_not_replay_another_requests_stream(base, prompt):
    """Sample 1 of a seed-7 request has its own stream, not that of a request seeded nearby
    (nor at the old fixed stride of 1_000_003 per sample)."""
    two = _sample(base, prompt, n=2, max_tokens=20, temperature=1.0, seed=7, stop=[])
    for seed in (8, 7 + 1_000_003):
        one = _sample(base, prompt, n=1, max_tokens=20, temperature=1.0, seed=seed, stop=[])
        assert one.sequences[0].tokens != two.sequences[1].tokens


def test_stop_token_ids_strings_and_length(base, prompt, tokenizer):
    free = _sample(base, prompt, max_tokens=16, temperature=0.0, stop=[]).sequences[0]
    assert free.stop_reason == "length" and len(free.tokens) == 16
    # Stop on the id greedy decoding produces third: generation ends right there, included.
    third = free.tokens[2]
    first_hit = free.tokens.index(third)
    by_id = _sample(base, prompt, max_tokens=16, temperature=0.0, stop=[third]).sequences[0]
    assert by_id.stop_reason == "stop" and by_id.tokens == free.tokens[: first_hit + 1]
    # A stop string that the text reaches at token 6.
    text6 = tokenizer.decode(free.tokens[:6])
    stop = text6[-2:]
    expect_len = next(k for k in range(1, 17) if stop in tokenizer.decode(free.tokens[:k]))
    by_str = _sample(base, prompt, max_tokens=16, temperature=0.0, stop=stop).sequences[0]
    assert by_str.stop_reason == "stop" and by_str.tokens == free.tokens[:expect_len]


def test_default_stop_is_end_of_sequence(service, tokenizer):
    """A model trained to answer then emit <|im_end|> stops there by default (stop=None)."""
    tc = service.create_lora_training_client("tiny-qwen3-1m", rank=8, seed=0).result()
    toks = chat_tokens(tokenizer, "ping", "pong")
    for _ in range(40):
        tc.forward_backward([next_token_datum(toks)], "cross_entropy")
        tc.optim_step(types.AdamParams(learning_rate=3e-3))
    sampler = tc.save_weights_and_get_sampling_client().result()
    prompt = types.ModelInput.from_ints(
        tokenizer.encode("<|im_start|>user\nping<|im_end|>\n<|im_start|>assistant\n")
    )
    seq = (
        sampler.sample(prompt, 1, types.SamplingParams(max_tokens=30, temperature=0.0))
        .result()
        .sequences[0]
    )
    assert seq.stop_reason == "stop"
    assert seq.tokens[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(seq.tokens) == "pong<|im_end|>"


def test_prompt_logprobs_match_compute_logprobs(base, prompt):
    res = base.sample(
        prompt, 1, types.SamplingParams(max_tokens=2), include_prompt_logprobs=True
    ).result()
    direct = base.compute_logprobs(prompt).result()
    assert res.prompt_logprobs[0] is None
    np.testing.assert_allclose(res.prompt_logprobs[1:], direct[1:], atol=1e-5)


def test_sampling_client_is_a_frozen_snapshot(service, prompt, tokenizer):
    tc = service.create_lora_training_client("tiny-qwen3-1m", rank=4, seed=1).result()
    snap = tc.save_weights_and_get_sampling_client().result()
    before = snap.compute_logprobs(prompt).result()
    datum = next_token_datum(chat_tokens(tokenizer, "a", "b"))
    for _ in range(3):
        tc.forward_backward([datum], "cross_entropy")
        tc.optim_step(types.AdamParams(learning_rate=1e-2))
    after = snap.compute_logprobs(prompt).result()
    fresh = tc.save_weights_and_get_sampling_client().result().compute_logprobs(prompt).result()
    assert after == before
    assert max(abs(a - b) for a, b in zip(fresh[1:], before[1:], strict=True)) > 1e-3


def test_concurrent_requests_are_batched(service, base, prompt):
    params = [
        types.SamplingParams(max_tokens=8, temperature=1.0, seed=i, stop=[]) for i in range(16)
    ]
    alone = [base.sample(prompt, 1, p).result().sequences[0].tokens for p in params[:4]]

    async def together():
        return await asyncio.gather(*[base.sample(prompt, 1, p) for p in params])

    batches_before = service.engine.sampling_batches_run
    results = asyncio.run(together())
    batches = service.engine.sampling_batches_run - batches_before
    assert batches < 16 / 2  # gathered into a few batched passes, not one per request
    assert [r.sequences[0].tokens for r in results[:4]] == alone  # same seeds, same samples


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda c, p: c.sample(
                types.ModelInput.from_ints([]), 1, types.SamplingParams(max_tokens=4)
            ),
            "empty",
        ),
        (lambda c, p: c.sample(p, 1, types.SamplingParams(max_tokens=0)), "max_tokens"),
        (lambda c, p: c.sample(p, 0, types.SamplingParams(max_tokens=4)), "num_samples"),
        (
            lambda c, p: c.sample(
                types.ModelInput.from_ints([1, 99999]), 1, types.SamplingParams()
            ),
            "99999",
        ),
        (lambda c, p: c.compute_logprobs(types.ModelInput.from_ints([5, -1])), "-1"),
        (lambda c, p: c.sample(p, 1, types.SamplingParams(top_p=0.0)), "top_p"),
    ],
)
def test_bad_requests_fail_clearly(base, prompt, call, message):
    with pytest.raises(LocalBackendError, match=message):
        call(base, prompt)


def test_sampled_logprobs_match_the_scorer_under_a_trained_adapter_in_a_padded_batch(
    service, tokenizer
):
    """Prompts of different lengths sampled together (one left-padded batch, decoded with the
    adapter merged into the packed decode weights) report the logprobs the scorer gives."""
    tc = service.create_lora_training_client("tiny-qwen3-1m", rank=8, seed=3).result()
    for _ in range(5):
        tc.forward_backward([next_token_datum(chat_tokens(tokenizer, "hi", "yo"))], "cross_entropy")
        tc.optim_step(types.AdamParams(learning_rate=1e-2))
    sampler = tc.save_weights_and_get_sampling_client().result()
    prompts = [types.ModelInput.from_ints(tokenizer.encode(t)) for t in ("a", "longer prompt!")]
    params = types.SamplingParams(max_tokens=20, temperature=1.0, seed=4, stop=[])

    async def both():
        return await asyncio.gather(*[sampler.sample(p, 2, params) for p in prompts])

    before = service.engine.sampling_batches_run
    results = asyncio.run(both())
    assert service.engine.sampling_batches_run == before + 1  # one padded batch
    for prompt, res in zip(prompts, results, strict=True):
        for seq in res.sequences:
            scored = sampler.compute_logprobs(
                types.ModelInput.from_ints(prompt.to_ints() + seq.tokens)
            ).result()
            np.testing.assert_allclose(scored[-20:], seq.logprobs, atol=LOGPROB_TOLERANCE)
