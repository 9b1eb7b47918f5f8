"""Every bundled Harbor task: the reference solution scores 1, doing nothing scores 0."""

import asyncio

import pytest

from tinker_cookbook.recipes.harbor_rl.harbor_tasks import (
    BUNDLED_TASKS_DIR,
    load_tasks,
    prepare_sandbox,
)
from tinker_cookbook.recipes.harbor_rl.harbor_tools import HarborReward
from tinker_cookbook.sandbox import available_backends

pytestmark = pytest.mark.skipif(not available_backends(), reason="no sandbox backend")
TASKS = load_tasks(BUNDLED_TASKS_DIR)


def test_the_pack_has_at_least_ten_tasks():
    assert len(TASKS) >= 10
    assert all((t.path / "solution" / "solve.sh").is_file() for t in TASKS)


async def grade(task, solve: bool) -> tuple[float, dict]:
    sandbox = await prepare_sandbox(task)
    try:
        if solve:
            await sandbox.upload_dir(task.path / "solution", "/solution")
            result = await sandbox.run_command("bash /solution/solve.sh", timeout=60)
            assert result.ok, f"{task.name}: solve.sh failed: {result.stderr}"
        return await HarborReward(task, sandbox)([])
    finally:
        await sandbox.cleanup()


@pytest.mark.parametrize("task", TASKS, ids=[t.name for t in TASKS])
def test_reference_solution_scores_one_and_nothing_scores_zero(task):
    async def both():
        return await asyncio.gather(grade(task, solve=True), grade(task, solve=False))

    (solved, solved_metrics), (idle, idle_metrics) = asyncio.run(both())
    assert (solved, idle) == (1.0, 0.0)
    assert solved_metrics["grading_error"] == idle_metrics["grading_error"] == 0.0
