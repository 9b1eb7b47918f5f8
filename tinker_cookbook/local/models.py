"""Model names -> local folders and tokenizers, with no network needed for the built-in ones.

Built-in tiny Qwen3-architecture models are created deterministically from a seed and cached;
they share the byte-level chat tokenizer, so any one of them can teach another.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tinker_cookbook.local.errors import UnknownModelError, reject_tinker_uri
from tinker_cookbook.local.paths import cache_dir, write_dir_atomically
from tinker_cookbook.offline_tokenizers import build_tiny_tokenizer
from tinker_cookbook.tokenizer_utils import TINY_MODEL_NAMES, get_tokenizer

__all__ = [
    "BUILTIN_MODELS",
    "builtin_model_dir",
    "get_tokenizer",
    "list_builtin_models",
    "resolve_model_dir",
]

# 2: the saved tokenizer marks only control tokens special (`<think>` etc. are not).
_TINY_FORMAT_VERSION = "2"
TINY_VOCAB_SIZE = 320  # 256 bytes + chat special tokens, padded to a multiple of 64


@dataclass(frozen=True)
class TinyModelSpec:
    """The shape of one built-in model; `seed` fixes its random initial weights."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    seed: int
    head_dim: int = 32

    def qwen3_config(self):
        from transformers import Qwen3Config

        tok = build_tiny_tokenizer()
        return Qwen3Config(
            vocab_size=TINY_VOCAB_SIZE,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_kv_heads,
            head_dim=self.head_dim,
            max_position_embeddings=8192,
            tie_word_embeddings=True,
            bos_token_id=None,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )


BUILTIN_MODELS: dict[str, TinyModelSpec] = {
    "tiny-qwen3-1m": TinyModelSpec(128, 4, 4, 2, 384, seed=1),
    "tiny-qwen3-4m": TinyModelSpec(256, 5, 8, 4, 640, seed=4),
}
assert set(BUILTIN_MODELS) == set(TINY_MODEL_NAMES), "tokenizer_utils must know every tiny model"


def list_builtin_models() -> list[str]:
    return sorted(BUILTIN_MODELS)


def _build_tiny_model(name: str, folder: Path) -> None:
    import torch
    from transformers import Qwen3ForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    spec = BUILTIN_MODELS[name]
    with torch.random.fork_rng():
        torch.manual_seed(spec.seed)
        model = Qwen3ForCausalLM(spec.qwen3_config())
    model.save_pretrained(folder)
    build_tiny_tokenizer().save_pretrained(folder)


def builtin_model_dir(name: str) -> Path:
    """The cached folder of a built-in model, built on first use (well under a second)."""
    folder = cache_dir() / "models" / f"{name}-v{_TINY_FORMAT_VERSION}"
    if not (folder / "config.json").exists():
        write_dir_atomically(folder, lambda tmp: _build_tiny_model(name, tmp))
    return folder


def _unknown_model(name: str, why: str) -> UnknownModelError:
    return UnknownModelError(
        f"Unknown model {name!r}: {why}. Built-in models: {', '.join(list_builtin_models())}. "
        "To use your own weights offline, pass the path of a local Hugging Face-format folder "
        "(config.json + *.safetensors + tokenizer files), e.g. model_name=/path/to/Qwen3-8B."
    )


def resolve_model_dir(name: str) -> Path:
    """The local folder holding `name`'s weights: built in, a path, or the Hugging Face cache
    (downloading only when the Hub is reachable and HF_HUB_OFFLINE is unset)."""
    reject_tinker_uri(name, "model")
    if name in BUILTIN_MODELS:
        return builtin_model_dir(name)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise _unknown_model(name, f"the folder {path} has no config.json")
        return path
    if name.startswith(("/", ".", "~")):
        raise _unknown_model(name, "no such folder")
    return _hugging_face_snapshot(name)


def _hugging_face_snapshot(name: str) -> Path:
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.jinja"]
    try:
        return Path(snapshot_download(name, allow_patterns=patterns, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached; maybe downloadable below
        pass
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False"):
        raise _unknown_model(name, "it is not in the Hugging Face cache and HF_HUB_OFFLINE is set")
    try:
        return Path(snapshot_download(name, allow_patterns=patterns))
    except Exception as exc:  # noqa: BLE001 - any hub failure means the same to the user
        raise _unknown_model(
            name,
            f"it is not cached and the Hugging Face Hub could not provide it ({type(exc).__name__})",
        ) from exc
