"""Renderers on the real Qwen vocabulary: round trips, trained spans, stop sequences."""

import copy

import pytest

from tinker_cookbook.local import get_tokenizer
from tinker_cookbook.renderers import (
    TrainOnWhat,
    datum_from_tokens_weights,
    get_recommended_renderer_name,
    get_renderer,
)

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is 6 * 7?"},
    {"role": "assistant", "content": "42"},
    {"role": "user", "content": "And 6 + 7?"},
    {"role": "assistant", "content": "13"},
]


@pytest.fixture(scope="module")
def qwen_tok():
    return get_tokenizer("Qwen/Qwen3-8B")


@pytest.fixture(scope="module")
def llama_tok():
    tok = copy.deepcopy(get_tokenizer("tiny-qwen3-1m"))
    tok.add_special_tokens(
        {
            "additional_special_tokens": [
                "<|begin_of_text|>",
                "<|start_header_id|>",
                "<|end_header_id|>",
                "<|eot_id|>",
                "<|python_tag|>",
            ]
        }  # fmt: skip
    )
    return tok


def trained_text(renderer, messages, what):
    model_input, weights = renderer.build_supervised_example(messages, what)
    tokens = model_input.to_ints()
    assert len(tokens) == len(weights)
    return renderer.tokenizer.decode(
        [t for t, w in zip(tokens, weights.tolist(), strict=True) if w > 0]
    )


def test_qwen3_layout_matches_chatml(qwen_tok):
    r = get_renderer("qwen3", qwen_tok)
    prompt = r.build_generation_prompt(CONVERSATION[:2])
    assert qwen_tok.decode(prompt.to_ints()) == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nWhat is 6 * 7?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert r.get_stop_sequences() == [151645]


def test_qwen3_weights_cover_exactly_the_trained_spans(qwen_tok):
    r = get_renderer("qwen3", qwen_tok)
    assert trained_text(r, CONVERSATION, TrainOnWhat.LAST_ASSISTANT_MESSAGE) == "13<|im_end|>"
    assert trained_text(r, CONVERSATION, "all_assistant_messages") == "42<|im_end|>13<|im_end|>"
    assert trained_text(r, CONVERSATION, TrainOnWhat.ALL_MESSAGES) == (
        "You are terse.<|im_end|>What is 6 * 7?<|im_end|>42<|im_end|>And 6 + 7?<|im_end|>13<|im_end|>"
    )
    everything, weights = r.build_supervised_example(CONVERSATION, TrainOnWhat.ALL_TOKENS)
    assert weights.min() == 1.0
    # The supervised sequence is the generation prompt plus the sampled body: train = test.
    prompt = r.build_generation_prompt(CONVERSATION[:-1]).to_ints()
    assert everything.to_ints()[: len(prompt)] == prompt


def test_qwen3_round_trip_with_thinking_and_tool_calls(qwen_tok):
    r = get_renderer("qwen3", qwen_tok)
    message = {
        "role": "assistant",
        "content": "Let me check.",
        "thinking": "The user wants the file list.",
        "tool_calls": [{"name": "bash", "arguments": {"command": "ls -la /tmp", "timeout": 5}}],
    }
    body = r.render_message(message, is_last=True).body
    parsed, ok = r.parse_response(body)
    assert ok
    assert parsed == message


def test_qwen3_tool_results_render_as_tool_response(qwen_tok):
    r = get_renderer("qwen3", qwen_tok)
    tokens = r.build_generation_prompt(
        [{"role": "tool", "content": "a.txt", "name": "bash"}]
    ).to_ints()
    assert (
        "<|im_start|>user\n<tool_response>\na.txt\n</tool_response><|im_end|>"
        in qwen_tok.decode(tokens)
    )


@pytest.mark.parametrize(
    "text, error",
    [
        ('<tool_call>\n{"name": "bash", "arguments": {"command": \n</tool_call>', "not valid JSON"),
        ("<tool_call>\n[1, 2]\n</tool_call>", "string 'name'"),
        ('I will call it <tool_call>\n{"name": "bash"', "never closed"),
    ],
)
def test_qwen3_malformed_tool_calls_are_reported_not_raised(qwen_tok, text, error):
    r = get_renderer("qwen3", qwen_tok)
    parsed, ok = r.parse_response(qwen_tok.encode(text) + [r.im_end])
    assert not ok
    assert error in parsed["tool_call_error"]
    assert "tool_calls" not in parsed


