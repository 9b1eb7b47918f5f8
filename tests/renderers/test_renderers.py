"""Renderer behaviour a user sees: trained spans, parsing sampled replies, multi-turn
continuation, tool declarations, registry errors. Exactness against the chat templates is in
test_template_exactness.py."""

import copy

import pytest
from tokenizers import AddedToken

from tests.renderers.template_cases import WEATHER_TOOLS, kimi_tokenizer, qwen_tokenizer
from tinker_cookbook.renderers import (
    ParseTermination,
    Qwen3Renderer,
    RendererError,
    ToolCall,
    TrainOnWhat,
    get_recommended_renderer_name,
    get_renderer,
    get_text_content,
    get_thinking_content,
    register_renderer,
    renderer_names,
    unregister_renderer,
)
from tinker_cookbook.renderers.base import ensure_list
from tinker_cookbook.supervised.common import datum_from_model_input_weights
from tinker_cookbook.tokenizer_utils import get_tokenizer

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is 6 * 7?"},
    {"role": "assistant", "content": "42"},
    {"role": "user", "content": "And 6 + 7?"},
    {"role": "assistant", "content": "13"},
]
EMPTY_THINK = "<think>\n\n</think>\n\n"


@pytest.fixture(scope="module")
def qwen_tok():
    return qwen_tokenizer()


@pytest.fixture(scope="module")
def llama_tok():
    tok = copy.deepcopy(get_tokenizer("tiny-qwen3-1m"))
    markers = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in markers])
    return tok


def trained_text(renderer, messages, what=TrainOnWhat.LAST_ASSISTANT_MESSAGE) -> str:
    model_input, weights = renderer.build_supervised_example(messages, what)
    tokens = model_input.to_ints()
    assert len(tokens) == len(weights)
    return renderer.tokenizer.decode(
        [t for t, w in zip(tokens, weights.tolist(), strict=True) if w > 0]
    )


def reply_tokens(renderer, message) -> list[int]:
    """What the model samples for `message` after a generation prompt."""
    prompt = renderer.build_generation_prompt([{"role": "user", "content": "go"}]).to_ints()
    full, _ = renderer.build_supervised_example([{"role": "user", "content": "go"}, message])
    return full.to_ints()[len(prompt) :]


# ---- what is trained ----------------------------------------------------------------------
def test_qwen3_trains_the_produced_turn_with_its_think_block(qwen_tok):
    r = get_renderer("qwen3", qwen_tok)
    assert trained_text(r, CONVERSATION) == f"{EMPTY_THINK}13<|im_end|>"
    # Earlier turns are history: no think block, as the template writes them.
    assert trained_text(r, CONVERSATION, "all_assistant_messages") == (
        f"42<|im_end|>{EMPTY_THINK}13<|im_end|>"
    )
    assert trained_text(r, CONVERSATION, TrainOnWhat.ALL_USER_AND_SYSTEM_MESSAGES) == (
        "You are terse.<|im_end|>What is 6 * 7?<|im_end|>And 6 + 7?<|im_end|>"
    )
    everything, weights = r.build_supervised_example(CONVERSATION, TrainOnWhat.ALL_TOKENS)
    assert weights.min() == 1.0
    prompt = r.build_generation_prompt(CONVERSATION[:-1]).to_ints()
    assert everything.to_ints()[: len(prompt)] == prompt  # train = sample


def test_disable_thinking_trains_after_the_prefilled_empty_block(qwen_tok):
    r = get_renderer("qwen3_disable_thinking", qwen_tok)
    prompt = r.build_generation_prompt(CONVERSATION[:-1]).to_ints()
    assert qwen_tok.decode(prompt).endswith(f"<|im_start|>assistant\n{EMPTY_THINK}")
    example, weights = r.build_supervised_example(CONVERSATION)
    assert example.to_ints()[: len(prompt)] == prompt
    assert trained_text(r, CONVERSATION) == "13<|im_end|>"
    reasoned = [*CONVERSATION[:-1], {"role": "assistant", "content": "<think>7+6</think>13"}]
    with pytest.raises(RendererError, match="closed .*message 4"):
        r.build_supervised_example(reasoned)


