"""The tool world's Harbor tasks: one arithmetic expression each, computed with bash.

Each task keeps its expression (e.g. `4721+3859`) in /app/problem.txt (copied in by its
Dockerfile) and asks for its value in /app/answer.txt; the task's own `tests/test.sh` grades the
file, so the library's `HarborReward` scores an episode with no special casing. Problems come
from the quick start's shared generator (`quickstart/arithmetic.py`), so a held-out task is
never a training task.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import chz

from tinker_cookbook.recipes.quickstart.arithmetic import ArithProblem, draw_problems
from tinker_cookbook.sandbox.local_environment import BASE_IMAGE

TASK_PREFIX = "arith-"
PROBLEM_FILE = "/app/problem.txt"
ANSWER_FILE = "/app/answer.txt"
# The one command every correct episode runs (the tasks' reference solution).
COMMAND = f"echo $(( $(cat {PROBLEM_FILE}) )) > {ANSWER_FILE}"
INSTRUCTIONS = (
    "Compute the expression in {problem} and write the result to {answer}.",
    "Evaluate the arithmetic in {problem}; put the value in {answer}.",
    "{problem} holds an integer expression. Write its value to {answer}.",
)
# How every episode of these tasks runs: the local sandbox, small and quick.
SANDBOX_SETTINGS: dict = {
    "command_timeout": 10.0,
    "environment": "local",
    "environment_kwargs": {"memory_mb": "256"},
}

TASK_TOML = """version = "1.0"

[metadata]
difficulty = "easy"
category = "arithmetic"
tags = ["shell-arithmetic", "quickstart"]

[verifier]
timeout_sec = 30.0

[agent]
timeout_sec = 60.0

[environment]
build_timeout_sec = 30.0
cpus = 1
memory_mb = 256
"""

DOCKERFILE = f"FROM {BASE_IMAGE}\nWORKDIR /app\nCOPY problem.txt {PROBLEM_FILE}\n"

TEST_SH = """#!/bin/bash
# Grades the task: writes 1 (pass) or 0 (fail) to /logs/verifier/reward.txt.
mkdir -p /logs/verifier
if [ "$(tr -d "[:space:]" < {answer_file} 2>/dev/null)" = "{answer}" ]; then
  echo 1 > /logs/verifier/reward.txt
else
  echo 0 > /logs/verifier/reward.txt
fi
"""


@chz.chz
class ToolWorld:
    """What the generated problems look like."""

    digits: int = 4
    ops: str = "+-*"  # one character per operator bash's $(( )) understands
    held_out_share: int = 2  # one expression in this many is reserved for held-out splits


def make_problems(
    n: int, seed: int, held_out: bool = False, world: ToolWorld | None = None
) -> list[ArithProblem]:
    """`n` distinct problems of one split, the same for the same (n, seed, held_out, world);
    a problem's `phrasing` picks its instruction's wording."""
    world = world or ToolWorld()
    return draw_problems(
        n,
        f"tool-world/{seed}",  # not the reasoning world's stream for the same seed
        digits=world.digits,
        held_out_share=world.held_out_share,
        phrasings=len(INSTRUCTIONS),
        ops=world.ops,
        held_out=held_out,
    )


def instruction(problem: ArithProblem) -> str:
    """The task's instruction.md: names the files, never the expression itself."""
    return INSTRUCTIONS[problem.phrasing].format(problem=PROBLEM_FILE, answer=ANSWER_FILE)


def trajectory_token_limit(max_tokens: int, max_turns: int) -> int:
    """Room for every turn's reply and tool output on top of the opening prompt."""
    return 4 * max_tokens * max_turns + 2048


def task_name(problem: ArithProblem, index: int) -> str:
    """Sorted like the generation order; the operator spelled out (file-name safe)."""
    op = {"+": "plus", "-": "minus", "*": "times"}[problem.op]
    return f"{TASK_PREFIX}{index:04d}-{problem.a}-{op}-{problem.b}"


def write_task(folder: Path, problem: ArithProblem) -> Path:
    """One task folder in the Harbor layout that `load_harbor_task` reads."""
    for sub in ("environment", "tests", "solution"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "task.toml").write_text(TASK_TOML)
    # No trailing newline: Harbor shows instruction.md as it is, and the transcripts must match.
    (folder / "instruction.md").write_text(instruction(problem))
    (folder / "environment" / "Dockerfile").write_text(DOCKERFILE)
    (folder / "environment" / "problem.txt").write_text(problem.expression + "\n")
    test_sh = TEST_SH.format(answer_file=ANSWER_FILE, answer=problem.answer)
    (folder / "tests" / "test.sh").write_text(test_sh)
    (folder / "solution" / "solve.sh").write_text(
        f"#!/bin/bash\n# Reference solution.\n{COMMAND}\n"
    )
    fields = {"a": problem.a, "op": problem.op, "b": problem.b, "wording": problem.phrasing}
    (folder / "problem.json").write_text(json.dumps(fields))
    return folder


def read_problem(task_dir: str | Path) -> ArithProblem:
    """The problem a generated task folder was written from."""
    data = json.loads((Path(task_dir) / "problem.json").read_text())
    return ArithProblem(int(data["a"]), str(data["op"]), int(data["b"]), int(data["wording"]))


def write_tool_tasks(
    folder: str | Path,
    n: int,
    seed: int,
    held_out: bool = False,
    world: ToolWorld | None = None,
) -> list[Path]:
    """Write `n` arithmetic tasks under `folder` (one subfolder each) and return their paths.

    Deterministic in its arguments. Task folders of an earlier call with other settings are
    removed first (only those this module names), so the loader sees exactly these tasks."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    problems = make_problems(n, seed, held_out, world)
    paths = [folder / task_name(p, i) for i, p in enumerate(problems)]
    keep = {p.name for p in paths}
    for stale in folder.glob(f"{TASK_PREFIX}*"):
        if stale.is_dir() and stale.name not in keep:
            shutil.rmtree(stale)
    return [write_task(path, problem) for path, problem in zip(paths, problems, strict=True)]
