"""Plain `User: ...` / `Assistant: ...` text, for base models with no chat tokens."""

from __future__ import annotations

from tinker_cookbook.renderers.base import Message, RenderedMessage, Renderer

STOP = "\n\nUser:"


class RoleColonRenderer(Renderer):
    """Each turn is `Role: content\\n\\n`. A trained final assistant turn also carries the
    `User:` that follows, so the model learns to emit the stop string `\\n\\nUser:`."""

    name = "role_colon"

    def render_message(self, message: Message, is_last: bool) -> RenderedMessage:
        role = message["role"].capitalize()
        body = f" {message['content']}\n\n"
        if is_last and message["role"] == "assistant":
            body += "User:"
        return RenderedMessage(prefix=self.encode(f"{role}:"), body=self.encode(body), suffix=[])

    def generation_header(self, role: str) -> list[int]:
        return self.encode(f"{role.capitalize()}:")

    def get_stop_sequences(self) -> list[str]:
        return [STOP]

    def parse_response(self, tokens: list[int]) -> tuple[Message, bool]:
        text = self.tokenizer.decode(tokens)
        ended = STOP in text
        content = text.split(STOP)[0] if ended else text
        return {"role": "assistant", "content": content.removeprefix(" ")}, ended
