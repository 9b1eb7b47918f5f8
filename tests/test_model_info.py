"""The recommended renderer per model family; unknown families are errors, not guesses."""

import pytest

from tinker_cookbook import model_info, renderers
from tinker_cookbook.local.models import builtin_model_dir


@pytest.mark.parametrize(
    "model, renderer",
    [
        ("Qwen/Qwen3-8B", "qwen3"),
        ("Qwen/Qwen3-8B-Base", "qwen3"),
        ("Qwen/Qwen3-30B-A3B", "qwen3"),
        ("Qwen/Qwen3-4B-Thinking-2507", "qwen3"),
        ("Qwen/Qwen3-4B-Instruct-2507", "qwen3_instruct"),
        ("Qwen/Qwen3-235B-A22B-Instruct-2507", "qwen3_instruct"),
        ("moonshotai/Kimi-K2-Thinking", "kimi_k2"),
        ("moonshotai/Kimi-K2-Instruct-0905", "kimi_k2"),
        ("meta-llama/Llama-3.1-8B-Instruct", "llama3"),
        ("meta-llama/Meta-Llama-3-8B", "llama3"),
        ("tiny-qwen3-1m", "qwen3_instruct"),
        ("Qwen/Qwen3-8B:step40", "qwen3"),
        ("/models/Qwen3-32B/", "qwen3"),
    ],
)
def test_recommended_renderer_per_family(model, renderer):
    assert model_info.get_recommended_renderer_name(model) == renderer
    assert renderer in renderers.renderer_names()


def test_every_recommended_renderer_exists_and_the_old_import_still_works():
    assert model_info.get_recommended_renderer_names("Qwen/Qwen3-8B") == [
        "qwen3",
        "qwen3_disable_thinking",
    ]
    assert renderers.get_recommended_renderer_name is model_info.get_recommended_renderer_name
    assert (
        model_info.get_recommended_renderer_name(str(builtin_model_dir("tiny-qwen3-4m")))
        == "qwen3_instruct"
    )


@pytest.mark.parametrize(
    "model", ["gpt2", "acme/Unknown-7B", "Qwen/Qwen3.5-9B", "moonshotai/Kimi-K2.5", "Llama-2-7b"]
)
def test_unknown_families_name_the_renderers_instead_of_guessing(model):
    with pytest.raises(ValueError) as error:
        model_info.get_recommended_renderer_name(model)
    message = str(error.value)
    assert repr(model) in message and "role_colon" in message and "qwen3_instruct" in message


def test_a_renderer_for_another_family_is_flagged(caplog):
    model_info.warn_if_renderer_not_recommended("Qwen/Qwen3-8B", "llama3")
    assert "not made for model 'Qwen/Qwen3-8B'" in caplog.text


def test_a_run_records_one_renderer_and_refuses_two():
    assert model_info.run_renderer_name("tiny-qwen3-1m", None, [None]) == "qwen3_instruct"
    assert model_info.run_renderer_name("tiny-qwen3-1m", "qwen3", [None, "qwen3"]) == "qwen3"
    with pytest.raises(ValueError, match=r"\['qwen3', 'role_colon'\]"):
        model_info.run_renderer_name("tiny-qwen3-1m", "qwen3", ["role_colon"])
