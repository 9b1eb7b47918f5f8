"""Sampling evaluators: pass@1 averaged over n samples per held-out problem (AIME-style).

`sample_and_grade` and `pass_at_one` are the one pass@1 in the project: the training
evaluators below and the quick start's held-out evaluation both score with them."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import chz
import numpy as np
from tinker import types

from tinker_cookbook.eval.answer_grading import extract_boxed, grade_answer
from tinker_cookbook.local.models import get_tokenizer
from tinker_cookbook.renderers import (
    Message,
    Renderer,
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


@dataclass(frozen=True)
class GradedSample:
    """One sampled reply, graded: the prompt and sequence stay with it so a caller can score
    the very same generation again (e.g. a teacher's log-probabilities of it)."""

    prompt: types.ModelInput
    sequence: types.SampledSequence
    boxed: bool
    correct: bool


async def sample_prompts(
    sampling_client,
    renderer: Renderer,
    conversations: list[list[Message]],
    n_samples: int,
    params_for: Callable[[int], types.SamplingParams],
) -> list[tuple[types.ModelInput, types.SampleResponse]]:
    """`n_samples` replies to each conversation, all requests at once; `params_for(i)` gives
    conversation i's sampling settings (so each request can carry a seed of its own)."""
    prompts = [renderer.build_generation_prompt(messages) for messages in conversations]
    results = await asyncio.gather(
        *[sampling_client.sample(p, n_samples, params_for(i)) for i, p in enumerate(prompts)]
    )
    return list(zip(prompts, results, strict=True))


async def sample_and_grade(
    sampling_client,
    renderer: Renderer,
    problems: list[tuple[list[Message], str]],
    n_samples: int,
    params_for: Callable[[int], types.SamplingParams],
) -> list[GradedSample]:
    """Every sampled reply to (conversation, answer) `problems`, graded on its last
    `\\boxed{}` against the answer (math-verify)."""
    sampled = await sample_prompts(
        sampling_client, renderer, [m for m, _ in problems], n_samples, params_for
    )
    graded = []
    for (_, answer), (prompt, result) in zip(problems, sampled, strict=True):
        for seq in result.sequences:
            message, _ = renderer.parse_response(list(seq.tokens))
            given = extract_boxed(get_text_content(message))
            graded.append(GradedSample(prompt, seq, given is not None, grade_answer(given, answer)))
    return graded


def pass_at_one(graded: list[GradedSample]) -> dict[str, float]:
    """pass@1 as the mean correctness over all samples (an unbiased estimate of one sample's
    chance), how often a `\\boxed{}` appears, and how many samples that is."""
    if not graded:
        raise ValueError("pass@1 of no samples: there were no problems or no samples per problem")
    return {
        "pass@1": float(np.mean([g.correct for g in graded])),
        "boxed_rate": float(np.mean([g.boxed for g in graded])),
        "num_samples": float(len(graded)),
    }


class MathPassAtOneEvaluator:
    """Samples `n_samples` answers per problem and reports their `pass_at_one` metrics under
    `eval/<name>/`."""

    def __init__(
        self,
        name: str,
        problems: list[tuple[list[Message], str]],
        renderer: Renderer,
        n_samples: int,
        max_tokens: int,
        temperature: float,
    ):
        # Checked here, when the run builds its evaluators: an empty evaluation would
        # otherwise fail only at its first turn, possibly after hours of training.
        if not problems:
            raise ValueError(f"evaluator {name!r} has no problems to evaluate")
        if n_samples < 1:
            raise ValueError(f"evaluator {name!r}: n_samples={n_samples} must be >= 1")
        self.name, self.problems, self.renderer = name, problems, renderer
        self.n_samples, self.max_tokens, self.temperature = n_samples, max_tokens, temperature

    async def __call__(self, sampling_client) -> dict[str, float]:
        params = types.SamplingParams(
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            stop=self.renderer.get_stop_sequences(),
        )
        graded = await sample_and_grade(
            sampling_client, self.renderer, self.problems, self.n_samples, lambda _: params
        )
        return {f"eval/{self.name}/{k}": v for k, v in pass_at_one(graded).items()}


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
