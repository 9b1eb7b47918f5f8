"""A renderer small enough to read token by token, for testing environments apart from any
chat format: one character is one token, token 0 ends a turn, and a reply line
`call NAME {json}` is a tool call (unparseable JSON makes it an UnparsedToolCall)."""

from __future__ import annotations

import json

import tinker

from tinker_cookbook.renderers.messages import (
    Message,
    ParseTermination,
    ToolCall,
    UnparsedToolCall,
    format_content_as_string,
)

STOP = 0


def encode(text: str) -> list[int]:
    return [ord(c) for c in text]


def decode(tokens: list[int]) -> str:
    return "".join(chr(t) if t else "|" for t in tokens)


class CharRenderer:
    has_extension_property = True  # history is never rewritten

    def get_stop_sequences(self) -> list[int]:
        return [STOP]

    def create_conversation_prefix_with_tools(self, tools, system_prompt=""):
        raise NotImplementedError("a format with no tool declaration of its own")

    def ends_with_stop(self, tokens: list[int]) -> bool:
        return bool(tokens) and tokens[-1] == STOP

    def build_generation_prompt(
        self, messages: list[Message], role: str = "assistant"
    ) -> tinker.ModelInput:
        tokens = [t for m in messages for t in self.render(m)] + encode(f"[{role}]")
        return tinker.ModelInput.from_ints(tokens)

    def render_continuation(self, new_messages: list[Message], role: str = "assistant"):
        return [t for m in new_messages for t in self.render(m)] + encode(f"[{role}]")

    def render(self, message: Message) -> list[int]:
        text = format_content_as_string(message["content"])
        for call in message.get("tool_calls", []):
            text += f"\ncall {call.function.name} {call.function.arguments}"
        return encode(f"[{message['role']}]{text}") + [STOP]

    def parse_response(self, tokens: list[int]) -> tuple[Message, ParseTermination]:
        ended = self.ends_with_stop(tokens)
        lines = decode(tokens[:-1] if ended else tokens).split("\n")
        message: Message = {"role": "assistant", "content": ""}
        calls, unparsed, text = [], [], []
        for line in lines:
            if not line.startswith("call "):
                text.append(line)
                continue
            _, name, arguments = line.split(" ", 2)
            try:
                json.loads(arguments)
                body = ToolCall.FunctionBody(name=name, arguments=arguments)
                calls.append(ToolCall(function=body, id=f"c{len(calls)}"))
            except json.JSONDecodeError as exc:
                unparsed.append(UnparsedToolCall(raw_text=line, error=f"bad JSON: {exc}"))
        message["content"] = "\n".join(text).strip()
        if calls:
            message["tool_calls"] = calls
        if unparsed:
            message["unparsed_tool_calls"] = unparsed
        termination = ParseTermination.STOP_SEQUENCE if ended else ParseTermination.MALFORMED
        return message, termination


def reply(text: str) -> list[int]:
    """A sampled reply: the text and the end-of-turn token."""
    return encode(text) + [STOP]
