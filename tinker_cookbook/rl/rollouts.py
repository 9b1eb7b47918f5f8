"""Run a policy in environments; groups of episodes run concurrently."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from tinker import types

from tinker_cookbook.rl.types import (
    Env,
    EnvGroupBuilder,
    StopCondition,
    TokensWithLogprobs,
    Trajectory,
    TrajectoryGroup,
    Transition,
)

logger = logging.getLogger(__name__)

TokenCompleter = Callable[[types.ModelInput, StopCondition], Awaitable[TokensWithLogprobs]]


class SamplingClientCompleter:
    """A TokenCompleter over a (Tinker-API) sampling client."""

    def __init__(
        self, sampling_client, max_tokens: int, temperature: float = 1.0, seed: int | None = None
    ):
        self.sampling_client = sampling_client
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.seed = seed  # each request gets its own seed derived from this one: reproducible
        self.requests = 0

    async def __call__(
        self, observation: types.ModelInput, stop: StopCondition
    ) -> TokensWithLogprobs:
        seed = None if self.seed is None else (self.seed * 1_000_003 + self.requests) % 2**31
        self.requests += 1
        params = types.SamplingParams(
            max_tokens=self.max_tokens, temperature=self.temperature, stop=stop, seed=seed
        )
        result = await self.sampling_client.sample(observation, 1, params)
        seq = result.sequences[0]
        return TokensWithLogprobs(
            tokens=list(seq.tokens), logprobs=seq.logprobs, stop_reason=seq.stop_reason
        )


class RolloutError(RuntimeError):
    """An environment group failed; the message names it and carries the cause."""


async def do_single_rollout(policy: TokenCompleter, env: Env) -> Trajectory:
    transitions = []
    observation, stop = await env.initial_observation()
    while True:
        action = await policy(observation, stop)
        step = await env.step(action.tokens)
        transitions.append(
            Transition(observation, action, step.reward, step.episode_done, step.metrics)
        )
        observation, stop = step.next_observation, step.next_stop_condition
        if step.episode_done:
            return Trajectory(transitions, observation)


async def do_group_rollout(builder: EnvGroupBuilder, policy: TokenCompleter) -> TrajectoryGroup:
    """All episodes of one group, concurrently; the builder is cleaned up whatever happens."""
    try:
        envs = await builder.make_envs()
        tasks = [asyncio.create_task(do_single_rollout(policy, env)) for env in envs]
        try:
            trajectories = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:  # stop the siblings before cleanup removes what they use
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        group = await builder.compute_group_rewards(list(trajectories), envs)
    except Exception as exc:
        tags = ",".join(builder.logging_tags()) or type(builder).__name__
        raise RolloutError(f"env group {tags} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        try:
            await builder.cleanup()
        except Exception:  # noqa: BLE001 - a failed cleanup must not hide the rollout's result
            logger.exception("cleanup of %s failed", type(builder).__name__)
    return TrajectoryGroup(
        trajectories=list(trajectories),
        final_rewards=[r for r, _ in group],
        metrics=[m for _, m in group],
        tags=builder.logging_tags(),
    )


async def do_group_rollouts(
    builders: list[EnvGroupBuilder], policy: TokenCompleter
) -> tuple[list[TrajectoryGroup | None], list[str]]:
    """Every group at once. A failed group comes back as None with its error message, so one
    broken environment costs its group, not the run."""
    results = await asyncio.gather(
        *[do_group_rollout(b, policy) for b in builders], return_exceptions=True
    )
    errors = []
    groups: list[TrajectoryGroup | None] = []
    for result in results:
        if isinstance(result, BaseException):
            if not isinstance(result, RolloutError):
                raise result
            logger.error("%s", result)
            errors.append(str(result))
            groups.append(None)
        else:
            groups.append(result)
    return groups, errors
