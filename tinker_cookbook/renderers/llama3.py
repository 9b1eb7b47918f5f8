"""Llama 3's header format; tool calls are `<|python_tag|>` + JSON, results come back as
`ipython` turns."""

from __future__ import annotations

import json

from tinker_cookbook.renderers.base import Message, RenderedMessage, Renderer


class Llama3Renderer(Renderer):
    name = "llama3"

    def __init__(self, tokenizer):
        super().__init__(tokenizer)
        self.bos = self.special_token("<|begin_of_text|>")
        self.eot = self.special_token("<|eot_id|>")
        self.special_token("<|start_header_id|>")

    def bos_tokens(self) -> list[int]:
        return [self.bos]

    def _header(self, role: str) -> list[int]:
        return self.encode(f"<|start_header_id|>{role}<|end_header_id|>\n\n")

    def render_message(self, message: Message, is_last: bool) -> RenderedMessage:
        role = "ipython" if message["role"] == "tool" else message["role"]
        text = message["content"]
        calls = message.get("tool_calls", [])
        if calls:
            payload = "; ".join(
                json.dumps({"name": c["name"], "parameters": c["arguments"]}) for c in calls
            )
            text = f"{text}<|python_tag|>{payload}"
        return RenderedMessage(
            prefix=self._header(role), body=self.encode(text) + [self.eot], suffix=[]
        )

    def generation_header(self, role: str) -> list[int]:
        return self._header(role)

    def get_stop_sequences(self) -> list[int]:
        return [self.eot]

    def parse_response(self, tokens: list[int]) -> tuple[Message, bool]:
        ended = bool(tokens) and tokens[-1] == self.eot
        text = self.tokenizer.decode(tokens[:-1] if ended else tokens)
        message: Message = {"role": "assistant", "content": text}
        if "<|python_tag|>" not in text:
            return message, ended
        content, _, raw = text.partition("<|python_tag|>")
        message["content"] = content
        try:
            calls = [json.loads(part) for part in raw.split("; ")]
            message["tool_calls"] = [
                {"name": c["name"], "arguments": c.get("parameters", {})} for c in calls
            ]
            return message, ended
        except (ValueError, KeyError, TypeError) as exc:
            message["tool_call_error"] = (
                f"tool call {raw[:200]!r} is not valid JSON with a 'name': {exc}"
            )
            return message, False
