"""Answer extraction, grading, and the one pass@1 over n samples (shared by the training
evaluators and the quick start)."""

import asyncio

import numpy as np
import pytest
from tinker import types

from tests.eval.canned_sampling import CannedSampler
from tinker_cookbook.eval.answer_grading import extract_boxed, grade_answer
from tinker_cookbook.eval.evaluators import MathPassAtOneEvaluator, pass_at_one, sample_and_grade
from tinker_cookbook.local import get_tokenizer
from tinker_cookbook.renderers import get_renderer

TOKENIZER = get_tokenizer("tiny-qwen3-1m")
RENDERER = get_renderer("qwen3", TOKENIZER)


@pytest.mark.parametrize(
    "text, want",
    [
        (r"so $\boxed{42}$.", "42"),
        (r"\boxed{1} then \boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (r"\boxed {x^{2}+1}", "x^{2}+1"),
        (r"\boxed{unclosed", None),
        ("no answer", None),
    ],
)
def test_extract_boxed(text, want):
    assert extract_boxed(text) == want


def test_grade_answer_is_mathematical():
    assert grade_answer("0.5", r"\frac{1}{2}")
    assert grade_answer("1+x^2", "x^2+1")
    assert grade_answer(" 42 ", "42")
    assert not grade_answer("41", "42")
    assert not grade_answer(None, "42")


def test_pass_at_one_averages_over_samples():
    problems = [
        ([{"role": "user", "content": "2+2?"}], "4"),
        ([{"role": "user", "content": "3*3?"}], "9"),
    ]
    sampler = CannedSampler(
        TOKENIZER, {"2+2": [r"\boxed{4}", r"\boxed{5}"], "3*3": [r"\boxed{9}", "nine"]}
    )
    evaluator = MathPassAtOneEvaluator(
        "toy", problems, RENDERER, n_samples=4, max_tokens=16, temperature=1.0
    )
    metrics = asyncio.run(evaluator(sampler))
    assert metrics["eval/toy/pass@1"] == pytest.approx(0.5)
    assert metrics["eval/toy/boxed_rate"] == pytest.approx(np.mean([1, 1, 1, 0]))
    assert metrics["eval/toy/num_samples"] == 8


def test_each_sample_keeps_its_grade_prompt_and_request_settings():
    problems = [
        ([{"role": "user", "content": "2+2?"}], "4"),
        ([{"role": "user", "content": "3*3?"}], "9"),
    ]
    sampler = CannedSampler(TOKENIZER, {"2+2": [r"\boxed{4}", "4"], "3*3": [r"\boxed{8}"]})
    graded = asyncio.run(
        sample_and_grade(
            sampler, RENDERER, problems, 2, lambda i: types.SamplingParams(max_tokens=8, seed=i)
        )
    )
    assert [(g.correct, g.boxed) for g in graded] == [
        (True, True), (False, False), (False, True), (False, True),
    ]  # fmt: skip
    # Each sample is kept with the prompt it answered, so it can be scored again.
    assert "3*3?" in TOKENIZER.decode(graded[2].prompt.to_ints())
    assert TOKENIZER.decode(graded[2].sequence.tokens).startswith(r"\boxed{8}")
    # Each problem's request carried its own settings.
    assert sorted(p.seed for p in sampler.requests.values()) == [0, 1]
    assert pass_at_one(graded) == {"pass@1": 0.25, "boxed_rate": 0.75, "num_samples": 4.0}


def test_pass_at_one_of_no_samples_is_an_error_not_nan():
    with pytest.raises(ValueError, match="no samples"):
        pass_at_one([])
