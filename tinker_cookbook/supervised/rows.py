"""Dataset rows -> chat messages, with errors that name the row and field.

`messages` rows may carry tool use in the shape the renderers take (`renderers.Message`): an
assistant turn's `tool_calls` is a list of `{"name": str, "arguments": {...}}` (the arguments
may also be a JSON string of an object, and the OpenAI wrapper `{"type": "function",
"function": {...}}` is accepted), and a tool result is a `tool` turn with an optional `name`.
An assistant turn that only calls tools may have empty content; a tool's output may be empty.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tinker_cookbook.renderers import Message, ToolCall
from tinker_cookbook.utils.local_rows import BadRowError, LocalRows

__all__ = ["BadRowError", "LocalRows", "messages_from_row", "tool_calls_from_value"]


SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}
CHAT_ROLES = ("system", "user", "assistant", "tool")


def messages_from_row(row: dict[str, Any], where: str) -> list[Message]:
    """`messages` ([{role, content, tool_calls?, name?}], Tulu/OpenAI style) or
    `conversations` ([{from, value}], ShareGPT/OpenThoughts style)."""
    if "messages" in row:
        return _checked(
            row["messages"],
            where,
            "messages",
            "role",
            "content",
            lambda r: r if r in CHAT_ROLES else None,
            tools=True,
        )
    if "conversations" in row:
        return _checked(
            row["conversations"], where, "conversations", "from", "value", SHAREGPT_ROLES.get
        )
    raise BadRowError(f"{where}: no 'messages' or 'conversations' field (fields: {sorted(row)})")


def _checked(
    turns: Any,
    where: str,
    field: str,
    role_key: str,
    text_key: str,
    map_role: Callable[[str], str | None],
    tools: bool = False,
) -> list[Message]:
    if not isinstance(turns, list) or not turns:
        raise BadRowError(f"{where}: field {field!r} must be a non-empty list")
    messages: list[Message] = []
    for i, turn in enumerate(turns):
        at = f"{field}[{i}]"
        if not isinstance(turn, dict):
            raise BadRowError(f"{where}: {at} must be an object")
        role = map_role(str(turn.get(role_key)))
        if role is None:
            raise BadRowError(
                f"{where}: {at}.{role_key} is {turn.get(role_key)!r}, not a known role"
            )
        message: Message = {"role": role, "content": ""}
        # Columnar files (parquet) give every turn every key: None means absent.
        raw_calls = turn.get("tool_calls") if tools else None
        if raw_calls is not None:
            if role != "assistant":
                raise BadRowError(
                    f"{where}: {at}.tool_calls is set on a {role!r} turn; only assistant "
                    "turns call tools"
                )
            calls = tool_calls_from_value(raw_calls, f"{where}: {at}.tool_calls")
            if calls:
                message["tool_calls"] = calls
        text = turn.get(text_key)
        may_be_empty = "tool_calls" in message or role == "tool"
        if text is None and "tool_calls" in message:
            text = ""
        if not isinstance(text, str) or (not may_be_empty and not text.strip()):
            raise BadRowError(f"{where}: {at}.{text_key} is empty")
        message["content"] = text
        name = turn.get("name") if tools and role == "tool" else None
        if name is not None:
            if not isinstance(name, str) or not name.strip():
                raise BadRowError(
                    f"{where}: {at}.name is {name!r}; a tool turn's name must be a non-empty string"
                )
            message["name"] = name
        messages.append(message)
    if not any(m["role"] == "assistant" for m in messages):
        raise BadRowError(f"{where}: field {field!r} has no assistant turn to train on")
    return messages


def tool_calls_from_value(value: Any, where: str) -> list[ToolCall]:
    """A row's `tool_calls` as renderer ToolCalls; BadRowError naming `where`, the call and
    the offending value otherwise. An empty list means no calls."""
    if not isinstance(value, list):
        raise BadRowError(f"{where} must be a list of tool calls, got {_short(value)}")
    calls: list[ToolCall] = []
    for j, raw in enumerate(value):
        at = f"{where}[{j}]"
        call_id = raw.get("id") if isinstance(raw, dict) else None
        if isinstance(raw, dict) and isinstance(raw.get("function"), dict):
            raw, at = raw["function"], f"{at}.function"  # the OpenAI wrapper
        if not isinstance(raw, dict):
            raise BadRowError(
                f'{at} must be an object {{"name": ..., "arguments": {{...}}}}, got {_short(raw)}'
            )
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            raise BadRowError(f"{at}.name is {_short(name)}; it must be a non-empty string")
        arguments = raw.get("arguments", {})
        if arguments is None:
            arguments = {}
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as exc:
                raise BadRowError(
                    f"{at}.arguments is {_short(arguments)}, not valid JSON ({exc.msg})"
                ) from exc
        if not isinstance(arguments, dict):
            raise BadRowError(
                f"{at}.arguments is {_short(arguments)}; it must be an object "
                "(or a JSON string of one)"
            )
        calls.append(ToolCall.from_arguments(name, arguments, id=_optional_text(call_id)))
    return calls


def _optional_text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