def test_last_assistant_turn_covers_tool_calls_and_the_answer(qwen_tok):
    r = get_renderer("qwen3", qwen_tok)
    messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "", "tool_calls": [ToolCall.from_arguments("w", {})]},
        {"role": "tool", "content": "sunny"},
        {"role": "assistant", "content": "Sunny."},
    ]
    text = trained_text(r, messages, TrainOnWhat.LAST_ASSISTANT_TURN)
    assert text.startswith('<tool_call>\n{"name": "w", "arguments": {}}\n</tool_call><|im_end|>')
    assert text.endswith("Sunny.<|im_end|>") and "sunny" not in text
    examples = r.build_supervised_examples(messages)
    assert len(examples) == 2  # history is rewritten, so one example per sampled message
    instruct = get_renderer("qwen3_instruct", qwen_tok)  # never rewrites history: one example
    ((tokens, _),) = instruct.build_supervised_examples(messages)
    assert "<think>" not in qwen_tok.decode(tokens.to_ints())


def test_customized_reads_trainable_and_names_a_missing_flag(qwen_tok):
    r = get_renderer("qwen3", qwen_tok)
    flagged = [{**m, "trainable": m["content"] == "42"} for m in CONVERSATION]
    assert trained_text(r, flagged, TrainOnWhat.CUSTOMIZED) == "42<|im_end|>"
    with pytest.raises(RendererError, match="message 2 .*has none"):
        r.build_supervised_example(
            [*flagged[:2], CONVERSATION[2], *flagged[3:]], TrainOnWhat.CUSTOMIZED
        )
    with pytest.raises(RendererError, match="message 0 .*only train_on_what=customized"):
        r.build_supervised_example(flagged, TrainOnWhat.LAST_ASSISTANT_MESSAGE)
    assert len(TrainOnWhat) == 7


# ---- parsing sampled replies --------------------------------------------------------------
def test_qwen3_parses_reasoning_and_calls_back_to_what_it_rendered(qwen_tok):
    r = get_renderer("qwen3", qwen_tok)
    message = {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "List /tmp, then read Größe.txt."},
            {"type": "text", "text": "Let me check."},
        ],
        "tool_calls": [
            ToolCall.from_arguments("bash", {"command": "ls -la /tmp", "timeout": 5}),
            ToolCall.from_arguments("read", {"path": "Größe.txt"}),
        ],
    }
    tokens = reply_tokens(r, message)
    parsed, termination = r.parse_response(tokens)
    assert termination is ParseTermination.STOP_SEQUENCE and termination
    assert parsed == message
    assert parsed["tool_calls"][1].parsed_arguments() == {"path": "Größe.txt"}
    assert reply_tokens(r, parsed) == tokens  # re-rendering reproduces the sampled tokens


def test_qwen3_keeps_arguments_as_written_and_content_as_a_string(qwen_tok):
    r = get_renderer("qwen3", qwen_tok)
    sampled = '<think>\n\n</think>\n\n<tool_call>\n{"name": "f", "arguments": {"x":1,"é":"ü"}}\n</tool_call>'
    parsed, _ = r.parse_response(qwen_tok.encode(sampled) + [r.get_stop_sequences()[0]])
    assert parsed["content"] == ""  # an empty think block is no reasoning
    assert parsed["tool_calls"][0].function.arguments == '{"x":1,"é":"ü"}'


@pytest.mark.parametrize(
    "text, error",
    [
        ('<tool_call>\n{"name": "bash", "arguments": {"command": \n</tool_call>', "not valid JSON"),
        ("<tool_call>\n[1, 2]\n</tool_call>", '"name": "<string>"'),
        ('I will call it <tool_call>\n{"name": "bash"', "unterminated tool block"),
    ],
)
def test_malformed_tool_calls_are_reported_not_raised(qwen_tok, text, error):
    r = get_renderer("qwen3", qwen_tok)
    parsed, termination = r.parse_response(qwen_tok.encode(text) + r.get_stop_sequences())
    assert termination.is_clean  # the reply ended properly; only its call is bad
    assert error in parsed["unparsed_tool_calls"][0].error
    assert "tool_calls" not in parsed


def test_truncated_or_doubly_stopped_replies_are_malformed_not_errors(qwen_tok):
    r = get_renderer("qwen3", qwen_tok)
    parsed, termination = r.parse_response(qwen_tok.encode("The answer is"))
    assert termination is ParseTermination.MALFORMED and not termination
    assert parsed["content"] == "The answer is"
    stop = r.get_stop_sequences()
    _, termination = r.parse_response(qwen_tok.encode("a") + stop + qwen_tok.encode("b") + stop)
    assert termination is ParseTermination.MALFORMED


