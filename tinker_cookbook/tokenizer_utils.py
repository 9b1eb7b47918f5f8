"""`get_tokenizer(model_name)` for any backend: registered factories, the built-in tiny models,
local folders, the Hugging Face cache, the offline Qwen vocabulary, then the Hub.

Tokenizers are looked up by name only, so nothing here loads weights or needs a backend;
transformers is imported only when a tokenizer is first built (it takes a second).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    Tokenizer = PreTrainedTokenizerBase
else:  # importing transformers is slow; callers only need the name at runtime
    Tokenizer = Any

# The built-in tiny models (`tinker_cookbook.local`) share the byte-level tokenizer.
TINY_MODEL_NAMES = ("tiny-qwen3-1m", "tiny-qwen3-4m")

# Families whose Hub tokenizer ships its own Python code.
_REMOTE_CODE_PREFIXES = ("moonshotai/Kimi-K2",)

_CUSTOM_TOKENIZERS: dict[str, Callable[[], Tokenizer]] = {}


class TokenizerNotFoundError(ValueError):
    """No tokenizer could be found or built for a model name."""


def register_tokenizer(name: str, factory: Callable[[], Tokenizer]) -> None:
    """Make `get_tokenizer(name)` return `factory()` (checked before anything else)."""
    _CUSTOM_TOKENIZERS[name] = factory


def get_registered_tokenizer_names() -> list[str]:
    return list(_CUSTOM_TOKENIZERS)


def is_tokenizer_registered(name: str) -> bool:
    return name in _CUSTOM_TOKENIZERS


def unregister_tokenizer(name: str) -> bool:
    """Remove a registered factory; False if there was none."""
    return _CUSTOM_TOKENIZERS.pop(name, None) is not None


def get_tokenizer(model_name: str) -> Tokenizer:
    """The tokenizer of `model_name` (an `org/name`, optionally `:suffix`ed, a built-in tiny
    model, or a local folder), without needing its weights."""
    if (factory := _CUSTOM_TOKENIZERS.get(model_name)) is not None:
        return factory()
    return _cached_tokenizer(model_name)


@lru_cache(maxsize=32)
def _cached_tokenizer(model_name: str) -> Tokenizer:
    from tinker_cookbook.offline_tokenizers import build_tiny_tokenizer

    if model_name.startswith("tinker://"):
        raise TokenizerNotFoundError(
            f"{model_name!r} is a Tinker checkpoint path, not a model name: pass the base "
            "model it was trained from (e.g. 'Qwen/Qwen3-8B')"
        )
    if model_name in TINY_MODEL_NAMES:
        return build_tiny_tokenizer()
    path = Path(model_name).expanduser()
    if path.is_dir():
        return _from_folder(path)
    if model_name.startswith(("/", ".", "~")):
        raise TokenizerNotFoundError(f"no tokenizer for {model_name!r}: there is no such folder")
    return _from_hub_name(model_name.split(":", 1)[0])


def _from_folder(path: Path) -> Tokenizer:
    from transformers import AutoTokenizer

    from tinker_cookbook.offline_tokenizers import build_qwen_tokenizer, is_offline_qwen_name

    try:  # a folder's own tokenizer code is the user's, so it is trusted
        return AutoTokenizer.from_pretrained(str(path), trust_remote_code=True)
    except Exception as exc:  # noqa: BLE001 - any loading failure means the same here
        if is_offline_qwen_name(path.name):
            return build_qwen_tokenizer(path.name)
        raise TokenizerNotFoundError(
            f"no tokenizer could be loaded from the folder {path} ({type(exc).__name__}: {exc})"
        ) from exc


def _from_hub_name(name: str) -> Tokenizer:
    """The Hugging Face cache, then the offline Qwen vocabulary, then a download."""
    from transformers import AutoTokenizer

    from tinker_cookbook.offline_tokenizers import build_qwen_tokenizer, is_offline_qwen_name

    trust = _trusts_remote_code(name)
    try:
        return AutoTokenizer.from_pretrained(name, local_files_only=True, trust_remote_code=trust)
    except Exception:  # noqa: BLE001 - not cached; try the other sources
        pass
    if is_offline_qwen_name(name):
        return build_qwen_tokenizer(name)
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("", "0", "false"):
        raise TokenizerNotFoundError(
            f"no tokenizer for {name!r}: it is not in the Hugging Face cache and HF_HUB_OFFLINE "
            f"is set. Built-in models: {', '.join(TINY_MODEL_NAMES)}; or pass a local folder."
        )
    # Llama 3 repos are gated; this public copy holds the same tokenizer.
    hub_name = (
        "thinkingmachineslabinc/meta-llama-3-instruct-tokenizer"
        if name.startswith("meta-llama/Llama-3")
        else name
    )
    try:
        return AutoTokenizer.from_pretrained(hub_name, trust_remote_code=trust)
    except Exception as exc:  # noqa: BLE001 - any hub failure means the same to the user
        raise TokenizerNotFoundError(
            f"no tokenizer for {name!r}: not cached and the Hugging Face Hub could not "
            f"provide it ({type(exc).__name__}: {exc})"
        ) from exc


def _trusts_remote_code(name: str) -> bool:
    """Hub code runs only for families that need it, or when HF_TRUST_REMOTE_CODE is set."""
    if os.environ.get("HF_TRUST_REMOTE_CODE", "").lower() in ("1", "true", "yes"):
        return True
    return name.startswith(_REMOTE_CODE_PREFIXES)
