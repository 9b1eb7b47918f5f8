"""Policies one can sample from, at two levels.

A `TokenCompleter` maps prompt tokens to sampled tokens (what RL rollouts need: training works
on tokens); a `MessageCompleter` maps a conversation to the assistant's next message (what
evaluators and multi-agent games need) and so carries a renderer.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import tinker

from tinker_cookbook.clients import SamplingClientLike
from tinker_cookbook.renderers import Message, Renderer
from tinker_cookbook.utils.seeding import derive_seed

StopCondition = list[str] | list[int]
"""Stop strings, or stop token ids, that end one sampled turn."""


@dataclass
class TokensWithLogprobs:
    """Sampled tokens, their logprobs when the sampler returned them, and why sampling ended."""

    tokens: list[int]
    maybe_logprobs: list[float] | None
    stop_reason: tinker.StopReason = "stop"

    @property
    def logprobs(self) -> list[float]:
        if self.maybe_logprobs is None:
            raise ValueError("this sample carries no logprobs (the sampler did not return them)")
        return self.maybe_logprobs


class TokenCompleter:
    """Samples a continuation of `model_input` until `stop` (or a token budget)."""

    async def __call__(
        self, model_input: tinker.ModelInput, stop: StopCondition, *, max_tokens: int | None = None
    ) -> TokensWithLogprobs:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__")


class MessageCompleter:
    """Writes the assistant's next message of a conversation."""

    async def __call__(self, messages: list[Message]) -> Message:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__")


@dataclass
class TinkerTokenCompleter(TokenCompleter):
    """One sample per call from a sampling client (Tinker's or the local backend's).

    `context_window` caps each request so prompt + reply fits; `seed` (ours) makes a run
    reproducible: request i is sampled with a seed derived from (`seed`, i). Shared by
    concurrent episodes, i follows whichever asks first; `for_episode` gives each episode a
    completer of its own, whose seeds depend only on the episode's position and turn.
    """

    sampling_client: SamplingClientLike
    max_tokens: int
    temperature: float = 1.0
    context_window: int | None = None
    seed: int | None = None
    requests: int = field(default=0, init=False, repr=False)

    async def __call__(
        self, model_input: tinker.ModelInput, stop: StopCondition, *, max_tokens: int | None = None
    ) -> TokensWithLogprobs:
        params = tinker.SamplingParams(
            max_tokens=self._budget(model_input, max_tokens),
            temperature=self.temperature,
            stop=stop,
            seed=self._next_seed(),
        )
        result = await self.sampling_client.sample_async(
            prompt=model_input, num_samples=1, sampling_params=params
        )
        seq = result.sequences[0]
        return TokensWithLogprobs(list(seq.tokens), seq.logprobs, seq.stop_reason)

    def _budget(self, model_input: tinker.ModelInput, max_tokens: int | None) -> int:
        budget = self.max_tokens if max_tokens is None else min(self.max_tokens, max_tokens)
        if self.context_window is not None:
            budget = min(budget, self.context_window - model_input.length)
            if budget <= 0:
                raise ValueError(
                    f"prompt of {model_input.length} tokens leaves no room to sample in a "
                    f"context window of {self.context_window}"
                )
        return budget

    def _next_seed(self) -> int | None:
        self.requests += 1
        return derive_seed(self.seed, "request", self.requests - 1)

    def for_episode(self, *position: int) -> TinkerTokenCompleter:
        """This completer for one episode (e.g. its group and its index in the group): its own
        request count, and a seed derived from `position`."""
        return replace(self, seed=derive_seed(self.seed, "episode", *position))


class TinkerMessageCompleter(MessageCompleter):
    """A sampling client behind a renderer: messages in, the parsed assistant message out."""

    def __init__(
        self,
        sampling_client: SamplingClientLike,
        renderer: Renderer,
        max_tokens: int,
        stop_condition: StopCondition | None = None,
        temperature: float = 1.0,
    ):
        self.sampling_client, self.renderer = sampling_client, renderer
        self.max_tokens, self.temperature = max_tokens, temperature
        self.stop_condition = (
            renderer.get_stop_sequences() if stop_condition is None else stop_condition
        )

    async def __call__(self, messages: list[Message]) -> Message:
        params = tinker.SamplingParams(
            max_tokens=self.max_tokens, temperature=self.temperature, stop=self.stop_condition
        )
        result = await self.sampling_client.sample_async(
            prompt=self.renderer.build_generation_prompt(messages),
            num_samples=1,
            sampling_params=params,
        )
        parsed, _termination = self.renderer.parse_response(list(result.sequences[0].tokens))
        reply: Message = {"role": "assistant", "content": parsed["content"]}
        if "tool_calls" in parsed:
            reply["tool_calls"] = parsed["tool_calls"]
        return reply
