"""Kimi K2's chat format (moonshotai/Kimi-K2-Thinking's chat template).

    <|im_system|>system<|im_middle|>You are Kimi, ...<|im_end|>
    <|im_user|>user<|im_middle|>question<|im_end|>
    <|im_assistant|>assistant<|im_middle|><think>reasoning</think>answer<|im_end|>

A default system prompt is added when the conversation has none. Tools are declared in a
`tool_declare` message before it (compact JSON, keys sorted as Kimi's tokenizer sorts them);
calls are `<|tool_calls_section_begin|><|tool_call_begin|>ID<|tool_call_argument_begin|>{json}
<|tool_call_end|><|tool_calls_section_end|>` with ids `functions.NAME:IDX`, and a result is a
`<|im_system|>NAME<|im_middle|>## Return of ID\\n...` turn. Assistant messages up to the last one
that called no tool keep an empty `<think></think>`; those after it keep their reasoning.
"""

from __future__ import annotations

import json
import re
import warnings

import torch
from tinker import types

from tinker_cookbook.renderers.base import (
    Message,
    ParseTermination,
    RenderContext,
    RenderedMessage,
    Renderer,
    TextPart,
    ThinkingPart,
    ToolCall,
    ToolSpec,
    TrainOnWhat,
    UnparsedToolCall,
    ensure_list,
    ensure_text,
    parse_response_for_stop_token,
)
from tinker_cookbook.renderers.qwen3_format import as_openai_tool
from tinker_cookbook.tokenizer_utils import Tokenizer

DEFAULT_SYSTEM_PROMPT = "You are Kimi, an AI assistant created by Moonshot AI."

_SECTION_RE = re.compile(
    r"<\|tool_calls_section_begin\|>(.*?)<\|tool_calls_section_end\|>", re.DOTALL
)
_CALL_RE = re.compile(
    r"<\|tool_call_begin\|>\s*(.+?)\s*<\|tool_call_argument_begin\|>\s*(.*?)\s*<\|tool_call_end\|>",
    re.DOTALL,
)
_THINK_RE = re.compile(r"^<think>(.*?)</think>", re.DOTALL)


class KimiK2Renderer(Renderer):
    name = "kimi_k2"
    DEFAULT_SYSTEM_PROMPT = DEFAULT_SYSTEM_PROMPT

    def __init__(self, tokenizer: Tokenizer, strip_thinking_from_history: bool = True):
        """`strip_thinking_from_history=False` keeps every turn's reasoning (extension
        property, for multi-turn RL) instead of the template's empty `<think></think>`."""
        super().__init__(tokenizer)
        self.strip_thinking_from_history = strip_thinking_from_history
        self._im_end = self._special_token("<|im_end|>")
        for marker in ("<|im_user|>", "<|im_assistant|>", "<|im_system|>", "<|im_middle|>"):
            self._special_token(marker)

    @property
    def has_extension_property(self) -> bool:
        return not self.strip_thinking_from_history

    def get_stop_sequences(self) -> list[int]:
        return [self._im_end]

    def _last_assistant_turn_start_index(self, messages: list[Message]) -> int:
        """After the last assistant message that called no tool (the template's history end)."""
        for i in range(len(messages) - 1, -1, -1):
            if messages[i]["role"] == "assistant" and not messages[i].get("tool_calls"):
                return i + 1
        return 0

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        role = message["role"]
        marker = {"user": "<|im_user|>", "assistant": "<|im_assistant|>"}.get(role, "<|im_system|>")
        header = f"{marker}{message.get('name') or role}<|im_middle|>"
        if role == "assistant":
            body = self._assistant_body(message, ctx)
        elif role == "tool":
            body = f"## Return of {_tool_call_id(message, ctx)}\n{ensure_text(message['content'])}"
        else:
            body = ensure_text(message["content"])
        return RenderedMessage(
            header=self._chunk(header), output=[self._chunk(body + "<|im_end|>")]
        )

    def _assistant_body(self, message: Message, ctx: RenderContext) -> str:
        parts = ensure_list(message["content"])
        reasoning = "".join(p["thinking"] for p in parts if p["type"] == "thinking")
        text = "".join(p["text"] for p in parts if p["type"] == "text")
        keep = ctx.in_last_assistant_turn or not self.strip_thinking_from_history
        body = f"<think>{reasoning if keep else ''}</think>{text}"
        calls = message.get("tool_calls") or []
        if calls:
            body += "<|tool_calls_section_begin|>"
            for i, call in enumerate(calls):
                call_id = call.id or f"functions.{call.function.name}:{i}"
                body += (
                    f"<|tool_call_begin|>{call_id}<|tool_call_argument_begin|>"
                    f"{call.function.arguments}<|tool_call_end|>"
                )
            body += "<|tool_calls_section_end|>"
        return body

    def _with_system(self, messages: list[Message], trainable: bool | None = None) -> list[Message]:
        """The template's default system prompt, after any `tool_declare`, when none is given."""
        start = 1 if messages and messages[0]["role"] == "tool_declare" else 0
        if len(messages) > start and messages[start]["role"] == "system":
            return messages
        system = Message(role="system", content=DEFAULT_SYSTEM_PROMPT)
        if trainable is not None:
            system["trainable"] = trainable
        return [*messages[:start], system, *messages[start:]]

    def build_generation_prompt(
        self, messages: list[Message], role: str = "assistant", prefill: str | None = None
    ) -> types.ModelInput:
        return super().build_generation_prompt(self._with_system(messages), role, prefill)

    def build_supervised_example(
        self,
        messages: list[Message],
        train_on_what: TrainOnWhat | str = TrainOnWhat.LAST_ASSISTANT_MESSAGE,
    ) -> tuple[types.ModelInput, torch.Tensor]:
        """The trained turn keeps its reasoning (it is the sampled turn), unlike the template's
        render of a finished conversation, which would train the model not to reason."""
        customized = TrainOnWhat(train_on_what) == TrainOnWhat.CUSTOMIZED
        full = self._with_system(messages, trainable=False if customized else None)
        return super().build_supervised_example(full, train_on_what)

    def parse_response(self, response: list[int]) -> tuple[Message, ParseTermination]:
        message, termination = parse_response_for_stop_token(response, self.tokenizer, self._im_end)
        if termination.is_clean:
            message = _parse_text(ensure_text(message["content"]))
        return message, termination

    def create_conversation_prefix_with_tools(
        self, tools: list[ToolSpec], system_prompt: str = ""
    ) -> list[Message]:
        """A `tool_declare` message (if any tools) and the system prompt (or the default)."""
        messages: list[Message] = []
        if tools:
            payload = [as_openai_tool(tool) for tool in tools]
            text = json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
            messages.append(Message(role="tool_declare", content=text))
        messages.append(Message(role="system", content=system_prompt or DEFAULT_SYSTEM_PROMPT))
        return messages