# ---- multi-turn continuation --------------------------------------------------------------
@pytest.mark.parametrize("name", ["qwen3", "qwen3_instruct", "kimi_k2"])
def test_continuation_equals_rerendering_the_conversation(name):
    r = get_renderer(name, kimi_tokenizer() if name == "kimi_k2" else qwen_tokenizer())
    history = [{"role": "user", "content": "Weather in Genève and Zürich?"}]
    reply = {
        "role": "assistant",
        "content": [{"type": "thinking", "thinking": "Both."}],
        "tool_calls": [
            ToolCall.from_arguments("get_weather", {"city": c}, id=f"functions.get_weather:{i}")
            for i, c in enumerate(["Genève", "Zürich"])
        ],
    }
    results = [
        {
            "role": "tool",
            "content": s,
            "name": "get_weather",
            "tool_call_id": f"functions.get_weather:{i}",
        }
        for i, s in enumerate(["sunny", "rain"])
    ]
    prompt = r.build_generation_prompt(history).to_ints()
    sampled = reply_tokens(r, reply)
    assert r.ends_with_stop(sampled)
    whole = r.build_generation_prompt([*history, reply, *results]).to_ints()
    assert prompt + sampled + r.render_continuation(results) == whole
    if name.startswith("qwen3"):  # consecutive results share one user turn
        assert r.tokenizer.decode(r.render_continuation(results)) == (
            "\n<|im_start|>user\n<tool_response>\nsunny\n</tool_response>\n<tool_response>"
            "\nrain\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
        )


def test_qwen3_drops_reasoning_of_earlier_turns_only(qwen_tok):
    r = get_renderer("qwen3", qwen_tok)
    assert not r.has_extension_property
    first = {
        "role": "assistant",
        "content": [{"type": "thinking", "thinking": "R1"}, {"type": "text", "text": "A1"}],
    }
    prompt = r.build_generation_prompt(
        [{"role": "user", "content": "Q1"}, first, {"role": "user", "content": "Q2"}]
    )
    assert "R1" not in qwen_tok.decode(prompt.to_ints())
    keep = Qwen3Renderer(qwen_tok, strip_thinking_from_history=False)
    assert keep.has_extension_property
    assert "<think>\nR1\n</think>\n\nA1" in qwen_tok.decode(
        keep.build_generation_prompt([{"role": "user", "content": "Q1"}, first]).to_ints()
    )


# ---- tool declarations --------------------------------------------------------------------
def test_qwen3_declares_tools_in_its_native_system_text(qwen_tok):
    r = get_renderer("qwen3", qwen_tok)
    (system,) = r.create_conversation_prefix_with_tools(WEATHER_TOOLS, "Be brief.")
    assert system["role"] == "system"
    assert system["content"].startswith("Be brief.\n\n# Tools\n\nYou may call one or more")
    assert '{"type": "function", "function": {"name": "get_weather"' in system["content"]
    assert "Zürich" in system["content"]  # non-ASCII kept, as the template's tojson does
    assert r.create_conversation_prefix_with_tools([], "Be brief.") == [
        {"role": "system", "content": "Be brief."}
    ]


def test_kimi_declares_tools_before_the_system_prompt():
    r = get_renderer("kimi_k2", kimi_tokenizer())
    declare, system = r.create_conversation_prefix_with_tools(WEATHER_TOOLS)
    assert declare["role"] == "tool_declare" and declare["content"].startswith('[{"function":{')
    assert system == {"role": "system", "content": r.DEFAULT_SYSTEM_PROMPT}
    text = r.tokenizer.decode(
        r.build_generation_prompt([{"role": "user", "content": "Hi"}]).to_ints()
    )
    assert text == (
        "<|im_system|>system<|im_middle|>You are Kimi, an AI assistant created by Moonshot AI."
        "<|im_end|><|im_user|>user<|im_middle|>Hi<|im_end|><|im_assistant|>assistant<|im_middle|>"
    )


def test_kimi_parses_reasoning_and_calls():
    r = get_renderer("kimi_k2", kimi_tokenizer())
    text = (
        "<think>Need weather.</think>On it.<|tool_calls_section_begin|><|tool_call_begin|>"
        'functions.get_weather:0<|tool_call_argument_begin|>{"city": "Zürich"}<|tool_call_end|>'
        "<|tool_call_begin|>functions.search:1<|tool_call_argument_begin|>{bad<|tool_call_end|>"
        "<|tool_calls_section_end|>"
    )
    parsed, termination = r.parse_response(r.tokenizer.encode(text) + r.get_stop_sequences())
    assert termination.is_stop_sequence
    assert get_thinking_content(parsed) == "Need weather." and get_text_content(parsed) == "On it."
    (call,) = parsed["tool_calls"]
    assert (call.function.name, call.id) == ("get_weather", "functions.get_weather:0")
    assert "not JSON" in parsed["unparsed_tool_calls"][0].error


