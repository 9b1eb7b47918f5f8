"""ProblemEnv as the cookbook's docs use it: a user subclass graded by hand, rolled out on the
local tiny model, and trained one step by this package's RL loop."""

import asyncio
from functools import partial

import chz
import pytest

from tinker_cookbook.completers import TinkerTokenCompleter
from tinker_cookbook.distillation.datasets import PromptEnv
from tinker_cookbook.renderers import get_renderer
from tinker_cookbook.rl import train
from tinker_cookbook.rl.problem_env import ProblemEnv, ProblemGroupBuilder
from tinker_cookbook.rl.rollouts import do_group_rollout
from tinker_cookbook.rl.types import RLDataset, RLDatasetBuilder
from tinker_cookbook.utils.ml_log import read_metrics

MODEL = "tiny-qwen3-1m"


class ArithmeticEnv(ProblemEnv):
    def __init__(self, question: str, answer: str, **kwargs):
        super().__init__(**kwargs)
        self.question, self.answer = question, answer

    def get_question(self) -> str:
        return self.question

    def check_answer(self, sample_str: str) -> bool:
        return self.answer in sample_str

    def check_format(self, sample_str: str) -> bool:
        return sample_str.strip() != ""

    def get_reference_answer(self) -> str:
        return self.answer


@pytest.fixture(scope="module")
def renderer(tokenizer):
    return get_renderer("qwen3", tokenizer)


def reply(renderer, text: str, stopped: bool = True) -> list[int]:
    (stop_token,) = renderer.get_stop_sequences()  # qwen3's end of turn, as a token id
    return renderer.tokenizer.encode(text) + ([stop_token] if stopped else [])


@pytest.mark.parametrize(
    ("text", "stopped", "reward", "fmt", "correct"),
    [
        ("It is 4.", True, 1.0, 1.0, 1.0),
        ("It is 4.", False, 0.9, 0.0, 1.0),  # cut off: the answer counts, the format does not
        ("No idea.", True, 0.0, 1.0, 0.0),
        ("", True, -0.1, 0.0, 0.0),  # check_format rejects an empty reply
        ("<think>\n4\n</think>\n\nNo idea.", True, 0.0, 1.0, 0.0),  # reasoning is not graded
    ],
)
def test_reward_is_format_penalty_plus_correctness(renderer, text, stopped, reward, fmt, correct):
    env = ArithmeticEnv("What is 2 + 2?", "4", renderer=renderer, convo_prefix=[])
    ob, stop = asyncio.run(env.initial_observation())
    assert renderer.tokenizer.decode(ob.to_ints()).endswith(
        "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert stop == renderer.get_stop_sequences()
    result = asyncio.run(env.step(reply(renderer, text, stopped)))
    assert result.episode_done and result.reward == pytest.approx(reward)
    assert result.metrics == {"format": fmt, "correct": correct}
    assert result.logs["reference_answer"] == "4"


def test_group_rolls_out_on_the_local_model(service, renderer):
    sampler = service.create_sampling_client(base_model=MODEL).result()
    builder = ProblemGroupBuilder(
        env_thunk=partial(ArithmeticEnv, "What is 2 + 2?", "4", renderer=renderer),
        num_envs=3,
        dataset_name="arith",
    )
    assert builder.logging_tags() == ["arith"]
    group = asyncio.run(do_group_rollout(builder, TinkerTokenCompleter(sampler, max_tokens=8)))
    assert len(group.trajectories_G) == 3 and group.tags == ["arith"]
    for trajectory, total in zip(group.trajectories_G, group.get_total_rewards(), strict=True):
        (transition,) = trajectory.transitions
        assert 1 <= len(transition.ac.tokens) <= 8
        m = transition.metrics
        assert total == pytest.approx(0.1 * (m["format"] - 1) + m["correct"])


class ArithmeticDataset(RLDataset):
    def __init__(self, renderer, group_size: int):
        self.renderer, self.group_size = renderer, group_size

    def __len__(self) -> int:
        return 1

    def get_batch(self, index: int):
        problems = [("What is 2 + 2?", "4"), ("What is 3 + 5?", "8")]
        return [
            ProblemGroupBuilder(
                env_thunk=partial(ArithmeticEnv, q, a, renderer=self.renderer),
                num_envs=self.group_size,
                dataset_name="arith",
            )
            for q, a in problems
        ]


@chz.chz
class ArithmeticBuilder(RLDatasetBuilder):
    group_size: int = 4

    async def __call__(self):
        from tinker_cookbook.local import get_tokenizer

        return ArithmeticDataset(get_renderer("qwen3", get_tokenizer(MODEL)), self.group_size), None


def test_a_user_problem_env_trains_one_step(tmp_path):
    config = train.Config(
        log_path=str(tmp_path), model_name=MODEL, dataset_builder=ArithmeticBuilder(),
        lora_rank=8, max_tokens=8, max_steps=1, eval_every=0, save_every=0,
    )  # fmt: skip
    asyncio.run(train.main(config))
    (row,) = [r for r in read_metrics(tmp_path) if "env/all/reward/total" in r]
    assert {"env/arith/correct", "env/arith/format", "env/arith/reward/total"} <= set(row)
    assert row["env/arith/num_trajectories"] == 8 and row["optim/num_datums"] > 0


def test_distillation_prompt_env_is_a_problem_env_without_reward(renderer):
    messages = [{"role": "system", "content": "Box it."}, {"role": "user", "content": "2 + 2?"}]
    env = PromptEnv(messages, renderer, answer="4")
    assert isinstance(env, ProblemEnv)
    ob, _ = asyncio.run(env.initial_observation())
    assert ob.to_ints() == renderer.build_generation_prompt(messages).to_ints()
    result = asyncio.run(env.step(reply(renderer, "\\boxed{4}")))
    assert result.reward == 0.0 and result.metrics == {"parse_ok": 1.0, "correct": 1.0}
    unknown = PromptEnv(messages, renderer)
    assert asyncio.run(unknown.step(reply(renderer, "hm", False))).metrics == {"parse_ok": 0.0}
