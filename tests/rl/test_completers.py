"""Token and message completers over the local backend's tiny model."""

import asyncio

import pytest
from tinker import types

from tinker_cookbook.completers import TinkerMessageCompleter, TinkerTokenCompleter
from tinker_cookbook.renderers import get_renderer


@pytest.fixture(scope="module")
def sampler(service):
    return service.create_sampling_client(base_model="tiny-qwen3-1m").result()


@pytest.fixture(scope="module")
def prompt(tokenizer):
    return types.ModelInput.from_ints(
        tokenizer.encode("<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n")
    )


def test_token_completer_samples_with_logprobs_and_a_per_call_budget(sampler, prompt):
    completer = TinkerTokenCompleter(sampler, max_tokens=6)
    out = asyncio.run(completer(prompt, [], max_tokens=3))
    assert 1 <= len(out.tokens) <= 3 and len(out.logprobs) == len(out.tokens)
    assert out.stop_reason in ("stop", "length")


def test_seeded_completers_repeat_their_samples(sampler, prompt):
    def run() -> list[list[int]]:
        completer = TinkerTokenCompleter(sampler, max_tokens=8, seed=3)
        return [asyncio.run(completer(prompt, [])).tokens for _ in range(3)]

    first = run()
    assert first == run() and len({tuple(t) for t in first}) > 1


def test_context_window_leaves_no_room_is_a_clear_error(sampler, prompt):
    completer = TinkerTokenCompleter(sampler, max_tokens=8, context_window=prompt.length)
    with pytest.raises(ValueError, match="no room to sample"):
        asyncio.run(completer(prompt, []))


def test_message_completer_returns_an_assistant_message(sampler, tokenizer):
    completer = TinkerMessageCompleter(sampler, get_renderer("qwen3", tokenizer), max_tokens=6)
    reply = asyncio.run(completer([{"role": "user", "content": "hi"}]))
    assert reply["role"] == "assistant" and "content" in reply
