"""Dataset rows -> chat messages, with errors that name the row and field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tinker_cookbook.renderers import Message
from tinker_cookbook.utils.local_rows import BadRowError, LocalRows

__all__ = ["BadRowError", "LocalRows", "messages_from_row"]


SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}
CHAT_ROLES = ("system", "user", "assistant", "tool")


def messages_from_row(row: dict[str, Any], where: str) -> list[Message]:
    """`messages` ([{role, content}], Tulu/OpenAI style) or `conversations` ([{from, value}],
    ShareGPT/OpenThoughts style)."""
    if "messages" in row:
        return _checked(
            row["messages"],
            where,
            "messages",
            "role",
            "content",
            lambda r: r if r in CHAT_ROLES else None,
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
) -> list[Message]:
    if not isinstance(turns, list) or not turns:
        raise BadRowError(f"{where}: field {field!r} must be a non-empty list")
    messages: list[Message] = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise BadRowError(f"{where}: {field}[{i}] must be an object")
        role = map_role(str(turn.get(role_key)))
        if role is None:
            raise BadRowError(
                f"{where}: {field}[{i}].{role_key} is {turn.get(role_key)!r}, not a known role"
            )
        text = turn.get(text_key)
        if not isinstance(text, str) or not text.strip():
            raise BadRowError(f"{where}: {field}[{i}].{text_key} is empty")
        messages.append({"role": role, "content": text})
    if not any(m["role"] == "assistant" for m in messages):
        raise BadRowError(f"{where}: field {field!r} has no assistant turn to train on")
    return messages
