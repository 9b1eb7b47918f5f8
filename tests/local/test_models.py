"""Model names and tokenizers offline: built-in tiny models, the real Qwen vocabulary, errors."""

import time

import pytest
import torch

from tinker_cookbook.local import UnknownModelError
from tinker_cookbook.local.models import builtin_model_dir, get_tokenizer, resolve_model_dir


def test_qwen3_tokenizer_has_real_ids_offline():
    tok = get_tokenizer("Qwen/Qwen3-8B-Base")
    assert tok.encode("Hello, world!") == [9707, 11, 1879, 0]
    ids = tok.convert_tokens_to_ids(
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "<think>", "</think>"]
    )
    assert ids == [151643, 151644, 151645, 151657, 151667, 151668]
    assert tok.eos_token == "<|endoftext|>"  # a base model
    assert get_tokenizer("Qwen/Qwen3-32B").eos_token == "<|im_end|>"  # a chat model
    text = "Größe: 12 × 3 = 36 😀\n\tdef f(x):\n    return x**2 <think>ok</think>"
    assert tok.decode(tok.encode(text)) == text


def test_tiny_models_have_the_advertised_sizes_and_share_a_tokenizer(service):
    sizes = {}
    for name in ("tiny-qwen3-1m", "tiny-qwen3-4m"):
        sizes[name] = sum(p.numel() for p in service.runtime(name).model.parameters())
    assert 0.5e6 < sizes["tiny-qwen3-1m"] < 1.5e6
    assert 3e6 < sizes["tiny-qwen3-4m"] < 5e6
    a, b = get_tokenizer("tiny-qwen3-1m"), get_tokenizer("tiny-qwen3-4m")
    assert a.get_vocab() == b.get_vocab()
    assert a.convert_tokens_to_ids("<|im_end|>") == a.eos_token_id


def test_tiny_models_are_built_deterministically(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    first = load_file(str(builtin_model_dir("tiny-qwen3-1m") / "model.safetensors"))
    monkeypatch.setenv("TINKER_COOKBOOK_CACHE", str(tmp_path))
    rebuilt_dir = builtin_model_dir("tiny-qwen3-1m")
    assert str(rebuilt_dir).startswith(str(tmp_path))
    second = load_file(str(rebuilt_dir / "model.safetensors"))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_local_folder_works_as_a_model_name(service):
    folder = str(builtin_model_dir("tiny-qwen3-1m"))
    assert resolve_model_dir(folder) == builtin_model_dir("tiny-qwen3-1m")
    client = service.create_sampling_client(base_model=folder).result()
    assert client.get_tokenizer().encode("ab") == [97, 98]


def test_unknown_model_fails_fast_and_says_what_to_do(service):
    start = time.monotonic()
    with pytest.raises(UnknownModelError) as err:
        service.create_lora_training_client("nobody/no-such-model-xyz", rank=4)
    assert time.monotonic() - start < 10
    message = str(err.value)
    assert "nobody/no-such-model-xyz" in message
    assert "tiny-qwen3-1m" in message and "local" in message
    with pytest.raises(UnknownModelError, match="no such folder"):
        resolve_model_dir("/does/not/exist")
