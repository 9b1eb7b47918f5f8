"""Plain `User: ...` / `Assistant: ...` text, for base models with no chat tokens."""

from __future__ import annotations

from tinker_cookbook.renderers.base import Message, RenderedMessage, Renderer
from tinker_cookbook.renderers.qwen3 import assistant_text, parse_qwen_text

STOP = "\n\nUser:"


class RoleColonRenderer(Renderer):
    """Each turn is `Role: content\\n\\n`. A trained final assistant turn also carries the
    `User:` that follows, so the model learns to emit the stop string `\\n\\nUser:`. Tool
    calls are written as `<tool_call>{json}</tool_call>` text, as in Qwen3."""

    name = "role_colon"

    def render_message(self, message: Message, is_last: bool) -> RenderedMessage:
        role = message["role"].capitalize()
        text = assistant_text(message) if message["role"] == "assistant" else message["content"]
        body = f" {text}\n\n"
        if is_last and message["role"] == "assistant":
            body += "User:"
        return RenderedMessage(prefix=self.encode(f"{role}:"), body=self.encode(body), suffix=[])

    def generation_header(self, role: str) -> list[int]:
        return self.encode(f"{role.capitalize()}:")

    def render_continuation(
        self, new_messages: list[Message], role: str = "assistant"
    ) -> list[int]:
        """The reply ended with its stop string `\\n\\nUser:`, which already opened the next
        user turn: tool results (and any correction) become that turn's text."""
        parts = [
            f"[{m.get('name', 'tool')} result]\n{m['content']}"
            if m["role"] == "tool"
            else m["content"]
            for m in new_messages
        ]
        return self.encode(" " + "\n\n".join(parts) + "\n\n") + self.generation_header(role)

    def get_stop_sequences(self) -> list[str]:
        return [STOP]

    def parse_response(self, tokens: list[int]) -> tuple[Message, bool]:
        text = self.tokenizer.decode(tokens)
        ended = STOP in text
        content = text.split(STOP)[0] if ended else text
        message, well_formed = parse_qwen_text(content.removeprefix(" "))
        return message, ended and well_formed
