"""Harbor's own Tinker LLM (`harbor.llms.tinker.TinkerLLM`, what `harbor[tinker]` installs)
imports this package, picks a renderer and tokenizer through it, and renders and parses a
conversation with it. Sampling goes to this package's local backend in place of the service,
or to a scripted sampler where the reply must be known."""

import asyncio

import numpy as np
import pytest
from tinker import types

harbor_tinker = pytest.importorskip("harbor.llms.tinker")

HISTORY = [
    {"role": "user", "content": "hello"},
    {"role": "assistant", "content": "hi", "reasoning_content": "greet back"},
]


def make_llm(sampler, max_tokens: int = 64, renderer_name: str | None = "qwen3"):
    llm = harbor_tinker.TinkerLLM(
        model_name="tiny-qwen3-1m", max_tokens=max_tokens, renderer_name=renderer_name
    )

    async def client():
        return sampler

    llm._ensure_client = client
    return llm


class ScriptedSampler:
    """Answers every prompt with the same reply tokens, and remembers the prompt."""

    def __init__(self, reply: list[int]):
        self.reply, self.prompts = reply, []

    async def sample(self, prompt, num_samples, sampling_params):
        self.prompts.append(prompt.to_ints())
        sequence = types.SampledSequence(
            stop_reason="stop",
            sequence_id="scripted",
            tokens_np=np.asarray(self.reply, dtype=np.int32),
            logprobs_np=np.full(len(self.reply), -0.1, dtype=np.float32),
        )
        return types.SampleResponse(sequences=[sequence])


def test_harbor_finds_every_name_it_imports_from_this_package():
    assert harbor_tinker.TINKER_AVAILABLE, "harbor could not import tinker_cookbook's names"


def test_harbor_tinker_llm_renders_and_parses_through_our_renderer():
    probe = make_llm(None)
    tokenizer = probe._renderer.tokenizer
    reply = tokenizer.encode("<think>\ncounting\n</think>\n\none two three<|im_end|>")
    sampler = ScriptedSampler(reply)
    response = asyncio.run(make_llm(sampler).call("count to three", message_history=HISTORY))
    assert response.content == "one two three"
    assert response.reasoning_content == "counting"
    expected = probe._renderer.build_generation_prompt(
        [
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "greet back"},
                {"type": "text", "text": "hi"},
            ]},
            {"role": "user", "content": "count to three"},
        ]
    ).to_ints()  # fmt: skip
    assert sampler.prompts == [expected]
    prompt = tokenizer.decode(expected)
    assert prompt.endswith("<|im_start|>user\ncount to three<|im_end|>\n<|im_start|>assistant\n")
    assert "greet back" not in prompt  # Qwen3 drops reasoning of turns before the last query
    assert response.completion_token_ids == reply


def test_harbor_tinker_llm_samples_from_the_local_backend(service):
    sampler = service.create_sampling_client(base_model="tiny-qwen3-1m")
    llm = make_llm(sampler, max_tokens=8, renderer_name=None)  # picked by model_info
    try:
        response = asyncio.run(llm.call("count to three", message_history=HISTORY))
    except harbor_tinker.OutputLengthExceededError as exc:
        assert exc.truncated_response is not None  # sampled 8 tokens, parsed, no stop token
        return
    assert 0 < response.usage.completion_tokens <= 8
