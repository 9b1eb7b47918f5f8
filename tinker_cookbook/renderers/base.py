"""Messages <-> tokens for one chat format, with per-token loss weights (the cookbook's API).

A renderer lays each message out as a `RenderedMessage`: a `header` (role markers; trained only
under `ALL_TOKENS`), an `output` (what the model writes for the turn, end-of-turn marker
included) and, for formats whose stop string runs into the next turn, a `stop_overlap`. A
generation prompt ends where sampling starts, so sampled tokens are exactly an `output`.
"""

from __future__ import annotations

import functools
import logging
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum

import tinker
import torch
from tinker import types

from tinker_cookbook.renderers.messages import (
    Content,
    ContentPart,
    ImagePart,
    Message,
    ParseTermination,
    RenderContext,
    RendererError,
    Role,
    StrictBase,
    TextPart,
    ThinkingPart,
    ToolCall,
    ToolSpec,
    UnparsedToolCall,
    ensure_list,
    ensure_text,
    format_content_as_string,
    get_text_content,
    get_thinking_content,
    has_thinking,
    remove_thinking,
)
from tinker_cookbook.tokenizer_utils import Tokenizer

__all__ = [
    "Content",
    "ContentPart",
    "ImagePart",
    "Message",
    "ParseTermination",
    "RenderContext",
    "RenderedMessage",
    "Renderer",
    "RendererError",
    "Role",
    "StrictBase",
    "TextPart",
    "ThinkingPart",
    "ToolCall",
    "ToolSpec",
    "TrainOnWhat",
    "UnparsedToolCall",
    "ensure_list",
    "ensure_text",
    "format_content_as_string",
    "get_text_content",
    "get_thinking_content",
    "has_thinking",
    "parse_response_for_stop_token",
    "remove_thinking",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenderedMessage:
    """One message's tokens, split for loss masking.

    `stop_overlap` is for formats whose stop sequence spans into the next turn (`role_colon`'s
    `\\n\\nUser:`): it is appended, with the output's weight, only after the last message."""

    output: list[tinker.ModelInputChunk]
    header: types.EncodedTextChunk | None = None
    stop_overlap: types.EncodedTextChunk | None = None


class TrainOnWhat(StrEnum):
    """Which messages carry loss. `LAST_ASSISTANT_TURN`: the assistant messages after the last
    user message; `CUSTOMIZED`: each message's own `trainable` flag."""

    LAST_ASSISTANT_MESSAGE = "last_assistant_message"
    LAST_ASSISTANT_TURN = "last_assistant_turn"
    ALL_ASSISTANT_MESSAGES = "all_assistant_messages"
    ALL_MESSAGES = "all_messages"
    ALL_TOKENS = "all_tokens"
    ALL_USER_AND_SYSTEM_MESSAGES = "all_user_and_system_messages"
    CUSTOMIZED = "customized"


class Renderer(ABC):
    """One chat format. Subclasses say how a message looks (`render_message`), how sampling
    stops and how a reply parses; this class assembles prompts and training examples."""

    name: str = ""
    model_name: str | None = None  # set by get_renderer
    disables_thinking: bool = False
    """Whether the generation prompt closes the think block (the model is told not to reason)."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer

    # ---- what a format provides ----------------------------------------------------------
    @abstractmethod
    def render_message(self, message: Message, ctx: RenderContext) -> RenderedMessage: ...

    @abstractmethod
    def get_stop_sequences(self) -> list[str] | list[int]: ...

    @abstractmethod
    def parse_response(self, response: list[int]) -> tuple[Message, ParseTermination]:
        """The sampled message and how it ended. Never raises on model output: tool calls that
        do not parse go to `message["unparsed_tool_calls"]`."""

    @property
    def has_extension_property(self) -> bool:
        """Whether each turn's prompt is a prefix of the next turn's (history is never
        rewritten), so a whole multi-turn episode can be one training sequence."""
        return False

    @property
    def _bos_tokens(self) -> list[int]:
        return []

    def create_conversation_prefix_with_tools(
        self, tools: list[ToolSpec], system_prompt: str = ""
    ) -> list[Message]:
        """Messages that declare `tools` (and the system prompt), to start a conversation."""
        raise NotImplementedError(f"renderer {self.name!r} has no tool-calling format")

    def _get_generation_suffix(self, role: Role, ctx: RenderContext) -> list[int]:
        """Tokens that open a `role` turn for the model to complete: by default the header of
        an empty message."""
        header = self.render_message(Message(role=role, content=""), ctx).header
        return list(header.tokens) if header else []

    # ---- helpers for formats -------------------------------------------------------------
    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False) if text else []

    def _chunk(self, text: str) -> types.EncodedTextChunk:
        return types.EncodedTextChunk(tokens=self._encode(text))

    def _special_token(self, text: str) -> int:
        """The id of a single marker token the format needs, or an error naming the mismatch."""
        ids = self._encode(text)
        if len(ids) != 1:
            raise RendererError(
                f"renderer {self.name!r} needs {text!r} as one token, but tokenizer "
                f"{getattr(self.tokenizer, 'name_or_path', '?')!r} splits it into {ids}: "
                "use the renderer that matches this model's tokenizer"
            )
        return ids[0]

    def _last_user_index(self, messages: list[Message]) -> int:
        """The message after which history ends and the current turn begins (-1: none)."""
        return last_user_index(messages)

    def _last_assistant_turn_start_index(self, messages: list[Message]) -> int:
        """Where the turn being produced starts (reasoning there is kept): after the last user
        message, unless the format draws the line elsewhere."""
        return self._last_user_index(messages) + 1

    def _contexts(self, messages: list[Message], turn_start: int) -> list[RenderContext]:
        last_user = self._last_user_index(messages)
        n = len(messages)
        return [
            RenderContext(
                idx=i,
                is_last=i == n - 1,
                prev_message=messages[i - 1] if i > 0 else None,
                next_message=messages[i + 1] if i + 1 < n else None,
                last_user_index=last_user,
                in_last_assistant_turn=i >= turn_start,
            )
            for i in range(n)
        ]

    # ---- assembly ------------------------------------------------------------------------
    def build_generation_prompt(
        self, messages: list[Message], role: Role = "assistant", prefill: str | None = None
    ) -> types.ModelInput:
        """The conversation so far, then the opening of a `role` turn (and `prefill`)."""
        contexts = self._contexts(messages, self._last_assistant_turn_start_index(messages))
        tokens = self._bos_tokens + self._render(messages, contexts)
        tokens += self._generation_suffix_after(messages, role)
        if prefill:
            tokens += self._encode(prefill)
        return types.ModelInput.from_ints(tokens)

    def _render(self, messages: list[Message], contexts: list[RenderContext]) -> list[int]:
        return [
            token
            for message, ctx in zip(messages, contexts, strict=True)
            for token in _tokens(self.render_message(message, ctx))
        ]

    def _generation_suffix_after(self, messages: list[Message], role: Role) -> list[int]:
        ctx = RenderContext(
            idx=len(messages),
            is_last=True,
            prev_message=messages[-1] if messages else None,
            last_user_index=self._last_user_index(messages),
            in_last_assistant_turn=True,
        )
        return self._get_generation_suffix(role, ctx)

    def build_supervised_example(
        self,
        messages: list[Message],
        train_on_what: TrainOnWhat | str = TrainOnWhat.LAST_ASSISTANT_MESSAGE,
    ) -> tuple[types.ModelInput, torch.Tensor]:
        """All tokens of the conversation and a weight per token (1 = trained). The tokens
        start with the generation prompt of the trained turn, so training sees what sampling
        sees; what that prompt supplies (a prefilled think block) carries no loss."""
        what = TrainOnWhat(train_on_what)
        _check_trainable_flags(messages, what)
        if what == TrainOnWhat.ALL_ASSISTANT_MESSAGES and not self.has_extension_property:
            _warn_once(
                f"renderer {self.name!r} rewrites history, so earlier assistant turns are "
                "trained on a context they were not sampled from; build_supervised_examples "
                "gives one example per turn instead"
            )
        tokens, weights = list(self._bos_tokens), [0.0] * len(self._bos_tokens)
        contexts = self._contexts(messages, self._last_assistant_turn_start_index(messages[:-1]))
        for message, ctx in zip(messages, contexts, strict=True):
            rendered = self.render_message(message, ctx)
            trained = float(self._output_is_trained(message, ctx, what))
            header = _ints(rendered.header)
            output = _tokens(rendered, with_header=False)
            if ctx.is_last:
                output += _ints(rendered.stop_overlap)
            tokens += header + output
            weights += [float(what == TrainOnWhat.ALL_TOKENS)] * len(header)
            weights += [trained] * len(output)
        weights = self._zero_the_generation_prompt(messages, what, tokens, weights)
        return types.ModelInput.from_ints(tokens), torch.tensor(weights)

    def build_supervised_examples(
        self,
        messages: list[Message],
        train_on_what: TrainOnWhat | str = TrainOnWhat.LAST_ASSISTANT_TURN,
    ) -> list[tuple[types.ModelInput, torch.Tensor]]:
        """Training examples for a conversation: one, if history is never rewritten; else one
        per trained assistant message, each ending at that message (its own sampling context)."""
        what = TrainOnWhat(train_on_what)
        if self.has_extension_property:
            return [self.build_supervised_example(messages, what)]
        n = len(messages)
        match what:
            case TrainOnWhat.LAST_ASSISTANT_MESSAGE:
                candidates = range(n - 1, n)
            case TrainOnWhat.LAST_ASSISTANT_TURN:
                candidates = range(last_user_index(messages) + 1, n)
            case TrainOnWhat.ALL_ASSISTANT_MESSAGES:
                candidates = range(n)
            case _:
                raise NotImplementedError(
                    f"build_supervised_examples cannot split train_on_what={what.value!r} for "
                    f"renderer {self.name!r}: it rewrites history, and that mode trains messages "
                    "that are not sampled turns; use build_supervised_example"
                )
        return [
            self.build_supervised_example(messages[: i + 1], TrainOnWhat.LAST_ASSISTANT_MESSAGE)
            for i in candidates
            if messages[i]["role"] == "assistant"
        ]

    def _output_is_trained(self, message: Message, ctx: RenderContext, what: TrainOnWhat) -> bool:
        is_assistant = message["role"] == "assistant"
        match what:
            case TrainOnWhat.LAST_ASSISTANT_MESSAGE:
                return ctx.is_last and is_assistant
            case TrainOnWhat.LAST_ASSISTANT_TURN:
                return is_assistant and ctx.idx > ctx.last_user_index
            case TrainOnWhat.ALL_ASSISTANT_MESSAGES:
                return is_assistant
            case TrainOnWhat.ALL_MESSAGES | TrainOnWhat.ALL_TOKENS:
                return True
            case TrainOnWhat.ALL_USER_AND_SYSTEM_MESSAGES:
                return message["role"] in ("user", "system")
            case TrainOnWhat.CUSTOMIZED:
                return bool(message.get("trainable", False))

    def _zero_the_generation_prompt(
        self, messages: list[Message], what: TrainOnWhat, tokens: list[int], weights: list[float]
    ) -> list[float]:
        """No loss on what the trained turn's generation prompt supplies; an error if a format
        that closes the think block is asked to train a turn its prompt cannot produce."""
        boundary = _first_trained_message_index(messages, what)
        if boundary is None:
            return weights
        prompt = self.build_generation_prompt(messages[:boundary]).to_ints()
        if tokens[: len(prompt)] != prompt:
            if self.disables_thinking:
                raise RendererError(
                    f"renderer {self.name!r} prompts with a closed (empty) think block, but "
                    f"message {boundary} does not render after it: it has reasoning, or the "
                    "conversation has no user message. Drop the reasoning, add a user message, "
                    "or use the thinking renderer."
                )
            return weights
        return [0.0] * len(prompt) + weights[len(prompt) :]

    # ---- multi-turn sampling -------------------------------------------------------------
    def render_continuation(
        self, new_messages: list[Message], role: Role = "assistant"
    ) -> list[int]:
        """Tokens that follow a sampled reply (ended by a stop sequence) so the conversation
        continues with `new_messages` and a fresh `role` turn, keeping the sampled tokens
        verbatim. Equal to what re-rendering the whole conversation adds only for a format with
        the extension property (and a reply written as the format writes it); others rewrite
        history, and callers render anew (see `rl.message_env.EnvFromMessageEnv`)."""
        context = [Message(role="assistant", content=""), *new_messages]
        contexts = self._contexts(context, turn_start=0)[1:]
        return self._render(new_messages, contexts) + self._generation_suffix_after(context, role)

    def ends_with_stop(self, tokens: list[int]) -> bool:
        """Whether a sampled reply ended on one of this format's stop sequences."""
        stops = self.get_stop_sequences()
        if stops and isinstance(stops[0], int):
            return bool(tokens) and tokens[-1] in stops
        text = self.tokenizer.decode(tokens)
        return any(stop in text for stop in stops)


@functools.cache
def _warn_once(message: str) -> None:
    """Once per call site and message (Python's default warning filter), not once per row."""
    warnings.warn(message, UserWarning, stacklevel=3)


def last_user_index(messages: list[Message]) -> int:
    return max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)


