"""Plain `User: ...` / `Assistant: ...` text, for base models with no chat tokens.

    User: What is 2+2?\\n\\nAssistant: 4\\n\\nUser:

The stop sequence is the string `\\n\\nUser:`; its `User:` part doubles as the next turn's
header, so it is a `stop_overlap`, trained only after the last message. Tool calls are written
as Qwen-style `<tool_call>{json}</tool_call>` text.
"""

from __future__ import annotations

from tinker_cookbook.renderers.base import (
    Message,
    ParseTermination,
    RenderContext,
    RenderedMessage,
    Renderer,
    Role,
    ensure_text,
)
from tinker_cookbook.renderers.qwen3_format import (
    format_tool_calls,
    inline_content,
    parse_assistant_text,
)

STOP = "\n\nUser:"


class RoleColonRenderer(Renderer):
    name = "role_colon"

    @property
    def has_extension_property(self) -> bool:
        return True

    @property
    def _bos_tokens(self) -> list[int]:
        bos = getattr(self.tokenizer, "bos_token", None)
        return self._encode(bos) if isinstance(bos, str) else []

    def get_stop_sequences(self) -> list[str]:
        return [STOP]

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        if message["role"] == "assistant":
            text = inline_content(message["content"])
            text += format_tool_calls(message.get("tool_calls", []), after_text=bool(text))
        else:
            text = ensure_text(message["content"])
        overlap = "User:" if message["role"] == "assistant" else ""
        return RenderedMessage(
            header=self._chunk(f"{message['role'].capitalize()}:"),
            output=[self._chunk(f" {text}\n\n")],
            stop_overlap=self._chunk(overlap) if overlap else None,
        )

    def render_continuation(
        self, new_messages: list[Message], role: Role = "assistant"
    ) -> list[int]:
        """The reply ended with its stop string `\\n\\nUser:`, which already opened the next
        user turn: tool results (and any correction) become that turn's text."""
        parts = [
            f"[{m.get('name', 'tool')} result]\n{ensure_text(m['content'])}"
            if m["role"] == "tool"
            else ensure_text(m["content"])
            for m in new_messages
        ]
        return self._encode(" " + "\n\n".join(parts) + "\n\n" + f"{role.capitalize()}:")

    def parse_response(self, response: list[int]) -> tuple[Message, ParseTermination]:
        """`STOP_SEQUENCE` on `\\n\\nUser:`; `EOS` on the end-of-text token alone (a base model
        ending a single turn); `MALFORMED` when cut off or with several delimiters."""
        eos = getattr(self.tokenizer, "eos_token_id", None)
        ended_with_eos = bool(response) and eos is not None and response[-1] == eos
        text = str(self.tokenizer.decode(response[:-1] if ended_with_eos else response))
        pieces = text.split(STOP)
        message = parse_assistant_text(pieces[0].removeprefix(" ").removesuffix("\n\n"))
        if len(pieces) == 2 and not ended_with_eos:
            return message, ParseTermination.STOP_SEQUENCE
        if len(pieces) == 1 and ended_with_eos:
            return message, ParseTermination.EOS
        return message, ParseTermination.MALFORMED
