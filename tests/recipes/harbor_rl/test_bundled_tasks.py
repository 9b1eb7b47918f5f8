"""Every bundled Harbor task, in podman and in the local sandbox: the reference solution scores
1, doing nothing scores 0; a few tasks also through Harbor's own CLI, with the same rewards."""

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tinker_cookbook.recipes.harbor_rl.check_tasks import check_task
from tinker_cookbook.recipes.harbor_rl.harbor_tasks import BUNDLED_TASKS_DIR, load_tasks
from tinker_cookbook.sandbox import available_backends

TASKS = load_tasks(BUNDLED_TASKS_DIR, quiet=True).tasks
# Tasks the local sandbox refuses, and the Dockerfile line that makes it refuse.
LOCAL_REFUSED = {"agent-user-home": "Dockerfile line 3 (RUN apt-get update"}


def check_all(environment: str, tasks=TASKS) -> dict:
    async def run():
        limit = asyncio.Semaphore(4)

        async def one(task):
            async with limit:
                return await check_task(task, environment, {})

        return await asyncio.gather(*[one(t) for t in tasks])

    return {c.task: c for c in asyncio.run(run())}


def test_the_pack_covers_the_features():
    assert len(TASKS) >= 15
    assert all((t.path / "solution" / "solve.sh").is_file() for t in TASKS)
    configs = {t.name: t.harbor.config for t in TASKS}
    assert configs["workdir-report"].environment.workdir == "/srv/report"
    assert configs["agent-user-home"].agent.user == "agent"
    assert "EXPECTED_TOTAL" in configs["multi-key-inventory"].verifier.env


def test_every_task_in_podman(podman):
    checks = check_all("podman")
    bad = {name: c for name, c in checks.items() if not c.usable}
    assert not bad, bad


@pytest.mark.skipif(not available_backends(), reason="no sandbox backend")
def test_every_task_in_the_local_sandbox_or_refused_by_name():
    checks = check_all("local")
    for name, check in checks.items():
        if name in LOCAL_REFUSED:
            assert check.oracle is None and LOCAL_REFUSED[name] in check.error, check
            assert "installs software or users" in check.error
        else:
            assert check.usable, check


CLI_TASKS = ["workdir-report", "agent-user-home", "multi-key-inventory"]


def test_harbors_own_cli_gives_the_same_rewards(podman, tmp_path):
    """Our episodes, then `harbor run -e podman -a oracle` and `-a nop` (all six at once)."""
    checks = check_all("podman", [t for t in TASKS if t.name in CLI_TASKS])
    harbor = Path(sys.executable).parent / "harbor"
    runs = {
        (task, agent): subprocess.Popen(
            [
                str(harbor),
                "run",
                "-p",
                str(BUNDLED_TASKS_DIR / task),
                "-e",
                "podman",
                "-a",
                agent,
                "-o",
                str(tmp_path),
                "--job-name",
                f"{task}-{agent}",
                "-q",
                "-y",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for task in CLI_TASKS
        for agent in ("oracle", "nop")
    }
    for (task, agent), run in runs.items():
        assert run.wait(timeout=600) == 0, (
            f"harbor run {task} -a {agent}: {run.stderr.read()[-1500:]}"
        )
        (result,) = [
            json.loads(p.read_text()) for p in (tmp_path / f"{task}-{agent}").glob("*/result.json")
        ]
        rewards = result["verifier_result"]["rewards"]
        theirs = rewards.get("reward", sum(rewards.values()) / len(rewards))
        ours = checks[task].oracle if agent == "oracle" else checks[task].nop
        assert theirs == ours == (1.0 if agent == "oracle" else 0.0), (
            task,
            agent,
            rewards,
            checks[task],
        )
