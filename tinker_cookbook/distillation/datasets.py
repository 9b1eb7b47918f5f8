"""What an on-policy distillation run is made of: `TeacherConfig`, `DistillationDatasetConfig`
(a dataset and its teacher), and prompt datasets (DeepMath questions, Tulu3 first user turns).

Each row becomes a group of single-turn environments that return no reward (the teacher's KL
is the whole signal); DeepMath's `final_answer` is still graded and logged as `correct`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import chz

from tinker_cookbook.eval.answer_grading import extract_boxed, grade_answer
from tinker_cookbook.eval.evaluators import EvaluatorBuilder, MathPassAtOneEvaluator
from tinker_cookbook.local.models import get_tokenizer
from tinker_cookbook.renderers import Message, Renderer, get_recommended_renderer_name, get_renderer
from tinker_cookbook.renderers.messages import get_text_content
from tinker_cookbook.rl.problem_env import ProblemEnv
from tinker_cookbook.rl.types import (
    Action,
    ActionExtra,
    Env,
    EnvGroupBuilder,
    GroupIndexedDataset,
    RLDatasetBuilder,
    StepResult,
)
from tinker_cookbook.utils.local_rows import BadRowError, LocalRows

logger = logging.getLogger(__name__)

HF_DATASETS = {"deepmath": "zwhe99/DeepMath-103K", "tulu3": "allenai/tulu-3-sft-mixture"}


class PromptEnv(ProblemEnv):
    """One sampled reply to a fixed conversation ending in a user turn. Reward 0 (the teacher's
    KL is the whole signal); whether the reply parsed, and its correctness when the answer is
    known, are logged as `parse_ok` and `correct`."""

    def __init__(self, messages: list[Message], renderer: Renderer, answer: str | None = None):
        if not messages or messages[-1]["role"] != "user":
            raise ValueError("PromptEnv needs a conversation that ends with a user message")
        super().__init__(renderer, messages[:-1], 0.0, require_stop_sequence_for_format=False)
        self.messages, self.answer = messages, answer

    def conversation(self) -> list[Message]:
        return self.messages

    def get_question(self) -> str:
        return get_text_content(self.messages[-1])

    def check_answer(self, sample_str: str) -> bool:
        return self.answer is not None and grade_answer(extract_boxed(sample_str), self.answer)

    def check_format(self, sample_str: str) -> bool:
        return True

    def get_reference_answer(self) -> str:
        return self.answer or ""

    async def step(self, action: Action, *, extra: ActionExtra | None = None) -> StepResult:
        graded = await super().step(action, extra=extra)
        metrics = {"parse_ok": graded.metrics["format"]}
        if self.answer is not None:
            metrics["correct"] = graded.metrics["correct"]
        return replace(graded, reward=0.0, next_stop_condition=[], metrics=metrics)


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


class PromptDataset(GroupIndexedDataset):
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

    def num_groups(self) -> int:
        return len(self.prompts)

    def get_group(self, index: int) -> PromptEnvGroupBuilder:
        messages, answer = self.prompts[index]
        return PromptEnvGroupBuilder(messages, self.renderer, self.group_size, answer, self.tag)


def deepmath_prompt(row: dict[str, Any], where: str) -> tuple[str, str | None]:
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise BadRowError(f"{where}: field 'question' is missing or empty")
    answer = row.get("final_answer")
    return question, None if answer is None else str(answer)


def tulu3_prompt(row: dict[str, Any], where: str) -> tuple[str, str | None]:
    turns = row.get("messages")
    if not isinstance(turns, list):
        raise BadRowError(f"{where}: field 'messages' is missing or not a list")
    first = next((t for t in turns if isinstance(t, dict) and t.get("role") == "user"), None)
    if first is None or not isinstance(first.get("content"), str) or not first["content"].strip():
        raise BadRowError(f"{where}: field 'messages' has no non-empty user message")
    return first["content"], None


PROMPT_READERS = {"deepmath": deepmath_prompt, "tulu3": tulu3_prompt}


@chz.chz
class TeacherConfig:
    """The model that scores the student's tokens: a base model, optionally fine-tuned weights.

    `renderer_name`/`system_prompt` let it see single-turn prompts in its own chat format or
    with its own system prompt (it must share the student's tokenizer). Left unset, a teacher
    checkpoint trained with another renderer than the student's is given that one."""

    base_model: str
    load_checkpoint_path: str | None = None
    renderer_name: str | None = None
    system_prompt: str | None = None

    def describe(self) -> str:
        return self.base_model + (
            f" @ {self.load_checkpoint_path}" if self.load_checkpoint_path else ""
        )


@chz.chz
class DistillationDatasetConfig:
    """One dataset of a distillation run, its teacher, and how many of its groups each batch
    takes (several of these make a multi-teacher run)."""

    dataset_builder: RLDatasetBuilder
    teacher_config: TeacherConfig
    groups_per_batch: int
    name: str | None = None  # for metrics; default: the builder's dataset name or its index


@chz.chz
class PromptOnlyDatasetBuilder(RLDatasetBuilder):
    """DeepMath questions or Tulu3 first user turns as single-turn prompts with no reward, from
    Hugging Face (streamed) or a local file of the same schema (`dataset_path`), shuffled with
    `seed`. A question longer than `max_prompt_tokens` tokens is cut to that length."""

    dataset_name: str = "deepmath"  # deepmath | tulu3
    groups_per_batch: int = 64
    group_size: int = 4
    model_name_for_tokenizer: str
    renderer_name: str | None = None  # default: the model's recommended chat format
    convo_prefix: list[Message] | None = None  # messages before each question (e.g. system)
    max_prompt_tokens: int | None = 1024
    dataset_path: str | None = None
    max_prompts: int | None = 100_000  # prompts read (Hugging Face) or kept (a file)
    test_size: int = 0  # held-out prompts (see HeldOutMathEvalBuilder)
    seed: int = 0
    skip_bad_rows: bool = False

    def renderer(self) -> Renderer:
        name = self.renderer_name or get_recommended_renderer_name(self.model_name_for_tokenizer)
        return get_renderer(name, get_tokenizer(self.model_name_for_tokenizer))

    def _rows(self) -> tuple[Sequence[dict[str, Any]], Any]:
        if self.dataset_path:
            rows = LocalRows(self.dataset_path)
            return rows, rows.where
        import datasets

        name = HF_DATASETS[self.dataset_name]
        stream = datasets.load_dataset(name, split="train", streaming=True)
        rows = list(stream.take(self.max_prompts) if self.max_prompts else stream)
        return rows, lambda i: f"{name} row {i}"

    def load_prompts(self) -> list[tuple[list[Message], str | None]]:
        if self.dataset_name not in PROMPT_READERS:
            raise ValueError(
                f"dataset_name={self.dataset_name!r} is not one of {sorted(PROMPT_READERS)}"
            )
        read = PROMPT_READERS[self.dataset_name]
        tokenizer = get_tokenizer(self.model_name_for_tokenizer)
        rows, where = self._rows()
        prompts, skipped, cut = [], 0, 0
        for i in range(len(rows)):
            try:
                question, answer = read(rows[i], where(i))
            except BadRowError:
                if not self.skip_bad_rows:
                    raise
                skipped += 1
                continue
            question, was_cut = self._fit(question, tokenizer)
            cut += was_cut
            user: Message = {"role": "user", "content": question}
            prompts.append(([*(self.convo_prefix or []), user], answer))
        if skipped or cut:
            logger.warning(
                "%s: skipped %d malformed rows; cut %d prompts to %s tokens",
                self.dataset_name, skipped, cut, self.max_prompt_tokens,
            )  # fmt: skip
        random.Random(self.seed).shuffle(prompts)
        prompts = prompts[: self.max_prompts] if self.max_prompts else prompts
        if len(prompts) <= self.test_size:
            raise ValueError(
                f"{self.dataset_name}: only {len(prompts)} usable prompts, test_size={self.test_size}"
            )
        return prompts

    def _fit(self, question: str, tokenizer: Any) -> tuple[str, bool]:
        if self.max_prompt_tokens is None:
            return question, False
        tokens = tokenizer.encode(question, add_special_tokens=False)
        if len(tokens) <= self.max_prompt_tokens:
            return question, False
        return tokenizer.decode(tokens[: self.max_prompt_tokens]), True

    async def __call__(self) -> tuple[PromptDataset, None]:
        """The training prompts; the `test_size` held-out ones are HeldOutMathEvalBuilder's."""
        train = self.load_prompts()[self.test_size :]
        renderer = self.renderer()
        tag = self.dataset_name
        return PromptDataset(train, renderer, self.groups_per_batch, self.group_size, tag), None


PromptDatasetBuilder = PromptOnlyDatasetBuilder  # this project's former name


@chz.chz
class HeldOutMathEvalBuilder(EvaluatorBuilder):
    """pass@1 on the prompt dataset's own held-out split (`prompts.test_size` problems with
    known answers), so evaluation never needs data beyond the training source."""

    prompts: PromptOnlyDatasetBuilder
    n_samples: int = 4
    max_tokens: int = 1024
    temperature: float = 1.0

    def __call__(self) -> MathPassAtOneEvaluator:
        held_out = self.prompts.load_prompts()[: self.prompts.test_size]
        problems = [(m, a) for m, a in held_out if a is not None]
        if not problems:
            raise ValueError(
                f"{self.prompts.dataset_name}: the held-out split has no problems with answers to grade"
            )
        return MathPassAtOneEvaluator(
            f"{self.prompts.dataset_name}_heldout",
            problems,
            self.prompts.renderer(),
            self.n_samples,
            self.max_tokens,
            self.temperature,
        )
