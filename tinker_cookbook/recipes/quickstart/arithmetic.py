"""The one arithmetic problem generator the quick start's worlds share.

The reasoning world (`world.py`: additions worked column by column) and the tool world
(`tool_world/`: expressions a bash command computes) both draw `a op b` problems of a split
from here, so both get the same guarantees: a problem's split is a fixed property of its
expression (a train and a held-out set never share one, whatever seeds and sizes), problems
within a set are distinct, and a set is the same for the same arguments on every machine.
"""

from __future__ import annotations

import hashlib
import operator
import random
from dataclasses import dataclass

OPERATIONS = {"+": operator.add, "-": operator.sub, "*": operator.mul}
_MAX_DRAWS_PER_PROBLEM = 1000  # far above what a split of 1 in 10 or more ever needs


@dataclass(frozen=True)
class ArithProblem:
    """`a op b`, and which of its world's phrasings asks for it."""

    a: int
    op: str
    b: int
    phrasing: int = 0

    @property
    def expression(self) -> str:
        return f"{self.a}{self.op}{self.b}"

    @property
    def answer(self) -> int:
        return OPERATIONS[self.op](self.a, self.b)


def in_held_out_split(expression: str, held_out_share: int) -> bool:
    """One expression in `held_out_share` is held out, chosen by a stable hash (not Python's
    `hash`, which changes between runs), so the split never depends on how problems are drawn."""
    digest = hashlib.sha256(expression.encode()).digest()
    return int.from_bytes(digest[:4], "big") % held_out_share == 0


def draw_problems(
    n: int,
    seed: int | str,
    *,
    digits: int,
    held_out_share: int,
    phrasings: int,
    ops: str = "+",
    held_out: bool = False,
) -> list[ArithProblem]:
    """`n` distinct problems of one split with `digits`-digit operands and an operator from
    `ops`, each with a phrasing index below `phrasings`. Raises when the split runs out of
    new problems (e.g. 1-digit operands), rather than drawing forever."""
    _check_ops(ops)
    rng = random.Random(seed)
    low, high = 10 ** (digits - 1), 10**digits - 1
    problems: list[ArithProblem] = []
    seen: set[str] = set()
    draws = 0
    while len(problems) < n:
        draws += 1
        if draws > _MAX_DRAWS_PER_PROBLEM * (n + 1):
            raise ValueError(
                f"only {len(problems)} of {n} distinct {digits}-digit problems found in this "
                "split; ask for fewer or use more digits"
            )
        a = rng.randint(low, high)
        op = ops if len(ops) == 1 else rng.choice(ops)  # one operator needs no draw
        b = rng.randint(low, high)
        expression = f"{a}{op}{b}"
        if expression in seen or in_held_out_split(expression, held_out_share) != held_out:
            continue
        seen.add(expression)
        problems.append(ArithProblem(a, op, b, rng.randrange(phrasings)))
    return problems


def _check_ops(ops: str) -> None:
    if not ops:
        raise ValueError("no operators to draw from")
    for op in ops:
        if op not in OPERATIONS:
            raise ValueError(f"operator {op!r} is not one of {' '.join(OPERATIONS)}")
