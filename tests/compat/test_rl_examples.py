"""The cookbook's documented RL snippets (custom `ProblemEnv`, a `MessageEnv` bridged with
`EnvFromMessageEnv`, a user `RLDatasetBuilder`), trained one step by this package's RL loop on
the built-in tiny model. Written from the cookbook's RL reference."""

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

import chz
import tinker

from tinker_cookbook import model_info
from tinker_cookbook.renderers import get_renderer
from tinker_cookbook.renderers.base import Message
from tinker_cookbook.rl.message_env import EnvFromMessageEnv, MessageEnv, MessageStepResult
from tinker_cookbook.rl.problem_env import ProblemEnv, ProblemGroupBuilder
from tinker_cookbook.rl.train import Config, main
from tinker_cookbook.rl.types import (
    Env,
    EnvGroupBuilder,
    RLDataset,
    RLDatasetBuilder,
    StepResult,
    Trajectory,
    TrajectoryGroup,
    Transition,
)
from tinker_cookbook.tokenizer_utils import get_tokenizer

MODEL = "tiny-qwen3-1m"


class MyMathEnv(ProblemEnv):
    def __init__(self, question: str, answer: str, **kwargs):
        super().__init__(**kwargs)
        self.question, self.answer = question, answer

    def get_question(self) -> str:
        return self.question

    def check_answer(self, sample_str: str) -> bool:
        return self.answer.lower() in sample_str.lower()

    def check_format(self, sample_str: str) -> bool:
        return True

    def get_reference_answer(self) -> str:
        return self.answer