def _tool_call_id(message: Message, ctx: RenderContext) -> str:
    call_id = message.get("tool_call_id")
    if not call_id:
        warnings.warn(
            f"kimi_k2: tool message {ctx.idx} has no 'tool_call_id'; Kimi renders results as "
            "'## Return of <id>' with the id of the call they answer",
            UserWarning,
            stacklevel=4,
        )
    return call_id or ""


def _parse_text(text: str) -> Message:
    """Reasoning, text and the tool-call section of a decoded reply."""
    calls: list[ToolCall] = []
    unparsed: list[UnparsedToolCall] = []
    section = _SECTION_RE.search(text)
    if section:
        calls, unparsed = _parse_calls(section.group(1))
        text = text[: section.start()]
    elif "<|tool_calls_section_begin|>" in text or "<|tool_call_begin|>" in text:
        start = text.find("<|tool_calls_section_begin|>")
        raw = text[start:] if start >= 0 else text[text.find("<|tool_call_begin|>") :]
        unparsed.append(UnparsedToolCall(raw_text=raw, error="unterminated tool block"))
    think = _THINK_RE.match(text)
    reasoning, text = (think.group(1), text[think.end() :]) if think else ("", text)
    message = Message(role="assistant", content=text)
    if reasoning:
        parts: list = [ThinkingPart(type="thinking", thinking=reasoning)]
        message["content"] = parts + ([TextPart(type="text", text=text)] if text else [])
    if calls:
        message["tool_calls"] = calls
    if unparsed:
        message["unparsed_tool_calls"] = unparsed
    return message


def _parse_calls(section: str) -> tuple[list[ToolCall], list[UnparsedToolCall]]:
    calls: list[ToolCall] = []
    unparsed: list[UnparsedToolCall] = []
    for match in _CALL_RE.finditer(section):
        call_id, arguments = match.group(1), match.group(2)
        name = call_id.split(":", 1)[0].removeprefix("functions.")
        try:
            json.loads(arguments)
        except json.JSONDecodeError as exc:
            unparsed.append(
                UnparsedToolCall(raw_text=match.group(0), error=f"arguments are not JSON: {exc}")
            )
            continue
        calls.append(
            ToolCall(function=ToolCall.FunctionBody(name=name, arguments=arguments), id=call_id)
        )
    return calls, unparsed
