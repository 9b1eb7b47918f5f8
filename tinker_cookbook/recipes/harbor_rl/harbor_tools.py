"""The agent's bash tool in a task's sandbox, and the task's own grading as a reward."""

from __future__ import annotations

import json
import logging
import math
from typing import Annotated

from tinker_cookbook.recipes.harbor_rl.harbor_tasks import HarborTask
from tinker_cookbook.renderers import Message
from tinker_cookbook.sandbox import SandboxInterface
from tinker_cookbook.tool_use import tool

logger = logging.getLogger(__name__)


class HarborBashTool:
    """`bash` in the task's sandbox: output capped, a hung command stopped at `timeout`."""

    def __init__(
        self, sandbox: SandboxInterface, timeout: float = 60.0, max_output_chars: int = 8000
    ):
        self.sandbox, self.timeout, self.max_output_chars = sandbox, timeout, max_output_chars

    @tool
    async def bash(
        self, command: Annotated[str, "A bash command to run in the task's environment"]
    ) -> str:
        """Run a bash command in the task's environment and see its output and exit code."""
        r = await self.sandbox.run_command(
            command, timeout=self.timeout, max_output_bytes=4 * self.max_output_chars
        )
        text = r.stdout + (f"\n[stderr]\n{r.stderr}" if r.stderr.strip() else "")
        if len(text) > self.max_output_chars:
            half = self.max_output_chars // 2
            text = f"{text[:half]}\n[... {len(text) - 2 * half} characters cut ...]\n{text[-half:]}"
        notes = []
        if r.timed_out:
            notes.append(f"command timed out after {self.timeout:g}s and was stopped")
        if r.output_truncated:
            notes.append("output exceeded the limit and the command was stopped")
        notes.append(f"exit code {r.exit_code}")
        return f"{text}\n[{'; '.join(notes)}]".lstrip("\n")


class HarborReward:
    """Copies the task's tests/ to /tests, runs tests/test.sh, and reads
    /logs/verifier/reward.txt (a number) or reward.json ({"reward": x}). Any grading failure
    gives 0 with a `grading_error` metric instead of crashing the run."""

    def __init__(self, task: HarborTask, sandbox: SandboxInterface):
        self.task, self.sandbox = task, sandbox

    async def __call__(self, history: list[Message]) -> tuple[float, dict[str, float]]:
        try:
            # Whatever the agent left in /tests or /logs/verifier is discarded first.
            await self.sandbox.run_command(
                "rm -rf /tests /logs/verifier && mkdir -p /logs/verifier", timeout=30
            )
            await self.sandbox.upload_dir(self.task.path / "tests", "/tests")
            timeout = self.task.timeout("verifier", 120.0)
            env = {
                str(k): str(v)
                for k, v in self.task.config.get("verifier", {}).get("env", {}).items()
            }
            result = await self.sandbox.run_command(
                "/usr/bin/bash /tests/test.sh", timeout=timeout, env=env
            )
            if result.timed_out:
                return 0.0, {"grading_error": 0.0, "verifier_timed_out": 1.0}
            reward = await self._read_reward()
        except Exception as exc:  # noqa: BLE001 - a broken verifier must not stop training
            logger.warning("grading task %s failed: %s", self.task.name, exc)
            return 0.0, {"grading_error": 1.0}
        if reward is None or not math.isfinite(reward):
            logger.warning(
                "task %s wrote no usable reward (%s; test.sh exit %s)",
                self.task.name,
                reward,
                result.exit_code,
            )
            return 0.0, {"grading_error": 1.0}
        return reward, {"grading_error": 0.0, "verifier_timed_out": 0.0}

    async def _read_reward(self) -> float | None:
        for name in ("reward.json", "reward.txt"):
            try:
                text = await self.sandbox.read_file(f"/logs/verifier/{name}")
            except FileNotFoundError:
                continue
            if name == "reward.txt":
                return float(text.strip().split()[0])
            data = json.loads(text)
            value = (
                data.get("reward", next(iter(data.values()))) if isinstance(data, dict) else data
            )
            return float(value)
        return None
