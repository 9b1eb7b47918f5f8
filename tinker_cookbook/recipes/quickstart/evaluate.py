"""Held-out evaluation for the study: pass@1 and the student's reverse KL to the teacher.

Both come from one set of samples: each held-out question is answered `n_samples` times at
temperature 1 (seeded), graded exactly, and every sampled token is scored by the teacher, so the
accuracy curve and the teacher-KL curve of a checkpoint describe the same generations.
"""

from __future__ import annotations

import asyncio

import numpy as np
from tinker import types

from tinker_cookbook.eval.answer_grading import extract_boxed, grade_answer
from tinker_cookbook.eval.evaluators import math_problem_messages
from tinker_cookbook.renderers import get_text_content


async def evaluate_student(
    student,
    teacher,
    renderer,
    problems: list[tuple[str, str]],
    n_samples: int,
    max_tokens: int,
    seed: int,
) -> dict[str, float]:
    """`student`/`teacher` are sampling clients; `problems` are (question, answer) pairs.
    Returns pass@1 (mean over all samples), boxed rate, and teacher KL per sampled token."""
    prompts = [renderer.build_generation_prompt(math_problem_messages(q)) for q, _ in problems]
    results = await asyncio.gather(
        *[
            student.sample(p, n_samples, seeded_params(max_tokens, renderer, seed, i))
            for i, p in enumerate(prompts)
        ]
    )
    correct, boxed, kl_sum, kl_tokens = [], [], 0.0, 0
    scoring = []
    for (_, answer), prompt, result in zip(problems, prompts, results, strict=True):
        for seq in result.sequences:
            message, _ = renderer.parse_response(list(seq.tokens))
            given = extract_boxed(get_text_content(message))
            boxed.append(given is not None)
            correct.append(grade_answer(given, answer))
            scoring.append((prompt, seq))
    if teacher is not None:
        scores = await asyncio.gather(
            *[teacher.compute_logprobs(_append(p, s.tokens)) for p, s in scoring]
        )
        for (prompt, seq), teacher_lps in zip(scoring, scores, strict=True):
            sampled = teacher_lps[prompt.length :]
            kl_sum += float(np.sum(np.asarray(seq.logprobs) - np.asarray(sampled)))
            kl_tokens += len(sampled)
    metrics = {
        "pass@1": float(np.mean(correct)),
        "boxed_rate": float(np.mean(boxed)),
        "num_samples": float(len(correct)),
    }
    if teacher is not None:
        metrics["teacher_kl"] = kl_sum / max(kl_tokens, 1)
    return metrics


def seeded_params(max_tokens: int, renderer, seed: int, index: int) -> types.SamplingParams:
    """Temperature-1 sampling with a seed of its own per request: one shared seed would give
    every question the same random draws, so their errors would be correlated and an
    evaluation's noise would not average out over questions."""
    return types.SamplingParams(
        max_tokens=max_tokens, temperature=1.0, stop=renderer.get_stop_sequences(),
        seed=seed * 1_000_003 + index,
    )  # fmt: skip


def _append(prompt: types.ModelInput, tokens: list[int]) -> types.ModelInput:
    return types.ModelInput.from_ints(prompt.to_ints() + list(tokens))


async def exact_match_rate(
    student, renderer, items: list[tuple[str, str]], n_samples: int, max_tokens: int, seed: int
) -> float:
    """Share of sampled replies (temperature 1) equal to the expected text: for domains whose
    target is a style rather than an answer."""
    prompts = [renderer.build_generation_prompt(math_problem_messages(q)) for q, _ in items]
    results = await asyncio.gather(
        *[
            student.sample(p, n_samples, seeded_params(max_tokens, renderer, seed, i))
            for i, p in enumerate(prompts)
        ]
    )
    hits = [
        get_text_content(renderer.parse_response(list(seq.tokens))[0]).strip() == expected
        for (_, expected), result in zip(items, results, strict=True)
        for seq in result.sequences
    ]
    return float(np.mean(hits))