# ---- other formats ------------------------------------------------------------------------
def test_role_colon_learns_its_stop_string(qwen_tok):
    r = get_renderer("role_colon", qwen_tok)
    assert qwen_tok.decode(r.build_generation_prompt(CONVERSATION[1:2]).to_ints()) == (
        "User: What is 6 * 7?\n\nAssistant:"
    )
    assert trained_text(r, CONVERSATION[1:3]) == " 42\n\nUser:"
    parsed, termination = r.parse_response(qwen_tok.encode(" 42\n\nUser: more"))
    assert termination.is_stop_sequence and parsed["content"] == "42"
    _, termination = r.parse_response(qwen_tok.encode(" 42") + [qwen_tok.eos_token_id])
    assert termination is ParseTermination.EOS


def test_llama3_layout(llama_tok):
    r = get_renderer("llama3", llama_tok)
    assert llama_tok.decode(r.build_generation_prompt(CONVERSATION[1:2]).to_ints()) == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is 6 * 7?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert trained_text(r, CONVERSATION[1:3]) == "42<|eot_id|>"
    parsed, termination = r.parse_response(llama_tok.encode("42<|eot_id|>"))
    assert termination and parsed == {"role": "assistant", "content": "42"}
    with pytest.raises(RendererError, match="cannot render tool calls"):
        r.build_generation_prompt(
            [{"role": "assistant", "content": "", "tool_calls": [ToolCall.from_arguments("f", {})]}]
        )


# ---- registry -----------------------------------------------------------------------------
def test_unknown_or_mismatched_renderers_fail_clearly(qwen_tok):
    with pytest.raises(ValueError, match="renderer 'llama3' needs '<|begin_of_text|>' as one"):
        get_renderer("llama3", qwen_tok)
    with pytest.raises(ValueError, match="Unknown renderer 'chatml2'; valid renderers: kimi_k2"):
        get_renderer("chatml2", qwen_tok)
    assert {"qwen3", "qwen3_disable_thinking", "qwen3_instruct", "kimi_k2"} <= set(renderer_names())


def test_registered_renderers_get_tokenizer_and_image_processor(qwen_tok):
    seen = []
    register_renderer("test/mine", lambda tok, ip: seen.append(ip) or get_renderer("qwen3", tok))
    try:
        assert get_renderer("test/mine", qwen_tok).name == "qwen3" and seen == [None]
        assert "test/mine" in renderer_names()
    finally:
        assert unregister_renderer("test/mine")


def test_stop_sequence_ends_generation_of_a_tiny_model(service):
    """A tiny model taught one reply stops at the renderer's stop token, and parses back."""
    from tinker import types

    trainer = service.create_lora_training_client("tiny-qwen3-1m", rank=8, seed=0).result()
    r = get_renderer(get_recommended_renderer_name("tiny-qwen3-1m"), trainer.get_tokenizer())
    convo = [{"role": "user", "content": "ping"}, {"role": "assistant", "content": "pong"}]
    datum = datum_from_model_input_weights(*r.build_supervised_example(convo))
    for _ in range(40):
        trainer.forward_backward([datum], "cross_entropy")
        trainer.optim_step(types.AdamParams(learning_rate=3e-3))
    sampler = trainer.save_weights_and_get_sampling_client().result()
    params = types.SamplingParams(max_tokens=40, temperature=0.0, stop=r.get_stop_sequences())
    seq = sampler.sample(r.build_generation_prompt(convo[:1]), 1, params).result().sequences[0]
    message, termination = r.parse_response(seq.tokens)
    assert termination.is_stop_sequence and seq.stop_reason == "stop"
    assert message == {"role": "assistant", "content": "pong"}
    assert ensure_list(message["content"]) == [{"type": "text", "text": "pong"}]


def test_datum_truncates_instead_of_dropping(qwen_tok):
    r = get_renderer("qwen3", qwen_tok)
    model_input, weights = r.build_supervised_example(CONVERSATION)
    datum = datum_from_model_input_weights(model_input, weights, max_length=10)
    assert datum.model_input.length == 9
    assert datum.loss_fn_inputs["target_tokens"].tolist() == model_input.to_ints()[1:10]
