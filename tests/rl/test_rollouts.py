"""Rollouts: groups run concurrently; a failing environment is reported, not hung."""

import asyncio
from types import SimpleNamespace

import pytest
from tinker import types

from tinker_cookbook.rl.rollouts import GroupRolloutError, do_group_rollouts
from tinker_cookbook.rl.types import Env, EnvGroupBuilder, StepResult, TokensWithLogprobs


class CountingEnv(Env):
    def __init__(self, turns: int, fail: bool = False):
        self.turns, self.fail, self.seen = turns, fail, 0

    async def initial_observation(self):
        return types.ModelInput.from_ints([1]), [0]

    async def step(self, action):
        if self.fail:
            raise ValueError("sandbox exploded")
        self.seen += 1
        done = self.seen >= self.turns
        return StepResult(
            float(len(action)),
            done,
            types.ModelInput.from_ints([1, *action]),
            [0],
            {"turn": self.seen},
        )


class Builder(EnvGroupBuilder):
    def __init__(self, fail=False):
        self.fail, self.cleaned = fail, False

    async def make_envs(self):
        return [CountingEnv(2, self.fail) for _ in range(3)]

    async def cleanup(self):
        self.cleaned = True

    def logging_tags(self):
        return ["broken" if self.fail else "fine"]


async def policy(observation, stop):
    await asyncio.sleep(0)
    return TokensWithLogprobs([7, 8], [-1.0, -1.0])


def test_failing_group_is_reported_and_others_complete():
    builders = [Builder(), Builder(fail=True), Builder()]
    groups, errors = asyncio.run(asyncio.wait_for(do_group_rollouts(builders, policy), timeout=10))
    assert groups[1] is None and len(errors) == 1
    assert "env group broken failed: ValueError: sandbox exploded" in errors[0]
    assert all(b.cleaned for b in builders)  # cleanup runs on failure too
    ok = groups[0]
    assert len(ok.trajectories_G) == 3
    assert all(len(t.transitions) == 2 for t in ok.trajectories_G)
    assert ok.get_total_rewards() == [4.0, 4.0, 4.0]


def test_rollout_error_type():
    with pytest.raises(GroupRolloutError):
        from tinker_cookbook.rl.rollouts import do_group_rollout

        asyncio.run(do_group_rollout(Builder(fail=True), policy))


class SeedEchoSampler:
    """Answers each request with one token: its seed (mod 1000), after a delay that varies
    from call to call, so concurrent episodes ask in a different order on every run."""

    def __init__(self, delays: list[float]):
        self.delays, self.calls = delays, 0

    async def sample_async(self, prompt, num_samples, sampling_params):
        delay = self.delays[self.calls % len(self.delays)]
        self.calls += 1
        await asyncio.sleep(delay)
        token = sampling_params.seed % 1000
        seq = SimpleNamespace(stop_reason="stop", tokens=[token], logprobs=[-0.5])
        return SimpleNamespace(sequences=[seq])


def sampled_seeds(delays: list[float]) -> list[list[list[int]]]:
    from tinker_cookbook.completers import TinkerTokenCompleter

    policy = TinkerTokenCompleter(SeedEchoSampler(delays), max_tokens=4, seed=7)
    groups, errors = asyncio.run(do_group_rollouts([Builder(), Builder()], policy))
    assert not errors
    return [
        [[t.ac.tokens[0] for t in traj.transitions] for traj in g.trajectories_G] for g in groups
    ]


def test_episode_seeds_depend_on_position_not_on_which_coroutine_asks_first():
    fast_first = sampled_seeds([0.0, 0.01, 0.002, 0.005])
    slow_first = sampled_seeds([0.01, 0.0, 0.004, 0.0, 0.007])
    assert fast_first == slow_first
    seeds = [s for group in fast_first for episode in group for s in episode]
    assert len(set(seeds)) == len(seeds) == 12  # every episode and turn its own stream
