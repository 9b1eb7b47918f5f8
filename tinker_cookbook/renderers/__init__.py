"""Chat formats: `get_renderer(name, tokenizer)`; new formats join with `register_renderer`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tinker_cookbook.model_info import (
    get_recommended_renderer_name,
    get_recommended_renderer_names,
)
from tinker_cookbook.renderers.base import (
    Content,
    ContentPart,
    ImagePart,
    Message,
    ParseTermination,
    RenderContext,
    RenderedMessage,
    Renderer,
    RendererError,
    Role,
    TextPart,
    ThinkingPart,
    ToolCall,
    ToolSpec,
    TrainOnWhat,
    UnparsedToolCall,
    ensure_list,
    ensure_text,
    format_content_as_string,
    get_text_content,
    get_thinking_content,
    has_thinking,
    parse_response_for_stop_token,
    remove_thinking,
)
from tinker_cookbook.renderers.kimi_k2 import KimiK2Renderer
from tinker_cookbook.renderers.llama3 import Llama3Renderer
from tinker_cookbook.renderers.qwen3 import (
    Qwen3DisableThinkingRenderer,
    Qwen3InstructRenderer,
    Qwen3Renderer,
)
from tinker_cookbook.renderers.role_colon import RoleColonRenderer
from tinker_cookbook.tokenizer_utils import Tokenizer

RendererFactory = Callable[[Tokenizer, Any], Renderer]
"""`factory(tokenizer, image_processor)`; `image_processor` is None for text-only models."""

_BUILT_IN: dict[str, Callable[[Tokenizer], Renderer]] = {
    "qwen3": Qwen3Renderer,
    "qwen3_disable_thinking": Qwen3DisableThinkingRenderer,
    "qwen3_instruct": Qwen3InstructRenderer,
    "kimi_k2": KimiK2Renderer,
    "llama3": Llama3Renderer,
    "role_colon": RoleColonRenderer,
}
_CUSTOM: dict[str, RendererFactory] = {}


def register_renderer(name: str, factory: RendererFactory) -> None:
    """Make `get_renderer(name, ...)` return `factory(tokenizer, image_processor)`; a custom
    name shadows a built-in one."""
    _CUSTOM[name] = factory


def unregister_renderer(name: str) -> bool:
    """Remove a registered factory; False if there was none."""
    return _CUSTOM.pop(name, None) is not None


def get_registered_renderer_names() -> list[str]:
    """Names added with `register_renderer` (not the built-in ones)."""
    return list(_CUSTOM)


def is_renderer_registered(name: str) -> bool:
    return name in _CUSTOM


def renderer_names() -> list[str]:
    """Every name `get_renderer` accepts, built in or registered."""
    return sorted({*_BUILT_IN, *_CUSTOM})


def get_renderer(
    name: str,
    tokenizer: Tokenizer,
    image_processor: Any = None,
    model_name: str | None = None,
) -> Renderer:
    """The renderer called `name`, for `tokenizer`. `model_name` is recorded on the renderer
    (default: the tokenizer's `name_or_path`)."""
    if name in _CUSTOM:
        renderer = _CUSTOM[name](tokenizer, image_processor)
    elif name in _BUILT_IN:
        if image_processor is not None:
            raise RendererError(f"renderer {name!r} is text-only and takes no image_processor")
        renderer = _BUILT_IN[name](tokenizer)
    else:
        raise RendererError(
            f"Unknown renderer {name!r}; valid renderers: {', '.join(renderer_names())}"
        )
    renderer.model_name = model_name or getattr(tokenizer, "name_or_path", None)
    return renderer


__all__ = [
    "Content",
    "ContentPart",
    "ImagePart",
    "KimiK2Renderer",
    "Llama3Renderer",
    "Message",
    "ParseTermination",
    "Qwen3DisableThinkingRenderer",
    "Qwen3InstructRenderer",
    "Qwen3Renderer",
    "RenderContext",
    "RenderedMessage",
    "Renderer",
    "RendererError",
    "RendererFactory",
    "Role",
    "RoleColonRenderer",
    "TextPart",
    "ThinkingPart",
    "ToolCall",
    "ToolSpec",
    "TrainOnWhat",
    "UnparsedToolCall",
    "ensure_list",
    "ensure_text",
    "format_content_as_string",
    "get_recommended_renderer_name",
    "get_recommended_renderer_names",
    "get_registered_renderer_names",
    "get_renderer",
    "get_text_content",
    "get_thinking_content",
    "has_thinking",
    "is_renderer_registered",
    "parse_response_for_stop_token",
    "register_renderer",
    "remove_thinking",
    "renderer_names",
    "unregister_renderer",
]
