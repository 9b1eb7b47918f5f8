"""Held-out evaluation for the study: pass@1 and the student's reverse KL to the teacher.

Both come from one set of samples: each held-out question is answered `n_samples` times at
temperature 1 (seeded), graded exactly by the library's pass@1 (`eval.evaluators`), and every
sampled token is scored by the teacher, so the accuracy curve and the teacher-KL curve of a
checkpoint describe the same generations.
"""

from __future__ import annotations

import asyncio

import numpy as np
from tinker import types

from tinker_cookbook.eval.evaluators import (
    GradedSample,
    math_problem_messages,
    pass_at_one,
    sample_and_grade,
    sample_prompts,
)
from tinker_cookbook.renderers import Renderer, get_text_content
from tinker_cookbook.utils.seeding import derive_seed


async def evaluate_student(
    student,
    teacher,
    renderer: Renderer,
    problems: list[tuple[str, str]],
    n_samples: int,
    max_tokens: int,
    seed: int,
) -> dict[str, float]:
    """`student`/`teacher` are sampling clients (`teacher` may be None); `problems` are
    (question, answer) pairs. Returns pass@1 (mean over all samples), boxed rate, number of
    samples and, with a teacher, its KL per sampled token."""
    graded = await sample_and_grade(
        student,
        renderer,
        [(math_problem_messages(q), answer) for q, answer in problems],
        n_samples,
        lambda i: seeded_params(max_tokens, renderer, seed, i),
    )
    metrics = pass_at_one(graded)
    if teacher is not None:
        metrics["teacher_kl"] = await teacher_kl(teacher, graded)
    return metrics


async def teacher_kl(teacher, graded: list[GradedSample]) -> float:
    """Reverse KL per sampled token, estimated on the student's own samples: the student's
    log-probability of each sampled token minus the teacher's."""
    scores = await asyncio.gather(
        *[teacher.compute_logprobs(_append(g.prompt, g.sequence.tokens)) for g in graded]
    )
    kl_sum, kl_tokens = 0.0, 0
    for sample, teacher_lps in zip(graded, scores, strict=True):
        sampled = teacher_lps[sample.prompt.length :]
        kl_sum += float(np.sum(np.asarray(sample.sequence.logprobs) - np.asarray(sampled)))
        kl_tokens += len(sampled)
    return kl_sum / max(kl_tokens, 1)


def seeded_params(
    max_tokens: int, renderer: Renderer, seed: int, index: int
) -> types.SamplingParams:
    """Temperature-1 sampling with a seed of its own per request: one shared seed would give
    every question the same random draws, so their errors would be correlated and an
    evaluation's noise would not average out over questions."""
    return types.SamplingParams(
        max_tokens=max_tokens,
        temperature=1.0,
        stop=renderer.get_stop_sequences(),
        seed=derive_seed(seed, "request", index),
    )


def _append(prompt: types.ModelInput, tokens: list[int]) -> types.ModelInput:
    return types.ModelInput.from_ints(prompt.to_ints() + list(tokens))


async def exact_match_rate(
    student,
    renderer: Renderer,
    items: list[tuple[str, str]],
    n_samples: int,
    max_tokens: int,
    seed: int,
) -> float:
    """Share of sampled replies (temperature 1) equal to the expected text: for domains whose
    target is a style rather than an answer."""
    sampled = await sample_prompts(
        student,
        renderer,
        [math_problem_messages(q) for q, _ in items],
        n_samples,
        lambda i: seeded_params(max_tokens, renderer, seed, i),
    )
    hits = [
        get_text_content(renderer.parse_response(list(seq.tokens))[0]).strip() == expected
        for (_, expected), (_, result) in zip(items, sampled, strict=True)
        for seq in result.sequences
    ]
    if not hits:
        raise ValueError("exact-match rate of no samples: no items or no samples per item")
    return float(np.mean(hits))
