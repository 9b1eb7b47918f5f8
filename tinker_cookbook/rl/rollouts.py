"""Run a policy in environments; groups of episodes run concurrently."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, runtime_checkable

from tinker_cookbook.clients import SamplingClientLike
from tinker_cookbook.completers import StopCondition, TinkerTokenCompleter, TokenCompleter
from tinker_cookbook.rl.types import (
    STOP_METRIC_PREFIX,
    ActionExtra,
    Env,
    EnvGroupBuilder,
    Metrics,
    Observation,
    StepResult,
    TokensWithLogprobs,
    Trajectory,
    TrajectoryGroup,
    Transition,
)

logger = logging.getLogger(__name__)

Policy = TokenCompleter | Callable[[Observation, StopCondition], Awaitable[TokensWithLogprobs]]
"""A TokenCompleter, or any async function of (observation, stop) with the same result."""


@runtime_checkable
class PerEpisodePolicy(Protocol):
    """A policy that hands each episode a copy of its own (e.g. seeded by the episode's
    position), so what an episode samples does not depend on which coroutine asked first."""

    def for_episode(self, *position: int) -> Policy: ...


def episode_policy(policy: Policy, *position: int) -> Policy:
    return policy.for_episode(*position) if isinstance(policy, PerEpisodePolicy) else policy


class GroupRolloutError(RuntimeError):
    """An environment group failed; the message names it and carries the cause."""


def accepts_extra(env: Env) -> bool:
    """Whether `env.step` takes `extra` (envs written as `step(self, action)` do not)."""
    params = inspect.signature(env.step).parameters.values()
    return any(p.name == "extra" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


async def _step(env: Env, action: TokensWithLogprobs, with_extra: bool) -> StepResult:
    if with_extra:
        return await env.step(action.tokens, extra=ActionExtra(stop_reason=action.stop_reason))
    return await env.step(action.tokens)


def stop_reason_of(metrics: Metrics) -> str | None:
    """The `stop/<reason>` an env reported on its last step, if any."""
    for key, value in metrics.items():
        if key.startswith(STOP_METRIC_PREFIX) and value:
            return key.removeprefix(STOP_METRIC_PREFIX)
    return None


async def do_single_rollout(policy: Policy, env: Env) -> Trajectory:
    """Sample and step until the env says the episode is done."""
    transitions: list[Transition] = []
    with_extra = accepts_extra(env)
    ob, stop = await env.initial_observation()
    while True:
        action = await policy(ob, stop)
        step = await _step(env, action, with_extra)
        transitions.append(
            Transition(ob, action, step.reward, step.episode_done, step.metrics, step.logs)
        )
        ob, stop = step.next_observation, step.next_stop_condition
        if step.episode_done:
            return Trajectory(transitions, ob, stop_reason_of(step.metrics))


async def do_group_rollout(
    env_group_builder: EnvGroupBuilder, policy: Policy, group_index: int = 0
) -> TrajectoryGroup:
    """All episodes of one group, concurrently; the builder is cleaned up whatever happens.
    Episode i of the group samples with `policy.for_episode(group_index, i)` when the policy
    offers it."""
    builder = env_group_builder
    try:
        envs = await builder.make_envs()
        trajectories = await _run_all(policy, envs, group_index)
        scored = await builder.compute_group_rewards(trajectories, envs)
    except Exception as exc:
        tags = ",".join(builder.logging_tags()) or type(builder).__name__
        raise GroupRolloutError(f"env group {tags} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        try:
            await builder.cleanup()
        except Exception:  # noqa: BLE001 - a failed cleanup must not hide the rollout's result
            logger.exception("cleanup of %s failed", type(builder).__name__)
    return TrajectoryGroup(
        trajectories_G=trajectories,
        final_rewards_G=[r for r, _ in scored],
        metrics_G=[m for _, m in scored],
        tags=builder.logging_tags(),
    )


async def _run_all(policy: Policy, envs: Sequence[Env], group_index: int) -> list[Trajectory]:
    tasks = [
        asyncio.create_task(do_single_rollout(episode_policy(policy, group_index, i), env))
        for i, env in enumerate(envs)
    ]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:  # stop the siblings before cleanup removes what they use
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def do_group_rollouts(
    builders: Sequence[EnvGroupBuilder], policy: Policy
) -> tuple[list[TrajectoryGroup | None], list[str]]:
    """Every group at once. A failed group comes back as None with its error message, so one
    broken environment costs its group, not the run."""
    results = await asyncio.gather(
        *[do_group_rollout(b, policy, i) for i, b in enumerate(builders)],
        return_exceptions=True,
    )
    errors: list[str] = []
    groups: list[TrajectoryGroup | None] = []
    for result in results:
        if isinstance(result, GroupRolloutError):
            logger.error("%s", result)
            errors.append(str(result))
            groups.append(None)
        elif isinstance(result, BaseException):
            raise result
        else:
            groups.append(result)
    return groups, errors


async def do_group_rollout_and_filter_constant_reward(
    sampling_client: SamplingClientLike,
    env_group_builder: EnvGroupBuilder,
    max_tokens: int,
    temperature: float,
    do_remove_constant_reward_groups: bool,
    enable_logging: bool = True,
) -> TrajectoryGroup | None:
    """One group sampled from `sampling_client`; None when asked to drop a group whose
    trajectories all earned the same reward (its centred advantages are all zero)."""
    policy = TinkerTokenCompleter(sampling_client, max_tokens, temperature)
    group = await do_group_rollout(env_group_builder, policy)
    rewards = group.get_total_rewards()
    if do_remove_constant_reward_groups and len(set(rewards)) <= 1:
        if enable_logging:
            logger.info("dropping a group whose rewards are all %s", rewards[:1])
        return None
    return group
