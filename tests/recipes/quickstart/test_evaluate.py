"""The study's held-out evaluation: pass@1 (the library's) and the teacher KL of the very same
samples, each request seeded on its own."""

import asyncio

import pytest

from tests.eval.canned_sampling import STUDENT_LOGPROB, CannedSampler, CannedTeacher
from tinker_cookbook.local import get_tokenizer
from tinker_cookbook.model_info import get_recommended_renderer_name
from tinker_cookbook.recipes.quickstart.evaluate import evaluate_student, exact_match_rate
from tinker_cookbook.renderers import get_renderer

TOKENIZER = get_tokenizer("tiny-qwen3-1m")
RENDERER = get_renderer(get_recommended_renderer_name("tiny-qwen3-1m"), TOKENIZER)
PROBLEMS = [("Add 2 and 2.", "4"), ("Add 3 and 6.", "9"), ("Add 1 and 1.", "2")]
# Per question: right, wrong, unboxed -- 4 of 9 samples right, 7 of 9 boxed.
REPLIES = {
    "2 and 2": [r"so \boxed{4}", r"so \boxed{4}", r"so \boxed{5}"],
    "3 and 6": [r"so \boxed{9}", "nine", r"so \boxed{8}"],
    "1 and 1": [r"so \boxed{2}", "two", r"so \boxed{11}"],
}


def evaluate(sampler, teacher=None, seed=0) -> dict[str, float]:
    return asyncio.run(evaluate_student(sampler, teacher, RENDERER, PROBLEMS, 3, 32, seed))


def test_pass_at_one_and_teacher_kl_are_those_of_the_samples():
    metrics = evaluate(CannedSampler(TOKENIZER, REPLIES), CannedTeacher(logprob=-1.0))
    assert metrics["pass@1"] == pytest.approx(4 / 9)
    assert metrics["boxed_rate"] == pytest.approx(7 / 9)
    assert metrics["num_samples"] == 9
    # Student log-probability minus the teacher's, on every sampled token.
    assert metrics["teacher_kl"] == pytest.approx(STUDENT_LOGPROB + 1.0)
    assert "teacher_kl" not in evaluate(CannedSampler(TOKENIZER, REPLIES))


def test_every_question_is_sampled_with_a_seed_of_its_own():
    def seeds(seed: int) -> list[int]:
        sampler = CannedSampler(TOKENIZER, REPLIES)
        evaluate(sampler, seed=seed)
        return [params.seed for params in sampler.requests.values()]

    first = seeds(0)
    assert len(first) == len(set(first)) == len(PROBLEMS)
    assert seeds(0) == first  # the same evaluation draws the same samples again
    assert not set(seeds(1)) & set(first)


def test_exact_match_rate_counts_replies_equal_to_the_expected_text():
    sampler = CannedSampler(TOKENIZER, {"note": ["Thanks!", " Thanks! ", "thanks"]})
    rate = exact_match_rate(sampler, RENDERER, [("Write a note.", "Thanks!")], 3, 16, 0)
    assert asyncio.run(rate) == pytest.approx(2 / 3)
