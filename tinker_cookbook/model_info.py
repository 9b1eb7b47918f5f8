"""Which chat format (renderer) a model was trained with, from its name.

Families are recognised by the model's base name (`org/` and a `:suffix` dropped, a local
folder's last path part), so `Qwen/Qwen3-8B`, `/models/Qwen3-8B` and `Qwen/Qwen3-8B:step40`
agree. A model of no known family is an error, never a silent guess.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

logger = logging.getLogger(__name__)

_QWEN3 = ("qwen3", "qwen3_disable_thinking")

# (pattern on the lower-cased base name, renderers, most recommended first), first match wins.
_FAMILIES: list[tuple[str, tuple[str, ...]]] = [
    # The built-in models share Qwen3's chat tokens but never learned to reason: the
    # Instruct-2507 layout (no think blocks) keeps their turns exactly as written.
    (r"tiny-qwen3", ("qwen3_instruct", *_QWEN3)),
    (r"qwen3-.*instruct-2507", ("qwen3_instruct",)),
    (r"qwen3-(?!vl)", _QWEN3),  # Qwen3 hybrid (thinking) and base models, not Qwen3-VL
    (r"kimi-k2(?![.\d])", ("kimi_k2",)),  # Kimi-K2-Thinking / -Instruct, not K2.5
    (r"(meta-)?llama-?3(?![\d])", ("llama3",)),
]
ALL_RENDERERS = (
    "kimi_k2",
    "llama3",
    "qwen3",
    "qwen3_disable_thinking",
    "qwen3_instruct",
    "role_colon",
)


def _base_name(model_name: str) -> str:
    name = model_name.split(":", 1)[0] if "://" not in model_name else model_name
    return name.rstrip("/").rsplit("/", 1)[-1].lower()


def get_recommended_renderer_names(model_name: str) -> list[str]:
    """The renderers made for `model_name`'s chat format, most recommended first; a
    `ValueError` naming the known families and renderers for any other model."""
    base = _base_name(model_name)
    for pattern, renderers in _FAMILIES:
        if re.match(pattern, base):
            return list(renderers)
    raise ValueError(
        f"no renderer is known for model {model_name!r}. Known families: Qwen3 (qwen3, "
        "qwen3_disable_thinking; *-Instruct-2507: qwen3_instruct), Kimi K2 (kimi_k2), Llama 3 "
        "(llama3), the built-in tiny-qwen3-* models (qwen3_instruct). Pass renderer_name explicitly, "
        f"one of: {', '.join(ALL_RENDERERS)} (role_colon: plain text for base models)."
    )


def get_recommended_renderer_name(model_name: str) -> str:
    """The renderer `model_name` was trained with (see `get_recommended_renderer_names`)."""
    return get_recommended_renderer_names(model_name)[0]


@runtime_checkable
class NamesItsRenderer(Protocol):
    """A dataset builder that says which chat format it renders with."""

    renderer_name: str | None


def renderer_name_of(builder: object) -> str | None:
    """The renderer a dataset builder names (None: it names none)."""
    return builder.renderer_name if isinstance(builder, NamesItsRenderer) else None


def run_renderer_name(
    model_name: str, configured: str | None, dataset_renderers: Sequence[str | None] = ()
) -> str:
    """The one renderer a run trains with, recorded with its checkpoints: the config's and the
    datasets' must agree (a checkpoint records one); named nowhere, the model's recommended,
    said on the console."""
    named = sorted({name for name in (configured, *dataset_renderers) if name})
    if len(named) > 1:
        raise ValueError(
            f"the run names several renderers {named} (renderer_name={configured!r}, datasets: "
            f"{list(dataset_renderers)}); its checkpoints record one, so make them agree"
        )
    if named:
        return named[0]
    recommended = get_recommended_renderer_name(model_name)
    print(f"renderer: {recommended} (recommended for {model_name}; nothing in the run names one)")
    return recommended


def warn_if_renderer_not_recommended(model_name: str, renderer_name: str | None) -> None:
    """Log a warning when `renderer_name` is not one made for `model_name`'s format (silent for
    models of unknown family, or when no renderer is named)."""
    if renderer_name is None:
        return
    try:
        recommended = get_recommended_renderer_names(model_name)
    except ValueError:
        return
    if renderer_name not in recommended:
        logger.warning(
            "renderer %r is not made for model %r (recommended: %s); a mismatched format "
            "trains on tokens the model never uses",
            renderer_name,
            model_name,
            ", ".join(recommended),
        )
