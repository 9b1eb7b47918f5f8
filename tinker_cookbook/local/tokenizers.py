"""Moved to `tinker_cookbook.offline_tokenizers` (tokenizers are backend-neutral); kept so old
imports still work."""

from tinker_cookbook.offline_tokenizers import (
    CHATML_TEMPLATE,
    QWEN3_ADDED_TOKENS,
    QWEN3_SPECIAL_TOKENS,
    QWEN_PRETOKENIZE_PATTERN,
    TINY_ADDED_TOKENS,
    TINY_SPECIAL_TOKENS,
    build_qwen_tokenizer,
    build_tiny_tokenizer,
    is_offline_qwen_name,
)

__all__ = [
    "CHATML_TEMPLATE",
    "QWEN3_ADDED_TOKENS",
    "QWEN3_SPECIAL_TOKENS",
    "QWEN_PRETOKENIZE_PATTERN",
    "TINY_ADDED_TOKENS",
    "TINY_SPECIAL_TOKENS",
    "build_qwen_tokenizer",
    "build_tiny_tokenizer",
    "is_offline_qwen_name",
]
