"""Messages <-> tokens, with per-token loss weights, for one chat format.

A renderer lays each message out as `prefix` (role header; never trained except under
ALL_TOKENS), `body` (the content and its end-of-turn marker, trained when the message is) and
`suffix` (separators after the end-of-turn marker). Generation prompts end with the header of
the turn to be sampled, so sampled tokens are exactly a message body.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NotRequired, TypedDict

import torch
from tinker import types


class ToolCall(TypedDict):
    name: str
    arguments: dict[str, Any]


class Message(TypedDict):
    role: str  # system | user | assistant | tool
    content: str
    tool_calls: NotRequired[list[ToolCall]]
    thinking: NotRequired[str]
    name: NotRequired[str]  # a tool message's tool name
    tool_call_error: NotRequired[str]  # set by parse_response on a malformed tool call


class TrainOnWhat(StrEnum):
    LAST_ASSISTANT_MESSAGE = "last_assistant_message"
    ALL_ASSISTANT_MESSAGES = "all_assistant_messages"
    ALL_MESSAGES = "all_messages"
    ALL_TOKENS = "all_tokens"


@dataclass
class RenderedMessage:
    prefix: list[int]
    body: list[int]
    suffix: list[int]


class Renderer(ABC):
    """One chat format. Subclasses say how a message looks; this class assembles sequences."""

    name: str = ""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    # ---- what a subclass provides -------------------------------------------------------
    @abstractmethod
    def render_message(self, message: Message, is_last: bool) -> RenderedMessage: ...

    @abstractmethod
    def generation_header(self, role: str) -> list[int]:
        """Tokens that open a turn of `role` for the model to complete."""

    @abstractmethod
    def get_stop_sequences(self) -> list[int] | list[str]: ...

    @abstractmethod
    def parse_response(self, tokens: list[int]) -> tuple[Message, bool]:
        """The sampled message, and whether it ended cleanly and is well formed. A malformed
        tool call is reported in `message["tool_call_error"]`, never raised."""

    def bos_tokens(self) -> list[int]:
        return []

    def render_continuation(
        self, new_messages: list[Message], role: str = "assistant"
    ) -> list[int]:
        """Tokens that follow a sampled reply (which ended with a stop sequence) so that the
        conversation continues with `new_messages` and a fresh `role` turn; equal to what
        rendering the whole conversation again would add."""
        tokens = list(
            self.render_message({"role": "assistant", "content": ""}, is_last=False).suffix
        )
        for message in new_messages:
            part = self.render_message(message, is_last=False)
            tokens += part.prefix + part.body + part.suffix
        return tokens + self.generation_header(role)

    def ends_with_stop(self, tokens: list[int]) -> bool:
        """Whether a sampled reply ended on one of this format's stop sequences."""
        stops = self.get_stop_sequences()
        if stops and isinstance(stops[0], int):
            return bool(tokens) and tokens[-1] in stops
        text = self.tokenizer.decode(tokens)
        return any(stop in text for stop in stops)

    # ---- assembly -----------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def special_token(self, text: str) -> int:
        """The id of a single special token the format needs, or a clear error."""
        ids = self.encode(text)
        if len(ids) != 1:
            raise ValueError(
                f"renderer {self.name!r} needs {text!r} as one token, but tokenizer "
                f"{getattr(self.tokenizer, 'name_or_path', '?')!r} splits it into {ids}: "
                "use the renderer that matches this model's tokenizer"
            )
        return ids[0]

    def build_generation_prompt(
        self, messages: list[Message], role: str = "assistant", prefill: str | None = None
    ) -> types.ModelInput:
        tokens = list(self.bos_tokens())
        for i, message in enumerate(messages):
            part = self.render_message(message, is_last=i == len(messages) - 1)
            tokens += part.prefix + part.body + part.suffix
        tokens += self.generation_header(role)
        if prefill:
            tokens += self.encode(prefill)
        return types.ModelInput.from_ints(tokens)

    def build_supervised_example(
        self,
        messages: list[Message],
        train_on_what: TrainOnWhat | str = TrainOnWhat.LAST_ASSISTANT_MESSAGE,
    ) -> tuple[types.ModelInput, torch.Tensor]:
        """All tokens of the conversation and a weight per token (1 = trained)."""
        what = TrainOnWhat(train_on_what)
        last_assistant = max(
            (i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1
        )
        everything = what == TrainOnWhat.ALL_TOKENS
        tokens = list(self.bos_tokens())
        weights = [float(everything)] * len(tokens)
        for i, message in enumerate(messages):
            part = self.render_message(message, is_last=i == len(messages) - 1)
            trained = (
                everything
                or what == TrainOnWhat.ALL_MESSAGES
                or (
                    message["role"] == "assistant"
                    and (what == TrainOnWhat.ALL_ASSISTANT_MESSAGES or i == last_assistant)
                )
            )
            tokens += part.prefix + part.body + part.suffix
            weights += [float(everything)] * len(part.prefix)
            weights += [float(trained)] * len(part.body)
            weights += [float(everything)] * len(part.suffix)
        return types.ModelInput.from_ints(tokens), torch.tensor(weights)


def datum_from_tokens_weights(
    model_input: types.ModelInput, weights: torch.Tensor, max_length: int | None = None
) -> types.Datum:
    """Shift into next-token form (input[:-1] predicts tokens[1:]), keeping the first
    `max_length` tokens of an over-long sequence rather than dropping it."""
    tokens = model_input.to_ints()
    if max_length is not None and len(tokens) > max_length:
        tokens, weights = tokens[:max_length], weights[:max_length]
    if len(tokens) < 2:
        raise ValueError(f"a training sequence needs at least 2 tokens, got {len(tokens)}")
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": weights[1:].float()},
    )
