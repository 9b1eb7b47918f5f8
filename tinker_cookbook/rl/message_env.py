"""Environments written in messages (`MessageEnv`) and their token-level view
(`EnvFromMessageEnv`), which the RL and distillation loops train on.

A `MessageEnv` sees the assistant's parsed reply and answers with the whole conversation so far
(`next_messages`). `EnvFromMessageEnv` renders it: when the conversation grew by the reply plus
new messages, the next observation is the previous one, the sampled tokens exactly as sampled,
and the new messages rendered after them (`Renderer.render_continuation`), so a multi-turn
episode stays one training sequence; any other conversation is rendered from scratch.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import tinker

from tinker_cookbook.completers import StopCondition
from tinker_cookbook.renderers import Renderer
from tinker_cookbook.renderers.messages import Message
from tinker_cookbook.rl.types import (
    STOP_METRIC_PREFIX,
    Action,
    ActionExtra,
    Env,
    Logs,
    Metrics,
    StepResult,
    StopReason,
)


def stop_metric(reason: StopReason) -> str:
    """The one-hot metric key (`stop/<reason>`) an env sets on its last step."""
    return f"{STOP_METRIC_PREFIX}{reason}"


@dataclass
class MessageStepResult:
    """A message-level step: `next_messages` is the whole conversation to continue from
    (history, the reply, and whatever the env added)."""

    reward: float
    episode_done: bool
    next_messages: list[Message]
    metrics: Metrics = field(default_factory=dict)
    logs: Logs = field(default_factory=dict)
    next_stop_condition: StopCondition | None = None


class MessageEnv(ABC):
    """One episode in messages; wrap it in `EnvFromMessageEnv` to train on it."""

    @abstractmethod
    async def initial_observation(self) -> list[Message]:
        """The conversation the first reply continues."""

    @abstractmethod
    async def step(self, message: Message) -> MessageStepResult:
        """Take the assistant's parsed reply; say the reward and what comes next."""


class EnvFromMessageEnv(Env):
    """A `MessageEnv` as a token-level `Env`, through a renderer.

    A reply cut off at the sampler's max_tokens ends the episode with `context_overflow_reward`;
    a reply the renderer cannot parse earns `failed_parse_reward` (and ends the episode when
    `terminate_on_parse_error`). `max_generation_tokens` is the room kept for the next reply:
    the episode ends (`context_overflow_reward`) once the next prompt plus that room would
    exceed `max_trajectory_tokens`, instead of sampling a reply that cannot fit.
    """

    def __init__(
        self,
        renderer: Renderer,
        message_env: MessageEnv,
        failed_parse_reward: float = -1.0,
        terminate_on_parse_error: bool = True,
        max_trajectory_tokens: int | None = None,
        max_generation_tokens: int | None = None,
        context_overflow_reward: float = -0.1,
    ):
        self.renderer = renderer
        self.message_env = message_env
        self.failed_parse_reward = failed_parse_reward
        self.terminate_on_parse_error = terminate_on_parse_error
        self.max_trajectory_tokens = max_trajectory_tokens
        self.max_generation_tokens = max_generation_tokens
        self.context_overflow_reward = context_overflow_reward
        self._messages: list[Message] = []  # the conversation self._tokens renders
        self._tokens: list[int] = []

    @property
    def stop_condition(self) -> StopCondition:
        return self.renderer.get_stop_sequences()

    async def initial_observation(self) -> tuple[tinker.ModelInput, StopCondition]:
        messages = await self.message_env.initial_observation()
        tokens = await self._render(messages)
        if self._overflows(len(tokens)):
            raise ValueError(
                f"the initial prompt has {len(tokens)} tokens; with max_generation_tokens="
                f"{self.max_generation_tokens} it exceeds max_trajectory_tokens="
                f"{self.max_trajectory_tokens}"
            )
        self._messages, self._tokens = list(messages), tokens
        return tinker.ModelInput.from_ints(tokens), self.stop_condition

    async def step(self, action: Action, *, extra: ActionExtra | None = None) -> StepResult:
        if self._was_cut_off(action, extra):
            metrics = {"max_tokens_reached": 1.0, stop_metric(StopReason.MAX_TOKENS): 1.0}
            return self._end(self.context_overflow_reward, metrics)
        message, termination = self.renderer.parse_response(action)
        penalty, parse_metrics = 0.0, {}
        if not termination:
            if self.terminate_on_parse_error:
                metrics = {"parse_error": 1.0, stop_metric(StopReason.PARSE_ERROR): 1.0}
                return self._end(self.failed_parse_reward, metrics)
            penalty, parse_metrics = self.failed_parse_reward, {"parse_error": 1.0}
        result = await self.message_env.step(message)
        metrics = {**result.metrics, **parse_metrics}
        tokens = await self._next_tokens(action, message, result.next_messages)
        if not result.episode_done and self._overflows(len(tokens)):
            metrics |= {"context_overflow": 1.0, stop_metric(StopReason.CONTEXT_OVERFLOW): 1.0}
            return self._end(self.context_overflow_reward, metrics, result.logs)
        return StepResult(
            reward=result.reward + penalty,
            episode_done=result.episode_done,
            next_observation=tinker.ModelInput.from_ints(tokens),
            next_stop_condition=result.next_stop_condition or self.stop_condition,
            metrics=metrics,
            logs=result.logs,
        )

    def _was_cut_off(self, action: Action, extra: ActionExtra | None) -> bool:
        """The sampler says so (`stop_reason == "length"`), or, when it says nothing, the
        reply does not end with a stop sequence."""
        if extra and "stop_reason" in extra:
            return extra["stop_reason"] == "length"
        return not self.renderer.ends_with_stop(action)

    def _overflows(self, prompt_tokens: int) -> bool:
        if self.max_trajectory_tokens is None:
            return False
        return prompt_tokens + (self.max_generation_tokens or 0) > self.max_trajectory_tokens

    async def _next_tokens(
        self, action: Action, message: Message, next_messages: list[Message]
    ) -> list[int]:
        """The next prompt. A format with the extension property (history never rewritten)
        extends the last observation with the sampled tokens verbatim; any other format renders
        the conversation anew as its template would (dropping reasoning, a prefilled think
        block, ...), and training splits the trajectory where a prompt stops extending."""
        before = [*self._messages, message]
        grew = next_messages[: len(before)] == before
        extends = self.renderer.has_extension_property and self.renderer.ends_with_stop(action)
        if grew and extends:
            added = self.renderer.render_continuation(list(next_messages[len(before) :]))
            tokens = self._tokens + list(action) + added
        else:
            tokens = await self._render(next_messages)
        self._messages, self._tokens = list(next_messages), tokens
        return tokens

    async def _render(self, messages: list[Message]) -> list[int]:
        # Tokenizing is CPU work: a thread keeps other episodes' awaits moving meanwhile.
        prompt = await asyncio.to_thread(self.renderer.build_generation_prompt, messages)
        return prompt.to_ints()

    def _end(self, reward: float, metrics: Metrics, logs: Logs | None = None) -> StepResult:
        return StepResult(
            reward=reward,
            episode_done=True,
            next_observation=tinker.ModelInput.empty(),
            next_stop_condition=self.stop_condition,
            metrics=metrics,
            logs=logs or {},
        )
