"""Qwen3's chat format, token for token as its chat template renders it.

    <|im_start|>system\\n...<|im_end|>\\n<|im_start|>user\\n...<|im_end|>\\n
    <|im_start|>assistant\\n<think>\\n...\\n</think>\\n\\nanswer<|im_end|>

The template keeps reasoning only in the turn being produced: the assistant messages after the
last real user query (tool results do not count as queries). Earlier turns lose theirs, so
history is rewritten and the renderer lacks the extension property (unless
`strip_thinking_from_history=False`). Consecutive tool results share one user turn, each in a
`<tool_response>` block. Each turn's separating newline opens the next header, so a sampled
reply ends exactly at `<|im_end|>`.
"""

from __future__ import annotations

from tinker_cookbook.renderers.base import (
    Message,
    ParseTermination,
    RenderContext,
    RenderedMessage,
    Renderer,
    RendererError,
    Role,
    ToolSpec,
    ensure_text,
    get_text_content,
    parse_response_for_stop_token,
)
from tinker_cookbook.renderers.qwen3_format import (
    format_tool_calls,
    frame_reasoning,
    parse_assistant_text,
    split_reasoning,
    tools_system_text,
)
from tinker_cookbook.tokenizer_utils import Tokenizer

_EMPTY_THINK = "<think>\n\n</think>\n\n"


class Qwen3Renderer(Renderer):
    """Qwen3 hybrid models with thinking on (Qwen/Qwen3-8B's template, `enable_thinking=True`)."""

    name = "qwen3"
    frames_thinking = True  # the 2507 Instruct models have no think block at all

    def __init__(self, tokenizer: Tokenizer, strip_thinking_from_history: bool = True):
        """`strip_thinking_from_history=False` keeps every turn's reasoning (framed alike
        wherever it sits), so prompts only grow: the extension property, for multi-turn RL."""
        super().__init__(tokenizer)
        self.strip_thinking_from_history = strip_thinking_from_history
        self._im_end = self._special_token("<|im_end|>")
        self._special_token("<|im_start|>")

    @property
    def has_extension_property(self) -> bool:
        return not self.strip_thinking_from_history

    def get_stop_sequences(self) -> list[int]:
        return [self._im_end]

    def _last_user_index(self, messages: list[Message]) -> int:
        """The last real query: a user message that is not a wrapped tool response."""
        for i in range(len(messages) - 1, -1, -1):
            if messages[i]["role"] == "user":
                text = get_text_content(messages[i])
                if not (text.startswith("<tool_response>") and text.endswith("</tool_response>")):
                    return i
        return -1

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        role = message["role"]
        newline = "\n" if ctx.idx > 0 else ""
        if role == "tool":
            return self._render_tool_result(message, ctx, newline)
        if role == "assistant":
            body = self._assistant_body(message, ctx)
        elif role in ("system", "user"):
            body = ensure_text(message["content"])
        else:
            raise RendererError(
                f"renderer {self.name!r} renders roles system, user, assistant and tool; message "
                f"{ctx.idx} has role {role!r}"
            )
        return RenderedMessage(
            header=self._chunk(f"{newline}<|im_start|>{role}\n"),
            output=[self._chunk(body + "<|im_end|>")],
        )

    def _assistant_body(self, message: Message, ctx: RenderContext) -> str:
        content = message["content"]
        if self.frames_thinking:
            reasoning, text = split_reasoning(content)
        else:  # the Instruct template writes string content as is and ignores reasoning
            reasoning, text = "", get_text_content(message)
        has_query = ctx.last_user_index >= 0
        in_produced_turn = has_query and ctx.idx > ctx.last_user_index
        if (
            self.frames_thinking
            and has_query
            and (
                not self.strip_thinking_from_history
                or (in_produced_turn and (ctx.is_last or reasoning))
            )
        ):
            body = frame_reasoning(reasoning, text)
        else:
            body = text
        return body + format_tool_calls(message.get("tool_calls", []), after_text=bool(text))

    def _render_tool_result(
        self, message: Message, ctx: RenderContext, newline: str
    ) -> RenderedMessage:
        """Consecutive results share one user turn: only the first opens it, the last closes."""
        opens = ctx.prev_message is None or ctx.prev_message["role"] != "tool"
        closes = ctx.next_message is None or ctx.next_message["role"] != "tool"
        body = f"\n<tool_response>\n{ensure_text(message['content'])}\n</tool_response>"
        return RenderedMessage(
            header=self._chunk(f"{newline}<|im_start|>user") if opens else None,
            output=[self._chunk(body + ("<|im_end|>" if closes else ""))],
        )

    def _get_generation_suffix(self, role: Role, ctx: RenderContext) -> list[int]:
        newline = "\n" if ctx.idx > 0 else ""
        prefill = _EMPTY_THINK if self.disables_thinking and role == "assistant" else ""
        return self._encode(f"{newline}<|im_start|>{role}\n{prefill}")

    def parse_response(self, response: list[int]) -> tuple[Message, ParseTermination]:
        message, termination = parse_response_for_stop_token(response, self.tokenizer, self._im_end)
        if not termination.is_clean:
            return message, termination
        text = ensure_text(message["content"])
        return parse_assistant_text(text, parse_reasoning=self.frames_thinking), termination

    def create_conversation_prefix_with_tools(
        self, tools: list[ToolSpec], system_prompt: str = ""
    ) -> list[Message]:
        """The system message Qwen's template writes for `tools=`; no tools, just the prompt."""
        if not tools:
            return [Message(role="system", content=system_prompt)] if system_prompt else []
        return [Message(role="system", content=tools_system_text(tools, system_prompt))]


class Qwen3DisableThinkingRenderer(Qwen3Renderer):
    """Qwen3 with thinking off (`enable_thinking=False`): the prompt ends with an empty think
    block, so the model answers directly. Training examples contain the same block, untrained."""

    name = "qwen3_disable_thinking"
    disables_thinking = True


class Qwen3InstructRenderer(Qwen3Renderer):
    """Qwen3 Instruct-2507 models, which never reason: no think block anywhere; string content
    is written as given and thinking parts are dropped, as the template does, so history is
    never rewritten."""

    name = "qwen3_instruct"
    frames_thinking = False

    @property
    def has_extension_property(self) -> bool:
        return True
