import asyncio
import json
import re

from tinker_cookbook.distillation.datasets import PromptDatasetBuilder
from tinker_cookbook.recipes.quickstart.world import (
    ArithmeticWorld,
    is_held_out,
    make_problems,
    prompt_row,
    solution_row,
    worked_solution,
    write_jsonl,
)
from tinker_cookbook.supervised.datasets import (
    ChatDatasetBuilderCommonConfig,
    FromConversationFileBuilder,
)

WORLD = ArithmeticWorld()


def replay(solution: str) -> int:
    """Re-derive the answer from the written steps alone, checking each step as it goes."""
    built, carry = "", 0
    for terms, total, bracket in re.findall(r"([\d+]+)=(\d+) \[(\d+)\]", solution):
        digits = [int(t) for t in terms.split("+")]
        assert sum(digits) == int(total)
        assert digits[2:] == ([1] if carry else [])
        built = str(int(total) % 10) + built
        carry = int(total) // 10
        assert bracket == built
    if carry:
        assert f"carry 1 [1{built}]" in solution
        built = "1" + built
    boxed = re.search(r"\\boxed\{(\d+)\}$", solution).group(1)
    assert boxed == built
    return int(boxed)


def test_worked_solutions_are_correct_step_by_step():
    for p in make_problems(300, 5, WORLD) + make_problems(50, 6, ArithmeticWorld(digits=6)):
        assert replay(worked_solution(p.a, p.b)) == p.a + p.b


def test_splits_are_deterministic_and_disjoint():
    train = make_problems(500, 1, WORLD)
    assert train == make_problems(500, 1, WORLD)
    held = make_problems(100, 2, WORLD, held_out=True)
    assert {(p.a, p.b) for p in train}.isdisjoint({(p.a, p.b) for p in held})
    assert all(is_held_out(p.a, p.b, WORLD) for p in held)
    assert len({(p.a, p.b) for p in train}) == 500
    low, high = 10 ** (WORLD.digits - 1), 10**WORLD.digits - 1
    assert all(low <= p.a <= high and low <= p.b <= high for p in train)
    assert {len(str(p.a)) for p in make_problems(50, 3, ArithmeticWorld(digits=5))} == {5}


def test_files_load_through_the_public_dataset_builders(tmp_path):
    problems = make_problems(8, 0, WORLD)
    sft = write_jsonl(tmp_path / "sft.jsonl", [solution_row(p) for p in problems])
    prompts = write_jsonl(tmp_path / "q.jsonl", [prompt_row(p) for p in problems])
    assert json.loads(sft.read_text().splitlines()[0])["conversations"][0]["value"] == (
        problems[0].question
    )
    train, _ = FromConversationFileBuilder(
        common_config=ChatDatasetBuilderCommonConfig(
            model_name_for_tokenizer="tiny-qwen3-1m", batch_size=4
        ),
        file_path=str(sft),
    )()
    assert len(train) == 2
    dataset, _ = asyncio.run(PromptDatasetBuilder(
        dataset_name="deepmath", dataset_path=str(prompts), model_name_for_tokenizer="tiny-qwen3-1m",
        groups_per_batch=4, group_size=2,
    )())  # fmt: skip
    assert len(dataset.get_batch(0)) == 4
    assert not list(tmp_path.glob("*.tmp"))
