"""Which tasks of a dataset work in an environment, before a long run.

    python -m tinker_cookbook.recipes.harbor_rl.check_tasks tasks_dir=path/to/tasks environment=podman
    python -m tinker_cookbook.recipes.harbor_rl.check_tasks dataset=terminal-bench@2.0

For every task it starts two fresh environments the way training episodes start them: in one
the reference solution runs (as Harbor's oracle agent runs it), in the other nothing runs; both
are graded by Harbor's verifier. One JSON line per task, then a summary: a task is usable for
training when the solution scores 1 and doing nothing scores 0.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass

import chz

from tinker_cookbook.recipes.harbor_rl.environments import (
    GradingError,
    resolve_environment,
    start_environment,
)
from tinker_cookbook.recipes.harbor_rl.harbor_tasks import (
    HarborTask,
    HarborTaskError,
    load_tasks,
    resolve_tasks_dir,
)
from tinker_cookbook.recipes.harbor_rl.harbor_tools import training_reward


@chz.chz
class Config:
    tasks_dir: str | None = None
    dataset: str | None = None  # e.g. terminal-bench@2.0, as `harbor datasets download` names it
    task_filter: str | None = None
    environment: str = "auto"
    environment_kwargs: dict[str, str] = chz.field(default_factory=dict)
    max_concurrent: int = 4  # tasks checked at once (each starts two environments)
    output: str | None = None  # also write the JSON lines to this file


@dataclass
class TaskCheck:
    task: str
    oracle: float | None = None
    nop: float | None = None
    grading_error: bool = False
    seconds: float = 0.0
    error: str | None = None

    @property
    def usable(self) -> bool:
        return self.oracle == 1.0 and self.nop == 0.0 and not self.error

    def why_not(self) -> str:
        if self.usable:
            return "usable"
        if self.error and self.grading_error:
            return "grading error"
        if self.error:
            return "environment or solution error"
        if self.oracle != 1.0:
            return "reference solution does not score 1"
        return "doing nothing already scores above 0"


async def run_episode(task: HarborTask, environment: str, kwargs: dict, solve: bool) -> float:
    env = await start_environment(task, environment, kwargs)
    try:
        if solve:
            code = await env.run_solution()
            if code != 0:
                raise HarborTaskError(f"task {task.name!r}: solution/solve.sh exited {code}")
        return training_reward(await env.verify())[0]
    finally:
        await env.stop()


async def check_task(task: HarborTask, environment: str, kwargs: dict) -> TaskCheck:
    start = time.perf_counter()
    check = TaskCheck(task.name)
    results = await asyncio.gather(
        run_episode(task, environment, kwargs, solve=True),
        run_episode(task, environment, kwargs, solve=False),
        return_exceptions=True,
    )
    errors = []
    for field, result in zip(("oracle", "nop"), results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, Exception):
                raise result
            check.grading_error |= isinstance(result, GradingError)
            errors.append(f"{field}: {result}")
        else:
            setattr(check, field, result)
    check.error = "; ".join(errors)[:2000] or None
    check.seconds = round(time.perf_counter() - start, 1)
    return check


async def check_all(config: Config) -> list[TaskCheck]:
    loaded = load_tasks(resolve_tasks_dir(config.tasks_dir, config.dataset), config.task_filter)
    checks = [TaskCheck(name, error=f"not loaded: {reason}") for name, reason in loaded.skipped]
    for check in checks:
        print(json.dumps(asdict(check)), flush=True)
    environment = resolve_environment(config.environment)
    limit = asyncio.Semaphore(config.max_concurrent)

    async def one(task: HarborTask) -> TaskCheck:
        async with limit:
            check = await check_task(task, environment, dict(config.environment_kwargs))
        print(json.dumps(asdict(check)), flush=True)
        return check

    checks += await asyncio.gather(*[one(t) for t in loaded.tasks])
    if config.output:
        with open(config.output, "w") as f:
            f.writelines(json.dumps(asdict(c)) + "\n" for c in checks)
    return checks


def summary(checks: list[TaskCheck], environment: str) -> str:
    usable = sum(c.usable for c in checks)
    reasons = Counter(c.why_not() for c in checks if not c.usable)
    lines = [f"{usable} of {len(checks)} tasks usable for training in {environment}", ""]
    lines += ["| reason | tasks |", "|---|---|"]
    lines += [f"| usable | {usable} |"] + [f"| {r} | {n} |" for r, n in reasons.most_common()]
    return "\n".join(lines)


def main(config: Config) -> list[TaskCheck]:
    checks = asyncio.run(check_all(config))
    print(summary(checks, config.environment))
    return checks


if __name__ == "__main__":
    chz.nested_entrypoint(main)
