"""Llama 3 Instruct's header format:

    <|begin_of_text|><|start_header_id|>user<|end_header_id|>\\n\\nHi<|eot_id|>
    <|start_header_id|>assistant<|end_header_id|>\\n\\n

Unlike Meta's template, no "Cutting Knowledge Date" system preamble is added. Llama 3's tool
calls are bare JSON, indistinguishable from a JSON answer, so tool calling is not supported.
"""

from __future__ import annotations

from tinker_cookbook.renderers.base import (
    Message,
    ParseTermination,
    RenderContext,
    RenderedMessage,
    Renderer,
    RendererError,
    ensure_text,
    parse_response_for_stop_token,
)
from tinker_cookbook.tokenizer_utils import Tokenizer


class Llama3Renderer(Renderer):
    name = "llama3"

    def __init__(self, tokenizer: Tokenizer):
        super().__init__(tokenizer)
        self._bos = self._special_token("<|begin_of_text|>")
        self._eot = self._special_token("<|eot_id|>")
        self._special_token("<|start_header_id|>")

    @property
    def has_extension_property(self) -> bool:
        return True

    @property
    def _bos_tokens(self) -> list[int]:
        return [self._bos]

    def get_stop_sequences(self) -> list[int]:
        return [self._eot]

    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage:
        if message.get("tool_calls"):
            raise RendererError(
                f"renderer 'llama3' cannot render tool calls (message {ctx.idx}): Llama 3 writes "
                "them as bare JSON; use a format with tool-call markup such as qwen3"
            )
        role = "ipython" if message["role"] == "tool" else message["role"]
        return RenderedMessage(
            header=self._chunk(f"<|start_header_id|>{role}<|end_header_id|>\n\n"),
            output=[self._chunk(ensure_text(message["content"]) + "<|eot_id|>")],
        )

    def parse_response(self, response: list[int]) -> tuple[Message, ParseTermination]:
        return parse_response_for_stop_token(response, self.tokenizer, self._eot)
