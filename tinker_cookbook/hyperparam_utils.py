"""A starting LoRA learning rate per model family.

LoRA's best rate shrinks with the model's width (the adapter's output is a sum over more
features) and barely depends on rank (alpha/rank scaling). The rule here, `2e-3 * sqrt(512 /
hidden_size)` for supervised learning, lands near the rates used in practice (about 7e-4 for
8B models; 3-4e-3 for the built-in tiny ones) and is a starting point for a sweep, not a result.
"""

from __future__ import annotations

HIDDEN_SIZES = {
    "tiny-qwen3-1m": 128,
    "tiny-qwen3-4m": 256,
    "Qwen/Qwen3-0.6B": 1024,
    "Qwen/Qwen3-1.7B": 2048,
    "Qwen/Qwen3-4B": 2560,
    "Qwen/Qwen3-8B": 4096,
    "Qwen/Qwen3-14B": 5120,
    "Qwen/Qwen3-32B": 5120,
    "Qwen/Qwen3-30B-A3B": 2048,
    "Qwen/Qwen3-235B-A22B": 4096,
    "meta-llama/Llama-3.2-1B": 2048,
    "meta-llama/Llama-3.2-3B": 3072,
    "meta-llama/Llama-3.1-8B": 4096,
    "meta-llama/Llama-3.1-70B": 8192,
    "moonshotai/Kimi-K2-Thinking": 7168,
}
_SUFFIXES = ("-Base", "-Instruct", "-Instruct-2507", "-Thinking-2507", "-FP8")


def hidden_size(model_name: str) -> int:
    name = model_name
    for suffix in _SUFFIXES:
        name = name.removesuffix(suffix)
    if name in HIDDEN_SIZES:
        return HIDDEN_SIZES[name]
    try:
        from transformers import AutoConfig

        from tinker_cookbook.local.models import resolve_model_dir

        return int(AutoConfig.from_pretrained(str(resolve_model_dir(model_name))).hidden_size)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(
            f"No hidden size known for {model_name!r} (known: {', '.join(sorted(HIDDEN_SIZES))}) "
            "and its config could not be loaded; pass learning_rate explicitly"
        ) from exc


def get_lora_lr(model_name: str, on_policy: bool = False) -> float:
    """Supervised LoRA learning rate; on-policy RL/distillation steps use a tenth of it."""
    lr = 2e-3 * (512 / hidden_size(model_name)) ** 0.5
    return lr / 10 if on_policy else lr
