"""A small reasoning world with exact answers: multi-digit addition, worked step by step.

A worked solution adds the numbers column by column from the right and keeps the answer built so
far in brackets, so every step is a short local computation and the last bracket is the answer:

    Question: Add 305 and 471.
    Solution: 5+1=6 [6] 0+7=7 [76] 3+4=7 [776] so \\boxed{776}

Problems split into train and held-out by a hash of the two numbers, so no held-out problem is
ever seen in training whatever the seeds and sizes. Files use the public datasets' schemas
(OpenThoughts3 conversations for solutions, DeepMath question/final_answer for prompts), so the
study feeds them to the same recipes a user runs on the real datasets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import chz

from tinker_cookbook.recipes.quickstart.arithmetic import draw_problems, in_held_out_split

TEMPLATES = (
    "{a}+{b}=?",
    "Add {a} and {b}.",
    "What is {a} plus {b}?",
)


@chz.chz
class ArithmeticWorld:
    """The problem distribution. `digits` sets the difficulty (solution length grows with it);
    one problem in `held_out_share` is reserved for held-out splits."""

    digits: int = 3
    held_out_share: int = 10


@dataclass(frozen=True)
class AdditionProblem:
    a: int
    b: int
    template: int

    @property
    def answer(self) -> int:
        return self.a + self.b

    @property
    def question(self) -> str:
        return TEMPLATES[self.template].format(a=self.a, b=self.b)


def is_held_out(a: int, b: int, world: ArithmeticWorld) -> bool:
    """Stable across runs and machines (no Python `hash`), independent of how problems are drawn."""
    return in_held_out_split(f"{a}+{b}", world.held_out_share)


def make_problems(
    n: int, seed: int, world: ArithmeticWorld, held_out: bool = False
) -> list[AdditionProblem]:
    """`n` distinct problems from one split, the same for the same arguments."""
    drawn = draw_problems(
        n,
        seed,
        digits=world.digits,
        held_out_share=world.held_out_share,
        phrasings=len(TEMPLATES),
        held_out=held_out,
    )
    return [AdditionProblem(p.a, p.b, p.phrasing) for p in drawn]


def worked_solution(a: int, b: int) -> str:
    """Column sums from the right with the carry written only when there is one."""
    da, db = str(a)[::-1], str(b)[::-1]
    carry, built, steps = 0, "", []
    for i in range(max(len(da), len(db))):
        x = int(da[i]) if i < len(da) else 0
        y = int(db[i]) if i < len(db) else 0
        total = x + y + carry
        terms = f"{x}+{y}" + ("+1" if carry else "")
        built = str(total % 10) + built
        steps.append(f"{terms}={total} [{built}]")
        carry = total // 10
    if carry:
        built = "1" + built
        steps.append(f"carry 1 [{built}]")
    assert int(built) == a + b
    return " ".join(steps) + f" so \\boxed{{{built}}}"


def solution_row(problem: AdditionProblem, solution: str | None = None) -> dict:
    """One OpenThoughts3-schema row (`conversations` of human/gpt turns)."""
    return {
        "conversations": [
            {"from": "human", "value": problem.question},
            {"from": "gpt", "value": solution or worked_solution(problem.a, problem.b)},
        ]
    }


def prompt_row(problem: AdditionProblem) -> dict:
    """One DeepMath-schema row: the question and its exact answer."""
    return {
        "question": problem.question,
        "final_answer": str(problem.answer),
        "difficulty": 1.0,
        "topic": "Arithmetic",
    }


def write_jsonl(path: str | Path, rows: list[dict]) -> Path:
    """Written to a temporary name then renamed, so an interrupted run never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    tmp.replace(path)
    return path
