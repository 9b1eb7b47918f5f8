"""Answer extraction, grading, and pass@1 over n samples."""

import asyncio

import numpy as np
import pytest
from tinker import types

from tinker_cookbook.eval.answer_grading import extract_boxed, grade_answer
from tinker_cookbook.eval.evaluators import MathPassAtOneEvaluator
from tinker_cookbook.local import get_tokenizer
from tinker_cookbook.renderers import get_renderer


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


class CannedSampler:
    """Answers each prompt with fixed replies (cycled), like a sampling client would."""

    def __init__(self, tokenizer, replies):
        self.tokenizer, self.replies = tokenizer, replies

    async def sample(self, prompt, num_samples, sampling_params):
        question = self.tokenizer.decode(prompt.to_ints())
        key = next(k for k in self.replies if k in question)
        seqs = [
            types.SampledSequence(
                stop_reason="stop", sequence_id=str(i),
                _tokens_list=self.tokenizer.encode(self.replies[key][i % len(self.replies[key])]) + [self.tokenizer.eos_token_id],
            )
            for i in range(num_samples)
        ]  # fmt: skip
        return types.SampleResponse(sequences=seqs)


def test_pass_at_one_averages_over_samples():
    tok = get_tokenizer("tiny-qwen3-1m")
    renderer = get_renderer("qwen3", tok)
    problems = [
        ([{"role": "user", "content": "2+2?"}], "4"),
        ([{"role": "user", "content": "3*3?"}], "9"),
    ]
    sampler = CannedSampler(
        tok, {"2+2": [r"\boxed{4}", r"\boxed{5}"], "3*3": [r"\boxed{9}", "nine"]}
    )
    evaluator = MathPassAtOneEvaluator(
        "toy", problems, renderer, n_samples=4, max_tokens=16, temperature=1.0
    )
    metrics = asyncio.run(evaluator(sampler))
    assert metrics["eval/toy/pass@1"] == pytest.approx(0.5)
    assert metrics["eval/toy/boxed_rate"] == pytest.approx(np.mean([1, 1, 1, 0]))
    assert metrics["eval/toy/num_samples"] == 8
