"""The cookbook's RL types: constructor field names, and envs written either way (`step` with
or without `extra`) roll out."""

import asyncio

import pytest
from tinker import types

from tinker_cookbook.completers import TokensWithLogprobs
from tinker_cookbook.rl.rollouts import do_group_rollout, do_single_rollout
from tinker_cookbook.rl.types import (
    Env,
    EnvGroupBuilder,
    StepResult,
    StopReason,
    Trajectory,
    TrajectoryGroup,
    Transition,
)


async def policy(observation, stop):
    return TokensWithLogprobs([7, 8, 9], [-1.0] * 3, stop_reason="length")


def done(reward: float, metrics=None) -> StepResult:
    return StepResult(
        reward=reward,
        episode_done=True,
        next_observation=types.ModelInput.empty(),
        next_stop_condition=[],
        metrics=metrics or {},
        logs={"note": "seen"},
    )


class NoExtraEnv(Env):
    """Written as older user code writes it: `step(self, action)`."""

    async def initial_observation(self):
        return types.ModelInput.from_ints([1, 2]), [0]

    async def step(self, action):
        return done(float(len(action)))


class ExtraEnv(Env):
    def __init__(self):
        self.extra = None

    async def initial_observation(self):
        return types.ModelInput.from_ints([1, 2]), [0]

    async def step(self, action, *, extra=None):
        self.extra = extra
        return done(1.0, {f"stop/{StopReason.MAX_TOKENS}": 1.0})


def test_cookbook_field_names_and_total_rewards():
    ob = types.ModelInput.from_ints([1, 2])
    ac = TokensWithLogprobs(tokens=[3], maybe_logprobs=[-0.5])
    transition = Transition(ob=ob, ac=ac, reward=1.0, episode_done=True, logs={"a": "b"})
    trajectory = Trajectory(transitions=[transition], final_ob=types.ModelInput.empty())
    group = TrajectoryGroup(
        trajectories_G=[trajectory, trajectory], final_rewards_G=[0.5, -1.0], metrics_G=[{}, {}]
    )
    assert group.get_total_rewards() == [1.5, 0.0]
    assert group.rollout_errors == [] and trajectory.stop_reason is None
    assert ac.logprobs == [-0.5] and ac.stop_reason == "stop"
    with pytest.raises(ValueError, match="no logprobs"):
        _ = TokensWithLogprobs([3], None).logprobs


def test_env_whose_step_has_no_extra_rolls_out():
    trajectory = asyncio.run(do_single_rollout(policy, NoExtraEnv()))
    (transition,) = trajectory.transitions
    assert transition.reward == 3.0 and transition.ac.tokens == [7, 8, 9]
    assert transition.ob.to_ints() == [1, 2] and transition.logs == {"note": "seen"}


def test_env_with_extra_gets_the_stop_reason_and_reports_why_it_stopped():
    env = ExtraEnv()
    trajectory = asyncio.run(do_single_rollout(policy, env))
    assert env.extra == {"stop_reason": "length"}
    assert trajectory.stop_reason == StopReason.MAX_TOKENS


class PairwiseBuilder(EnvGroupBuilder):
    """Overrides the group reward with the cookbook's argument names."""

    async def make_envs(self):
        return [NoExtraEnv(), ExtraEnv()]

    async def compute_group_rewards(self, trajectory_group, env_group):
        assert [type(e) for e in env_group] == [NoExtraEnv, ExtraEnv]
        return [(float(i), {"rank": i}) for i in range(len(trajectory_group))]

    def logging_tags(self):
        return ["pairs"]


def test_group_rollout_fills_the_cookbook_group_fields():
    group = asyncio.run(do_group_rollout(PairwiseBuilder(), policy))
    assert group.final_rewards_G == [0.0, 1.0] and group.metrics_G == [{"rank": 0}, {"rank": 1}]
    assert group.get_total_rewards() == [3.0, 2.0] and group.tags == ["pairs"]
