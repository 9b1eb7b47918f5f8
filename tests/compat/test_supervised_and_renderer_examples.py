"""The cookbook's documented SFT and renderer snippets, run against this package."""

import pytest
import torch

from tinker_cookbook import model_info, renderers
from tinker_cookbook.renderers import TrainOnWhat, get_renderer, register_renderer
from tinker_cookbook.renderers.base import ToolCall, ensure_list, get_text_content
from tinker_cookbook.supervised.data import conversation_to_datum
from tinker_cookbook.tokenizer_utils import get_tokenizer

MODEL = "tiny-qwen3-1m"


@pytest.fixture(scope="module")
def renderer():
    return get_renderer(model_info.get_recommended_renderer_name(MODEL), get_tokenizer(MODEL))


def test_conversation_to_datum_trains_only_the_assistant(renderer):
    messages = [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
    ]
    datum = conversation_to_datum(messages, renderer, 512, TrainOnWhat.ALL_ASSISTANT_MESSAGES)
    targets = datum.loss_fn_inputs["target_tokens"].to_torch()
    weights = datum.loss_fn_inputs["weights"].to_torch()
    assert datum.model_input.length == len(targets) == len(weights)
    trained = renderer.tokenizer.decode(targets[weights > 0].tolist())
    assert trained.startswith("4") or "4" in trained
    assert "What is" not in trained


def test_conversation_to_datum_truncates_to_max_length(renderer):
    messages = [
        {"role": "user", "content": "word " * 200},
        {"role": "assistant", "content": "done"},
    ]
    datum = conversation_to_datum(messages, renderer, max_length=32)
    assert datum.model_input.length <= 32


def test_parse_response_round_trip_and_key_methods(renderer):
    message = {"role": "assistant", "content": "It is 4."}
    model_input, weights = renderer.build_supervised_example(
        [{"role": "user", "content": "2+2?"}, message],
        train_on_what=TrainOnWhat.ALL_ASSISTANT_MESSAGES,
    )
    assert isinstance(weights, torch.Tensor) and len(weights) == model_input.length
    prompt = renderer.build_generation_prompt([{"role": "user", "content": "2+2?"}])
    sampled = model_input.to_ints()[prompt.length :]
    while sampled and sampled[-1] not in renderer.get_stop_sequences():
        sampled = sampled[:-1]  # the template's newline after the end-of-turn token
    parsed, is_complete = renderer.parse_response(sampled)
    assert is_complete
    assert get_text_content(parsed) == "It is 4."
    assert ensure_list(parsed["content"])[-1] == {"type": "text", "text": "It is 4."}


def test_tool_declaration_and_tool_call_types(renderer):
    specs = [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    prefix = renderer.create_conversation_prefix_with_tools(specs, system_prompt="Be brief.")
    assert prefix[0]["role"] == "system"
    assert "get_weather" in prefix[0]["content"] and "Be brief." in prefix[0]["content"]
    call = ToolCall(
        function=ToolCall.FunctionBody(name="get_weather", arguments='{"city": "Zürich"}')
    )
    prompt = renderer.build_generation_prompt(
        prefix
        + [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "content": "sunny", "tool_call_id": "c0", "name": "get_weather"},
        ]
    )
    text = renderer.tokenizer.decode(prompt.to_ints())
    assert '"city": "Zürich"' in text and "<tool_response>\nsunny\n</tool_response>" in text


def test_register_renderer_with_the_cookbook_factory_signature():
    class Shouting(renderers.RoleColonRenderer):
        pass

    register_renderer("shouting_test", lambda tokenizer, image_processor: Shouting(tokenizer))
    assert isinstance(get_renderer("shouting_test", get_tokenizer(MODEL)), Shouting)


def test_unknown_model_family_names_the_renderers():
    with pytest.raises(ValueError) as error:
        model_info.get_recommended_renderer_name("acme/Unknown-7B")
    assert "qwen3" in str(error.value) and "role_colon" in str(error.value)


def test_kimi_k2_gets_its_own_renderer():
    assert model_info.get_recommended_renderer_name("moonshotai/Kimi-K2-Thinking") == "kimi_k2"
