"""Qwen3's ChatML format, with `<think>` reasoning and `<tool_call>{json}</tool_call>` calls."""

from __future__ import annotations

import json
import re

from tinker_cookbook.renderers.base import Message, RenderedMessage, Renderer, ToolCall

_TOOL_CALL_RE = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


class Qwen3Renderer(Renderer):
    """`<|im_start|>role\\n...<|im_end|>\\n`. Tool results go back as a user turn wrapped in
    `<tool_response>`; an assistant's `thinking` is rendered as a leading `<think>` block."""

    name = "qwen3"

    def __init__(self, tokenizer):
        super().__init__(tokenizer)
        self.im_end = self.special_token("<|im_end|>")
        self.special_token("<|im_start|>")

    def render_message(self, message: Message, is_last: bool) -> RenderedMessage:
        role, text = message["role"], message["content"]
        if role == "tool":
            role, text = "user", f"<tool_response>\n{text}\n</tool_response>"
        elif role == "assistant":
            text = assistant_text(message)
        return RenderedMessage(
            prefix=self.encode(f"<|im_start|>{role}\n"),
            body=self.encode(text) + [self.im_end],
            suffix=self.encode("\n"),
        )

    def generation_header(self, role: str) -> list[int]:
        return self.encode(f"<|im_start|>{role}\n")

    def get_stop_sequences(self) -> list[int]:
        return [self.im_end]

    def parse_response(self, tokens: list[int]) -> tuple[Message, bool]:
        ended = bool(tokens) and tokens[-1] == self.im_end
        text = self.tokenizer.decode(tokens[:-1] if ended else tokens)
        message, well_formed = parse_qwen_text(text)
        return message, ended and well_formed


class Qwen3DisableThinkingRenderer(Qwen3Renderer):
    """Qwen3 with an empty think block pre-filled, so the model answers directly."""

    name = "qwen3_disable_thinking"

    def generation_header(self, role: str) -> list[int]:
        header = super().generation_header(role)
        return header + self.encode("<think>\n\n</think>\n\n") if role == "assistant" else header


def assistant_text(message: Message) -> str:
    text = message["content"]
    if message.get("thinking"):
        text = f"<think>\n{message['thinking']}\n</think>\n\n{text}"
    for call in message.get("tool_calls", []):
        payload = json.dumps(
            {"name": call["name"], "arguments": call["arguments"]}, ensure_ascii=False
        )
        text += f"{chr(10) if text else ''}<tool_call>\n{payload}\n</tool_call>"
    return text


def parse_qwen_text(text: str) -> tuple[Message, bool]:
    """Split a decoded assistant turn into thinking, content and tool calls."""
    message: Message = {"role": "assistant", "content": text}
    if text.startswith("<think>") and "</think>" in text:
        thinking, _, text = text[len("<think>") :].partition("</think>")
        message["thinking"] = thinking.strip("\n")
        text = text.lstrip("\n")
    calls: list[ToolCall] = []
    errors = []
    for raw in _TOOL_CALL_RE.findall(text):
        try:
            payload = json.loads(raw)
            if not isinstance(payload, dict) or not isinstance(payload.get("name"), str):
                raise ValueError("expected an object with a string 'name'")
            args = payload.get("arguments", {})
            if not isinstance(args, dict):
                raise ValueError("'arguments' must be an object")
            calls.append({"name": payload["name"], "arguments": args})
        except ValueError as exc:
            errors.append(f"tool call {raw[:200]!r} is not valid JSON of the form "
                          f'{{"name": ..., "arguments": {{...}}}}: {exc}')  # fmt: skip
    content = _TOOL_CALL_RE.sub("", text)
    if "<tool_call>" in content:
        errors.append("a <tool_call> was opened but never closed with </tool_call>")
        content = content[: content.index("<tool_call>")]
    message["content"] = content.rstrip("\n") if calls or errors else content
    if calls:
        message["tool_calls"] = calls
    if errors:
        message["tool_call_error"] = "; ".join(errors)
    return message, not errors
