"""Prompt datasets for on-policy distillation: DeepMath questions, Tulu3 first user turns.

Each row becomes a group of single-turn environments that return no reward (the teacher's KL
is the whole signal); DeepMath's `final_answer` is still graded and logged as `correct`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Any

import chz
from tinker import types

from tinker_cookbook.eval.answer_grading import extract_boxed, grade_answer
from tinker_cookbook.eval.evaluators import EvaluatorBuilder, MathPassAtOneEvaluator
from tinker_cookbook.local.models import get_tokenizer
from tinker_cookbook.renderers import Message, Renderer, get_recommended_renderer_name, get_renderer
from tinker_cookbook.rl.types import (
    Env,
    EnvGroupBuilder,
    RLDataset,
    RLDatasetBuilder,
    StepResult,
    StopCondition,
)
from tinker_cookbook.utils.local_rows import BadRowError, LocalRows

logger = logging.getLogger(__name__)

HF_DATASETS = {"deepmath": "zwhe99/DeepMath-103K", "tulu3": "allenai/tulu-3-sft-mixture"}


class PromptEnv(Env):
    """One sampled reply to a fixed conversation; reward 0, correctness logged if known."""

    def __init__(self, messages: list[Message], renderer: Renderer, answer: str | None = None):
        self.messages, self.renderer, self.answer = messages, renderer, answer

    async def initial_observation(self) -> tuple[types.ModelInput, StopCondition]:
        return self.renderer.build_generation_prompt(
            self.messages
        ), self.renderer.get_stop_sequences()

    async def step(self, action: list[int]) -> StepResult:
        message, ok = self.renderer.parse_response(action)
        metrics = {"parse_ok": float(ok)}
        if self.answer is not None:
            metrics["correct"] = float(grade_answer(extract_boxed(message["content"]), self.answer))
        return StepResult(0.0, True, types.ModelInput.empty(), [], metrics)


class PromptEnvGroupBuilder(EnvGroupBuilder):
    def __init__(
        self,
        messages: list[Message],
        renderer: Renderer,
        group_size: int,
        answer: str | None,
        tag: str,
    ):
        self.messages, self.renderer, self.group_size, self.answer, self.tag = (
            messages,
            renderer,
            group_size,
            answer,
            tag,
        )

    async def make_envs(self) -> Sequence[Env]:
        return [
            PromptEnv(self.messages, self.renderer, self.answer) for _ in range(self.group_size)
        ]

    def logging_tags(self) -> list[str]:
        return [self.tag]


class PromptDataset(RLDataset):
    def __init__(
        self,
        prompts: list[tuple[list[Message], str | None]],
        renderer: Renderer,
        groups_per_batch: int,
        group_size: int,
        tag: str,
    ):
        self.prompts, self.renderer, self.tag = prompts, renderer, tag
        self.groups_per_batch, self.group_size = groups_per_batch, group_size

    def __len__(self) -> int:
        return max(len(self.prompts) // self.groups_per_batch, 1)

    def get_batch(self, index: int) -> list[PromptEnvGroupBuilder]:
        start = (index * self.groups_per_batch) % len(self.prompts)
        chosen = [
            self.prompts[(start + i) % len(self.prompts)] for i in range(self.groups_per_batch)
        ]
        return [
            PromptEnvGroupBuilder(m, self.renderer, self.group_size, a, self.tag) for m, a in chosen
        ]


def deepmath_prompt(
    row: dict[str, Any], where: str, system_prompt: str | None
) -> tuple[list[Message], str | None]:
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise BadRowError(f"{where}: field 'question' is missing or empty")
    messages: list[Message] = (
        [{"role": "system", "content": system_prompt}] if system_prompt else []
    )
    answer = row.get("final_answer")
    return messages + [{"role": "user", "content": question}], None if answer is None else str(
        answer
    )


def tulu3_prompt(
    row: dict[str, Any], where: str, system_prompt: str | None
) -> tuple[list[Message], str | None]:
    turns = row.get("messages")
    if not isinstance(turns, list):
        raise BadRowError(f"{where}: field 'messages' is missing or not a list")
    first = next((t for t in turns if isinstance(t, dict) and t.get("role") == "user"), None)
    if first is None or not isinstance(first.get("content"), str) or not first["content"].strip():
        raise BadRowError(f"{where}: field 'messages' has no non-empty user message")
    messages: list[Message] = (
        [{"role": "system", "content": system_prompt}] if system_prompt else []
    )
    return messages + [{"role": "user", "content": first["content"]}], None


PROMPT_READERS = {"deepmath": deepmath_prompt, "tulu3": tulu3_prompt}


@chz.chz
class PromptDatasetBuilder(RLDatasetBuilder):
    """DeepMath or Tulu3 prompts, from Hugging Face or a local file of the same schema,
    shuffled with `seed`; prompts longer than `max_prompt_tokens` are skipped and counted."""

    dataset: str = "deepmath"  # deepmath | tulu3
    model_name_for_tokenizer: str
    dataset_path: str | None = None
    renderer_name: str | None = None
    groups_per_batch: int = 64
    group_size: int = 4
    max_prompt_tokens: int = 1024
    max_rows: int = 100_000  # rows read from Hugging Face (streamed)
    test_size: int = 0
    seed: int = 0
    system_prompt: str | None = None
    skip_bad_rows: bool = False

    def renderer(self) -> Renderer:
        name = self.renderer_name or get_recommended_renderer_name(self.model_name_for_tokenizer)
        return get_renderer(name, get_tokenizer(self.model_name_for_tokenizer))

    def _rows(self) -> tuple[Sequence[dict[str, Any]], Any]:
        if self.dataset_path:
            rows = LocalRows(self.dataset_path)
            return rows, rows.where
        import datasets

        stream = datasets.load_dataset(HF_DATASETS[self.dataset], split="train", streaming=True)
        rows = list(stream.take(self.max_rows))
        return rows, lambda i: f"{HF_DATASETS[self.dataset]} row {i}"

    def load_prompts(self) -> list[tuple[list[Message], str | None]]:
        if self.dataset not in PROMPT_READERS:
            raise ValueError(f"dataset={self.dataset!r} is not one of {sorted(PROMPT_READERS)}")
        read, renderer = PROMPT_READERS[self.dataset], self.renderer()
        rows, where = self._rows()
        prompts, skipped, too_long = [], 0, 0
        for i in range(len(rows)):
            try:
                messages, answer = read(rows[i], where(i), self.system_prompt)
            except BadRowError:
                if not self.skip_bad_rows:
                    raise
                skipped += 1
                continue
            if renderer.build_generation_prompt(messages).length > self.max_prompt_tokens:
                too_long += 1
                continue
            prompts.append((messages, answer))
        if skipped or too_long:
            logger.warning(
                "%s: skipped %d malformed rows and %d prompts over %d tokens",
                self.dataset,
                skipped,
                too_long,
                self.max_prompt_tokens,
            )
        random.Random(self.seed).shuffle(prompts)
        if len(prompts) <= self.test_size:
            raise ValueError(
                f"{self.dataset}: only {len(prompts)} usable prompts, test_size={self.test_size}"
            )
        return prompts

    async def __call__(self) -> tuple[PromptDataset, PromptDataset | None]:
        prompts, renderer = self.load_prompts(), self.renderer()
        test, train = prompts[: self.test_size], prompts[self.test_size :]
        made = [
            PromptDataset(ps, renderer, self.groups_per_batch, self.group_size, self.dataset)
            if ps
            else None
            for ps in (train, test)
        ]
        return made[0], made[1]


@chz.chz
class HeldOutMathEvalBuilder(EvaluatorBuilder):
    """pass@1 on the prompt dataset's own held-out split (`prompts.test_size` problems with
    known answers), so evaluation never needs data beyond the training source."""

    prompts: PromptDatasetBuilder
    n_samples: int = 4
    max_tokens: int = 1024
    temperature: float = 1.0

    def __call__(self) -> MathPassAtOneEvaluator:
        held_out = self.prompts.load_prompts()[: self.prompts.test_size]
        problems = [(m, a) for m, a in held_out if a is not None]
        if not problems:
            raise ValueError(
                f"{self.prompts.dataset}: the held-out split has no problems with answers to grade"
            )
        return MathPassAtOneEvaluator(
            f"{self.prompts.dataset}_heldout",
            problems,
            self.prompts.renderer(),
            self.n_samples,
            self.max_tokens,
            self.temperature,
        )
