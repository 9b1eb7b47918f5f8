"""Tokenizers by name, offline, with the real tokenizers' special-token flags."""

import pytest

from tinker_cookbook import local
from tinker_cookbook.local.models import builtin_model_dir
from tinker_cookbook.offline_tokenizers import (
    QWEN3_ADDED_TOKENS,
    TINY_ADDED_TOKENS,
    TOKENIZER_FORMAT_VERSION,
    _cached_qwen_json,
)
from tinker_cookbook.tokenizer_utils import (
    TokenizerNotFoundError,
    get_tokenizer,
    register_tokenizer,
    unregister_tokenizer,
)

MARKUP = "<think>\nwhy\n</think>\n\n<tool_call>\n{}\n</tool_call><tool_response>ok</tool_response>"


@pytest.mark.parametrize(
    "name, spec, first_id",
    [("Qwen/Qwen3-8B", QWEN3_ADDED_TOKENS, 151643), ("tiny-qwen3-1m", TINY_ADDED_TOKENS, 256)],
)
def test_added_tokens_carry_the_real_special_flags(name, spec, first_id):
    tok = get_tokenizer(name)
    decoder = tok.added_tokens_decoder
    assert [
        (decoder[first_id + i].content, decoder[first_id + i].special) for i in range(len(spec))
    ] == spec
    # Qwen3-8B's tokenizer_config: control tokens are special, markup the model writes is not.
    assert dict(spec)["<|im_end|>"] and not dict(spec)["<think>"]


@pytest.mark.parametrize("name", ["Qwen/Qwen3-8B", "tiny-qwen3-1m"])
def test_skipping_special_tokens_keeps_reasoning_and_tool_markup(name):
    tok = get_tokenizer(name)
    ids = tok.encode(f"<|im_start|>assistant\n{MARKUP}<|im_end|>", add_special_tokens=False)
    assert tok.decode(ids, skip_special_tokens=True) == f"assistant\n{MARKUP}"


def test_cached_files_are_rebuilt_when_the_format_changes():
    """Tokenizers cached before the flags were fixed live under an older version's folder."""
    assert TOKENIZER_FORMAT_VERSION != "1"
    assert _cached_qwen_json().parent.name == f"qwen3-v{TOKENIZER_FORMAT_VERSION}"
    folder = builtin_model_dir("tiny-qwen3-1m")
    assert not folder.name.endswith("-v1")
    saved = get_tokenizer(str(folder))  # the tokenizer files saved beside the tiny weights
    ids = saved.encode("<think>x</think><|im_end|>", add_special_tokens=False)
    assert saved.decode(ids, skip_special_tokens=True) == "<think>x</think>"


def test_names_resolve_offline_and_the_local_alias_is_the_same_function():
    assert local.get_tokenizer is get_tokenizer
    assert get_tokenizer("tiny-qwen3-4m").get_vocab() == get_tokenizer("tiny-qwen3-1m").get_vocab()
    assert get_tokenizer("Qwen/Qwen3-8B:step40").encode("Hello, world!") == [9707, 11, 1879, 0]


@pytest.mark.parametrize(
    "name, message",
    [
        ("tinker://run-1/weights/step-3", "pass the base model"),
        ("/does/not/exist", "no such folder"),
        ("nobody/no-such-model-xyz", "HF_HUB_OFFLINE"),
    ],
)
def test_unknown_names_fail_with_a_reason(name, message):
    with pytest.raises(TokenizerNotFoundError, match=message) as error:
        get_tokenizer(name)
    assert isinstance(error.value, ValueError) and name.split(":")[0] in str(error.value)


def test_registered_factories_come_first():
    sentinel = object()
    register_tokenizer("Qwen/Qwen3-8B", lambda: sentinel)
    try:
        assert get_tokenizer("Qwen/Qwen3-8B") is sentinel
    finally:
        assert unregister_tokenizer("Qwen/Qwen3-8B")
    assert get_tokenizer("Qwen/Qwen3-8B") is not sentinel