def _tokens(rendered: RenderedMessage, with_header: bool = True) -> list[int]:
    header = _ints(rendered.header) if with_header else []
    return header + [token for chunk in rendered.output for token in _ints(chunk)]


def _ints(chunk: tinker.ModelInputChunk | None) -> list[int]:
    if chunk is None:
        return []
    if not isinstance(chunk, types.EncodedTextChunk):
        raise RendererError(f"only text chunks can be rendered here, got {type(chunk).__name__}")
    return list(chunk.tokens)


def _check_trainable_flags(messages: list[Message], what: TrainOnWhat) -> None:
    for i, message in enumerate(messages):
        if what == TrainOnWhat.CUSTOMIZED and "trainable" not in message:
            raise RendererError(
                f"train_on_what=customized needs a 'trainable' flag on every message; message "
                f"{i} (role {message['role']!r}) has none"
            )
        if what != TrainOnWhat.CUSTOMIZED and "trainable" in message:
            raise RendererError(
                f"message {i} (role {message['role']!r}) has a 'trainable' flag, which only "
                f"train_on_what=customized reads (got {what.value!r}): use customized or drop it"
            )


def _first_trained_message_index(messages: list[Message], what: TrainOnWhat) -> int | None:
    """The message the trained turn's generation prompt stops before, for the modes that train
    the turn sampling produces."""
    if what == TrainOnWhat.LAST_ASSISTANT_MESSAGE:
        boundary = len(messages) - 1
    elif what == TrainOnWhat.LAST_ASSISTANT_TURN:
        boundary = last_user_index(messages) + 1
    else:
        return None
    if 0 <= boundary < len(messages) and messages[boundary]["role"] == "assistant":
        return boundary
    return None


def parse_response_for_stop_token(
    response: list[int], tokenizer: Tokenizer, stop_token: int
) -> tuple[Message, ParseTermination]:
    """The text before `stop_token` as an assistant message. No stop token (cut off at
    max_tokens) or several (a sampler that ignored the stop) is `MALFORMED`, never an error."""
    count = response.count(stop_token)
    end = response.index(stop_token) if count else len(response)
    text = str(tokenizer.decode(response[:end]))
    termination = ParseTermination.STOP_SEQUENCE if count == 1 else ParseTermination.MALFORMED
    return Message(role="assistant", content=text), termination