class ProblemDataset(RLDataset):
    def __init__(self, problems, batch_size, group_size, renderer):
        self.problems, self.batch_size, self.group_size = problems, batch_size, group_size
        self.renderer = renderer

    def __len__(self) -> int:
        return max(1, len(self.problems) // self.batch_size)

    def get_batch(self, index: int) -> Sequence[EnvGroupBuilder]:
        start = (index * self.batch_size) % len(self.problems)
        return [
            ProblemGroupBuilder(
                env_thunk=lambda q=q, a=a: MyMathEnv(question=q, answer=a, renderer=self.renderer),
                num_envs=self.group_size,
                dataset_name="my_math",
            )
            for q, a in self.problems[start : start + self.batch_size]
        ]


@chz.chz
class ProblemDatasetBuilder(RLDatasetBuilder):
    batch_size: int = 2
    group_size: int = 2
    model_name: str = MODEL

    async def __call__(self) -> tuple[RLDataset, RLDataset | None]:
        renderer = get_renderer(
            model_info.get_recommended_renderer_name(self.model_name),
            get_tokenizer(self.model_name),
        )
        problems = [("What is 2 + 2?", "4"), ("What is 3 + 5?", "8")]
        return ProblemDataset(problems, self.batch_size, self.group_size, renderer), None


class CalculatorEnv(MessageEnv):
    def __init__(self, question: str, answer: float):
        self.question, self.answer, self.turns = question, answer, 0

    async def initial_observation(self) -> list[Message]:
        return [
            {"role": "system", "content": "Use calc(expr). Answer as: Answer: <number>"},
            {"role": "user", "content": self.question},
        ]

    async def step(self, message: Message) -> MessageStepResult:
        content = message.get("content", "")
        self.turns += 1
        found = re.search(r"Answer:\s*([\d.]+)", content if isinstance(content, str) else "")
        if found:
            correct = abs(float(found.group(1)) - self.answer) < 0.01
            return MessageStepResult(
                reward=float(correct),
                episode_done=True,
                next_messages=[],
                metrics={"correct": float(correct), "turns": self.turns},
            )
        if self.turns < 2:
            return MessageStepResult(
                reward=0.0,
                episode_done=False,
                next_messages=[{"role": "user", "content": "Result: 56088"}],
                metrics={},
            )
        return MessageStepResult(reward=0.0, episode_done=True, next_messages=[], metrics={})


@dataclass(frozen=True)
class CalculatorEnvGroupBuilder(EnvGroupBuilder):
    question: str
    answer: float
    group_size: int
    renderer_name: str
    model_name: str

    async def make_envs(self) -> Sequence[EnvFromMessageEnv]:
        renderer = get_renderer(self.renderer_name, get_tokenizer(self.model_name))
        return [
            EnvFromMessageEnv(
                renderer=renderer,
                message_env=CalculatorEnv(self.question, self.answer),
                max_trajectory_tokens=4096,
            )
            for _ in range(self.group_size)
        ]

    def logging_tags(self) -> list[str]:
        return ["calculator"]


class CalculatorDataset(RLDataset):
    def __init__(self, problems, batch_size, group_size, renderer_name, model_name):
        self.problems, self.batch_size, self.group_size = problems, batch_size, group_size
        self.renderer_name, self.model_name = renderer_name, model_name

    def __len__(self) -> int:
        return max(1, len(self.problems) // self.batch_size)

    def get_batch(self, batch_idx: int):
        start = (batch_idx * self.batch_size) % len(self.problems)
        return [
            CalculatorEnvGroupBuilder(q, a, self.group_size, self.renderer_name, self.model_name)
            for q, a in self.problems[start : start + self.batch_size]
        ]


@chz.chz
class CalculatorDatasetBuilder(RLDatasetBuilder):
    batch_size: int = 2
    group_size: int = 2
    renderer_name: str = "qwen3"
    model_name: str = MODEL

    async def __call__(self):
        problems = [("What is 123 * 456?", 56088), ("What is 789 + 321?", 1110)]
        dataset = CalculatorDataset(
            problems, self.batch_size, self.group_size, self.renderer_name, self.model_name
        )
        return dataset, None


def train_one_step(tmp_path, dataset_builder) -> list[dict]:
    renderer_name = model_info.get_recommended_renderer_name(MODEL)
    config = Config(
        learning_rate=1e-4,
        dataset_builder=dataset_builder,
        model_name=MODEL,
        renderer_name=renderer_name,
        lora_rank=8,
        max_tokens=12,
        log_path=str(tmp_path),
        max_steps=1,
    )
    asyncio.run(main(config))
    return [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]


def test_documented_problem_env_trains_one_step(tmp_path, isolated_cache):
    rows = train_one_step(tmp_path, ProblemDatasetBuilder())
    step = next(row for row in rows if "env/all/reward/total" in row)
    assert "env/my_math/correct" in step or "env/all/correct" in step, sorted(step)


def test_documented_message_env_trains_one_step(tmp_path, isolated_cache):
    renderer_name = model_info.get_recommended_renderer_name(MODEL)
    rows = train_one_step(tmp_path, CalculatorDatasetBuilder(renderer_name=renderer_name))
    step = next(row for row in rows if "env/all/reward/total" in row)
    assert "env/calculator/reward/total" in step, sorted(step)


def test_cookbook_type_fields():
    ob = tinker.ModelInput.from_ints([1, 2])
    result = StepResult(
        reward=1.0,
        episode_done=True,
        next_observation=tinker.ModelInput.empty(),
        next_stop_condition=[],
        metrics={"accuracy": 1.0},
        logs={"detail": "seen"},
    )
    assert result.logs == {"detail": "seen"}
    from tinker_cookbook.completers import TokensWithLogprobs

    ac = TokensWithLogprobs(tokens=[3], maybe_logprobs=[-0.5])
    transition = Transition(ob=ob, ac=ac, reward=1.0, episode_done=True)
    trajectory = Trajectory(transitions=[transition], final_ob=ob)
    group = TrajectoryGroup(trajectories_G=[trajectory], final_rewards_G=[0.5], metrics_G=[{}])
    assert group.get_total_rewards() == [1.5]


def test_an_env_whose_step_has_no_extra_still_rolls_out(service):
    from tinker_cookbook.rl.rollouts import do_single_rollout

    class OldStyleEnv(Env):
        async def initial_observation(self):
            return tinker.ModelInput.from_ints([1, 2, 3]), [0]

        async def step(self, action):
            return StepResult(
                reward=float(len(action)),
                episode_done=True,
                next_observation=tinker.ModelInput.empty(),
                next_stop_condition=[],
            )

    from tinker_cookbook.completers import TinkerTokenCompleter

    sampler = service.create_sampling_client(base_model=MODEL)
    policy = TinkerTokenCompleter(sampler, max_tokens=3)
    trajectory = asyncio.run(do_single_rollout(policy, OldStyleEnv()))
    assert len(trajectory.transitions) == 1
    assert trajectory.transitions[0].reward == len(trajectory.transitions[0].ac.tokens)
