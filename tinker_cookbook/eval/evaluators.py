"""Sampling evaluators: pass@1 averaged over n samples per held-out problem (AIME-style)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import chz
import numpy as np
from tinker import types

from tinker_cookbook.eval.answer_grading import extract_boxed, grade_answer
from tinker_cookbook.local.models import get_tokenizer
from tinker_cookbook.renderers import (
    Message,
    get_recommended_renderer_name,
    get_renderer,
    get_text_content,
)
from tinker_cookbook.utils.local_rows import LocalRows

Evaluator = Callable[[Any], Awaitable[dict[str, float]]]  # sampling client -> metrics


@chz.chz
class EvaluatorBuilder:
    """Makes an evaluator: `async evaluator(sampling_client) -> metrics`."""

    def __call__(self) -> Evaluator:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__")


class MathPassAtOneEvaluator:
    """Samples `n_samples` answers per problem; pass@1 is the mean correctness over all of
    them (an unbiased estimate of one sample's chance), plus how often a `\\boxed{}` appears."""

    def __init__(
        self,
        name: str,
        problems: list[tuple[list[Message], str]],
        renderer,
        n_samples: int,
        max_tokens: int,
        temperature: float,
    ):
        self.name, self.problems, self.renderer = name, problems, renderer
        self.n_samples, self.max_tokens, self.temperature = n_samples, max_tokens, temperature

    async def __call__(self, sampling_client) -> dict[str, float]:
        params = types.SamplingParams(
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            stop=self.renderer.get_stop_sequences(),
        )
        results = await asyncio.gather(
            *[
                sampling_client.sample(
                    self.renderer.build_generation_prompt(messages), self.n_samples, params
                )
                for messages, _ in self.problems
            ]
        )
        correct, boxed = [], []
        for (_, answer), result in zip(self.problems, results, strict=True):
            for seq in result.sequences:
                message, _ = self.renderer.parse_response(list(seq.tokens))
                given = extract_boxed(get_text_content(message))
                boxed.append(given is not None)
                correct.append(grade_answer(given, answer))
        prefix = f"eval/{self.name}"
        return {
            f"{prefix}/pass@1": float(np.mean(correct)),
            f"{prefix}/boxed_rate": float(np.mean(boxed)),
            f"{prefix}/num_samples": float(len(correct)),
        }


def math_problem_messages(question: str, system_prompt: str | None = None) -> list[Message]:
    messages: list[Message] = (
        [{"role": "system", "content": system_prompt}] if system_prompt else []
    )
    return messages + [{"role": "user", "content": question}]


@chz.chz
class MathEvalBuilder(EvaluatorBuilder):
    """Problems from a local file with `question` and `final_answer` fields (DeepMath's
    schema); `max_problems` of them, chosen with `seed`."""

    file_path: str
    model_name_for_tokenizer: str
    renderer_name: str | None = None
    name: str = "math"
    max_problems: int = 64
    n_samples: int = 4
    max_tokens: int = 512
    temperature: float = 1.0
    system_prompt: str | None = None
    seed: int = 0

    def __call__(self) -> MathPassAtOneEvaluator:
        rows = LocalRows(self.file_path)
        problems = []
        for i in range(len(rows)):
            row = rows[i]
            if not isinstance(row.get("question"), str) or "final_answer" not in row:
                raise ValueError(
                    f"{rows.where(i)}: an eval problem needs 'question' and 'final_answer' fields"
                )
            problems.append(
                (
                    math_problem_messages(row["question"], self.system_prompt),
                    str(row["final_answer"]),
                )
            )
        random.Random(self.seed).shuffle(problems)
        tokenizer = get_tokenizer(self.model_name_for_tokenizer)
        renderer = get_renderer(
            self.renderer_name or get_recommended_renderer_name(self.model_name_for_tokenizer),
            tokenizer,
        )
        return MathPassAtOneEvaluator(
            self.name,
            problems[: self.max_problems],
            renderer,
            self.n_samples,
            self.max_tokens,
            self.temperature,
        )
