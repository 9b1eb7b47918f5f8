"""Chat formats: `get_renderer(name, tokenizer)`; new formats join with `register_renderer`."""

from __future__ import annotations

from collections.abc import Callable

from tinker_cookbook.renderers.base import (
    Message,
    RenderedMessage,
    Renderer,
    ToolCall,
    TrainOnWhat,
    datum_from_tokens_weights,
)
from tinker_cookbook.renderers.llama3 import Llama3Renderer
from tinker_cookbook.renderers.qwen3 import Qwen3DisableThinkingRenderer, Qwen3Renderer
from tinker_cookbook.renderers.role_colon import RoleColonRenderer

_REGISTRY: dict[str, Callable[[object], Renderer]] = {
    "qwen3": Qwen3Renderer,
    "qwen3_disable_thinking": Qwen3DisableThinkingRenderer,
    "llama3": Llama3Renderer,
    "role_colon": RoleColonRenderer,
}


def register_renderer(name: str, factory: Callable[[object], Renderer]) -> None:
    """Add a chat format: `factory(tokenizer)` returns its renderer."""
    _REGISTRY[name] = factory


def renderer_names() -> list[str]:
    return sorted(_REGISTRY)


def get_renderer(name: str, tokenizer) -> Renderer:
    if name not in _REGISTRY:
        raise ValueError(
            f"Unknown renderer {name!r}; valid renderers: {', '.join(renderer_names())}"
        )
    return _REGISTRY[name](tokenizer)


def get_recommended_renderer_name(model_name: str) -> str:
    """The chat format a model was trained with (base models included: recipes fine-tune them
    into chat models, and the chat tokens are in their vocabulary)."""
    lowered = model_name.lower().rstrip("/").rsplit("/", 1)[-1]
    if "qwen3" in lowered or "qwen2" in lowered or lowered.startswith("tiny-qwen3"):
        return "qwen3"
    if "llama-3" in lowered or "llama3" in lowered:
        return "llama3"
    return "role_colon"


__all__ = [
    "Llama3Renderer",
    "Message",
    "Qwen3DisableThinkingRenderer",
    "Qwen3Renderer",
    "RenderedMessage",
    "Renderer",
    "RoleColonRenderer",
    "ToolCall",
    "TrainOnWhat",
    "datum_from_tokens_weights",
    "get_recommended_renderer_name",
    "get_renderer",
    "register_renderer",
    "renderer_names",
]
