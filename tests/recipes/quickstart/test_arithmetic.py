"""The one arithmetic problem generator both quick-start worlds draw from."""

import pytest

from tinker_cookbook.recipes.quickstart import world
from tinker_cookbook.recipes.quickstart.arithmetic import draw_problems, in_held_out_split
from tinker_cookbook.recipes.quickstart.tool_world import tasks


def draw(n, seed, **kw):
    settings = {"digits": 3, "held_out_share": 2, "phrasings": 3} | kw
    return draw_problems(n, seed, **settings)


def test_problems_are_distinct_in_range_of_one_split_and_reproducible():
    problems = draw(300, 0, ops="+-*")
    assert len({p.expression for p in problems}) == 300
    assert all(100 <= p.a <= 999 and 100 <= p.b <= 999 for p in problems)
    assert {p.op for p in problems} == {"+", "-", "*"}
    assert {p.phrasing for p in problems} == {0, 1, 2}
    assert not any(in_held_out_split(p.expression, 2) for p in problems)
    assert draw(300, 0, ops="+-*") == problems
    assert draw(300, 1, ops="+-*") != problems


def test_answers_follow_the_operator():
    for p in draw(60, 0, ops="+-*"):
        assert p.answer == {"+": p.a + p.b, "-": p.a - p.b, "*": p.a * p.b}[p.op]


def test_held_out_problems_never_appear_in_training_whatever_the_seeds():
    held_out = {p.expression for p in draw(200, 0, held_out=True)}
    for seed in range(3):
        assert held_out.isdisjoint(p.expression for p in draw(200, seed))


def test_impossible_requests_are_refused_instead_of_drawing_forever():
    with pytest.raises(ValueError, match="operator '/'"):
        draw(1, 0, ops="+/")
    with pytest.raises(ValueError, match="no operators"):
        draw(1, 0, ops="")
    # 81 one-digit sums exist, and only some of them are in one split.
    with pytest.raises(ValueError, match="only .* of 81 distinct 1-digit problems"):
        draw(81, 0, digits=1)


def test_both_worlds_split_by_the_shared_rule():
    for p in world.make_problems(100, 0, world.ArithmeticWorld(), held_out=True):
        assert in_held_out_split(f"{p.a}+{p.b}", 10)
    tool_world = tasks.ToolWorld()
    for p in tasks.make_problems(100, 0, held_out=True, world=tool_world):
        assert in_held_out_split(p.expression, tool_world.held_out_share)
    for p in tasks.make_problems(100, 0, world=tool_world):
        assert not in_held_out_split(p.expression, tool_world.held_out_share)


def test_the_reasoning_worlds_problems_are_the_ones_its_studies_were_run_on():
    """Cached study data (teacher, held-out set) stays valid only if these never change."""
    train = world.make_problems(3, 1, world.ArithmeticWorld())
    assert [(p.a, p.b, p.template) for p in train] == [(967, 921, 0), (361, 220, 1), (879, 560, 1)]
    held = world.make_problems(3, 2, world.ArithmeticWorld(), held_out=True)
    assert [(p.a, p.b, p.template) for p in held] == [(955, 273, 2), (489, 533, 2), (915, 524, 2)]
