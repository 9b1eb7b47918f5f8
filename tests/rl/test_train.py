"""The RL loop learns from environment rewards alone (group-centred advantages)."""

import asyncio

import chz
from tinker import types

from tinker_cookbook.local import get_tokenizer
from tinker_cookbook.rl import train
from tinker_cookbook.rl.types import Env, EnvGroupBuilder, RLDataset, RLDatasetBuilder, StepResult
from tinker_cookbook.utils.ml_log import read_metrics

TARGET = ord("a")  # byte-level tiny tokenizer: token 97 is "a"


class SayAEnv(Env):
    """Reward: the fraction of sampled tokens that are 'a'."""

    async def initial_observation(self):
        tok = get_tokenizer("tiny-qwen3-1m")
        return types.ModelInput.from_ints(
            tok.encode("<|im_start|>user\nsay a<|im_end|>\n<|im_start|>assistant\n")
        ), []

    async def step(self, action):
        reward = sum(t == TARGET for t in action) / max(len(action), 1)
        return StepResult(reward, True, types.ModelInput.empty(), [], {"frac_a": reward})


class Group(EnvGroupBuilder):
    async def make_envs(self):
        return [SayAEnv() for _ in range(8)]


class Dataset(RLDataset):
    def __len__(self):
        return 1000

    def get_batch(self, index):
        return [Group() for _ in range(4)]


@chz.chz
class SayABuilder(RLDatasetBuilder):
    async def __call__(self):
        return Dataset(), None


def test_reward_rises(tmp_path):
    config = train.Config(
        log_path=str(tmp_path), model_name="tiny-qwen3-1m", dataset_builder=SayABuilder(),
        learning_rate=1e-2, lora_rank=8, max_tokens=8, max_steps=15, eval_every=0, save_every=0,
    )  # fmt: skip
    asyncio.run(train.main(config))
    rewards = [
        r["env/all/reward/total"] for r in read_metrics(tmp_path) if "env/all/reward/total" in r
    ]
    assert len(rewards) == 15
    assert sum(rewards[-3:]) / 3 > sum(rewards[:3]) / 3 + 0.3


class Ungraded(Group):
    def __init__(self, error: str | None):
        self.error = error

    def grading_errors(self):
        return [self.error] if self.error else []


def test_ungraded_groups_are_dropped_and_a_mostly_ungraded_step_stops(capsys):
    import pytest

    builders = [
        Ungraded(None),
        Ungraded("task 'b': RewardFileNotFoundError: no reward"),
        Ungraded(None),
    ]
    groups, errors = ["g0", "g1", "g2"], []
    assert train.drop_ungraded_groups(builders, groups, errors, step=3) == ["g0", None, "g2"]
    assert errors == ["grading error: task 'b': RewardFileNotFoundError: no reward"]
    assert "step 3: dropped 1 group(s)" in capsys.readouterr().out
    builders = [Ungraded("task 'x': timed out"), Ungraded("task 'y': crash"), Ungraded(None)]
    with pytest.raises(
        train.GradingFailure, match=r"2 of 3 groups .*tasks: x, y.*first error: task 'x': timed out"
    ):
        train.drop_ungraded_groups(builders, ["a", "b", "c"], [], step=0)


def test_rerun_with_more_steps_continues_and_says_so(tmp_path, capsys):
    def run(max_steps: int) -> dict:
        config = train.Config(
            log_path=str(tmp_path), model_name="tiny-qwen3-1m", dataset_builder=SayABuilder(),
            lora_rank=8, max_tokens=4, max_steps=max_steps, eval_every=0, save_every=0,
        )  # fmt: skip
        return asyncio.run(train.main(config))

    first = run(2)
    capsys.readouterr()
    more = run(3)
    assert "finished at step 2; continuing from its final checkpoint to step 3" in (
        capsys.readouterr().out
    )
    assert more["step"] == 3 and more["state_path"] != first["state_path"]
    steps = [r["step"] for r in read_metrics(tmp_path) if "env/all/reward/total" in r]
    assert steps == [0, 1, 2]
    assert run(3) == more
    assert "already finished at step 3" in capsys.readouterr().out


def test_decide_start_reads_cookbook_batch_records_and_says_what_it_decided(capsys):
    from tinker_cookbook.run_setup import decide_start

    mid = decide_start({"name": "000020", "batch": 20, "state_path": "/x"}, 40, "run")
    assert (mid.kind, mid.step, mid.total) == ("resume", 20, 40)
    assert "resuming at step 20 of 40" in capsys.readouterr().out
    done = decide_start({"name": "final", "batch": 40, "state_path": "/x"}, 40, "run")
    assert (done.kind, done.step) == ("finished", 40)
    assert "already finished at step 40" in capsys.readouterr().out
    more = decide_start({"name": "final", "batch": 40, "state_path": "/x"}, 50, "run")
    assert (more.kind, more.step, more.total) == ("continue", 40, 50)
