"""The conversation types every renderer, tool and environment shares (the Tinker cookbook's).

A `Message` is a TypedDict: `content` is a string or a list of parts (text, thinking, image);
an assistant's tool calls are pydantic `ToolCall`s in the OpenAI shape (`function.name`,
`function.arguments` as a JSON string, optional `id`), and calls the model wrote but that did not
parse are kept as `UnparsedToolCall`s (raw text + error) instead of being dropped.
`renderers.base` re-exports all of these, where cookbook code imports them from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, NotRequired, TypedDict

import pydantic


class RendererError(ValueError):
    """A message a renderer cannot lay out (wrong content shape, unknown part type)."""


class ParseTermination(StrEnum):
    """How a sampled reply ended. `STOP_SEQUENCE`: the format's end-of-turn marker; `EOS`: the
    model's end-of-text token, accepted by some formats; `MALFORMED`: cut off or ill-formed.

    Truthiness is `is_clean`, so code written for the older `(message, ok: bool)` return of
    `parse_response` (`if ok: ...`) keeps its meaning."""

    STOP_SEQUENCE = "stop_sequence"
    EOS = "eos"
    MALFORMED = "malformed"

    @property
    def is_clean(self) -> bool:
        return self is not ParseTermination.MALFORMED

    @property
    def is_stop_sequence(self) -> bool:
        return self is ParseTermination.STOP_SEQUENCE

    def __bool__(self) -> bool:
        return self.is_clean


class StrictBase(pydantic.BaseModel):
    """Immutable, and an unknown field is an error rather than silently dropped."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")


class ToolCall(StrictBase):
    """A call the assistant made: `ToolCall(function=ToolCall.FunctionBody(name=..., arguments=
    '{"x": 1}'), id="call_0")`. `arguments` is JSON text, as models and OpenAI write it."""

    class FunctionBody(pydantic.BaseModel):
        name: str
        arguments: str

    type: Literal["function"] = "function"
    id: str | None = None
    function: FunctionBody

    @classmethod
    def from_arguments(
        cls, name: str, arguments: dict[str, Any], id: str | None = None
    ) -> ToolCall:
        """Build a call from a Python dict of arguments (JSON-encoded, non-ASCII kept)."""
        text = json.dumps(arguments, ensure_ascii=False)
        return cls(function=cls.FunctionBody(name=name, arguments=text), id=id)

    def parsed_arguments(self) -> dict[str, Any]:
        """The arguments as a dict; a `ValueError` naming the tool if they are not a JSON
        object."""
        try:
            value = json.loads(self.function.arguments or "{}")
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"arguments of tool call {self.function.name!r} are not valid JSON: {exc}"
            ) from exc
        if not isinstance(value, dict):
            raise ValueError(
                f"arguments of tool call {self.function.name!r} must be a JSON object, "
                f"got {type(value).__name__}"
            )
        return value


class UnparsedToolCall(StrictBase):
    """Text the model wrote as a tool call that could not be parsed, and why."""

    raw_text: str
    error: str


class TextPart(TypedDict):
    type: Literal["text"]
    text: str


class ImagePart(TypedDict):
    type: Literal["image"]
    image: Any  # a URL/data string or a PIL image


class ThinkingPart(TypedDict):
    type: Literal["thinking"]
    thinking: str


ContentPart = TextPart | ImagePart | ThinkingPart
Role = str
Content = str | list[ContentPart]


class Message(TypedDict):
    """One turn. `trainable` is read only under `TrainOnWhat.CUSTOMIZED`; `tool_call_id` and
    `name` identify the call a `tool` message answers."""

    role: Role
    content: Content
    tool_calls: NotRequired[list[ToolCall]]
    unparsed_tool_calls: NotRequired[list[UnparsedToolCall]]
    trainable: NotRequired[bool]
    tool_call_id: NotRequired[str]
    name: NotRequired[str]


class ToolSpec(TypedDict):
    """A tool as declared to the model (OpenAI function format)."""

    name: str
    description: str
    parameters: dict


@dataclass
class RenderContext:
    """Where a message sits in its conversation, for formats whose layout depends on it."""

    idx: int
    is_last: bool
    prev_message: Message | None = None
    next_message: Message | None = None
    last_user_index: int = -1
    in_last_assistant_turn: bool = False


def ensure_text(content: Content) -> str:
    """Content that must be plain text, as a string; a `RendererError` otherwise."""
    if isinstance(content, str):
        return content
    if len(content) == 1 and content[0]["type"] == "text":
        return content[0]["text"]
    kinds = [part["type"] for part in content]
    raise RendererError(f"expected text-only content, got parts {kinds}")


def ensure_list(content: Content) -> list[ContentPart]:
    """Content as a list of parts (a string becomes one text part)."""
    if isinstance(content, str):
        return [TextPart(type="text", text=content)]
    return content


def get_text_content(message: Message) -> str:
    """The message's text without its reasoning (what an answer checker should read)."""
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(part["text"] for part in content if part["type"] == "text")


def get_thinking_content(message: Message) -> str:
    """The message's reasoning, joined; empty when it has none."""
    content = message["content"]
    if isinstance(content, str):
        return ""
    return "".join(part["thinking"] for part in content if part["type"] == "thinking")


def has_thinking(content: Content) -> bool:
    if isinstance(content, list):
        return any(part["type"] == "thinking" for part in content)
    return "<think>" in content


def remove_thinking(parts: list[ContentPart]) -> list[ContentPart]:
    return [part for part in parts if part["type"] != "thinking"]


def format_content_as_string(content: Content, separator: str = "\n") -> str:
    """Every part as readable text (reasoning in `<think>` tags), for logs and displays."""
    if isinstance(content, str):
        return content
    pieces = []
    for part in content:
        if part["type"] == "text":
            pieces.append(part["text"])
        elif part["type"] == "thinking":
            pieces.append(f"<think>{part['thinking']}</think>")
        elif part["type"] == "image":
            image = part["image"]
            pieces.append(f"<image>{image if isinstance(image, str) else 'Image'}</image>")
        else:
            raise RendererError(f"unknown content part type {part['type']!r}")
    return separator.join(pieces)