def test_truncated_response_is_not_ok(qwen_tok):
    r = get_renderer("qwen3", qwen_tok)
    parsed, ok = r.parse_response(qwen_tok.encode("The answer is"))
    assert not ok and parsed["content"] == "The answer is"


def test_disable_thinking_prefills_an_empty_think_block(qwen_tok):
    r = get_renderer("qwen3_disable_thinking", qwen_tok)
    text = qwen_tok.decode(r.build_generation_prompt(CONVERSATION[:2]).to_ints())
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_role_colon_stop_string_is_learned(qwen_tok):
    r = get_renderer("role_colon", qwen_tok)
    assert qwen_tok.decode(r.build_generation_prompt(CONVERSATION[1:2]).to_ints()) == (
        "User: What is 6 * 7?\n\nAssistant:"
    )
    assert trained_text(r, CONVERSATION[1:3], TrainOnWhat.LAST_ASSISTANT_MESSAGE) == " 42\n\nUser:"
    stop = r.get_stop_sequences()[0]
    parsed, ok = r.parse_response(qwen_tok.encode(" 42" + stop + " more"))
    assert ok and parsed["content"] == "42"


def test_llama3_layout_and_round_trip(llama_tok):
    r = get_renderer("llama3", llama_tok)
    text = llama_tok.decode(r.build_generation_prompt(CONVERSATION[1:2]).to_ints())
    assert text == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is 6 * 7?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    message = {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"name": "f", "arguments": {"x": 1}}],
    }
    parsed, ok = r.parse_response(r.render_message(message, True).body)
    assert ok and parsed == message
    assert trained_text(r, CONVERSATION[1:3], "last_assistant_message") == "42<|eot_id|>"


def test_renderer_for_the_wrong_tokenizer_fails_clearly(qwen_tok):
    with pytest.raises(
        ValueError, match="renderer 'llama3' needs '<|begin_of_text|>' as one token"
    ):
        get_renderer("llama3", qwen_tok)
    with pytest.raises(ValueError, match="Unknown renderer 'chatml2'; valid renderers: llama3"):
        get_renderer("chatml2", qwen_tok)


def test_stop_sequence_ends_generation_of_a_tiny_model(service):
    """A tiny model taught one reply stops at the renderer's stop token with ok=True."""
    from tinker import types

    trainer = service.create_lora_training_client("tiny-qwen3-1m", rank=8, seed=0).result()
    r = get_renderer(get_recommended_renderer_name("tiny-qwen3-1m"), trainer.get_tokenizer())
    convo = [{"role": "user", "content": "ping"}, {"role": "assistant", "content": "pong"}]
    datum = datum_from_tokens_weights(*r.build_supervised_example(convo))
    for _ in range(40):
        trainer.forward_backward([datum], "cross_entropy")
        trainer.optim_step(types.AdamParams(learning_rate=3e-3))
    sampler = trainer.save_weights_and_get_sampling_client().result()
    params = types.SamplingParams(max_tokens=40, temperature=0.0, stop=r.get_stop_sequences())
    seq = sampler.sample(r.build_generation_prompt(convo[:1]), 1, params).result().sequences[0]
    message, ok = r.parse_response(seq.tokens)
    assert ok and seq.stop_reason == "stop"
    assert message == {"role": "assistant", "content": "pong"}


def test_datum_truncates_instead_of_dropping(qwen_tok):
    r = get_renderer("qwen3", qwen_tok)
    model_input, weights = r.build_supervised_example(CONVERSATION)
    datum = datum_from_tokens_weights(model_input, weights, max_length=10)
    assert datum.model_input.length == 9
    assert datum.loss_fn_inputs["target_tokens"].tolist() == model_input.to_ints()[1:10]


def test_recommended_renderers():
    assert get_recommended_renderer_name("Qwen/Qwen3-8B-Base") == "qwen3"
    assert get_recommended_renderer_name("meta-llama/Llama-3.1-8B-Instruct") == "llama3"
    assert get_recommended_renderer_name("tiny-qwen3-4m") == "qwen3"
    assert get_recommended_renderer_name("gpt2") == "role_colon"
