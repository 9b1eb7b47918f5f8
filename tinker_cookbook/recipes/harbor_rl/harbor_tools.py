"""The agent's tools in a task's environment (bash, and optionally file tools), and the task's
own grading, by Harbor's verifier, as a reward."""

from __future__ import annotations

import json
import logging
import shlex
import time
from collections.abc import Callable
from typing import Annotated

from tinker_cookbook.recipes.harbor_rl.environments import GradingError, TaskEnvironment
from tinker_cookbook.renderers.messages import Message
from tinker_cookbook.sandbox import SandboxInterface
from tinker_cookbook.sandbox.base import SandboxError
from tinker_cookbook.tool_use import (
    FunctionTool,
    ToolResult,
    error_tool_result,
    simple_tool_result,
    tool,
)

logger = logging.getLogger(__name__)

MAX_OUTPUT_CHARS = 8000


def _cap(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters cut ...]\n{text[-half:]}"


class HarborBashTool:
    """`bash` in the task's environment: output capped, a hung command stopped at
    `command_timeout` seconds. Its result is one tool message (tool_call_id and name "bash"),
    the output followed by `[exit code N]`; a failing command is an ordinary result, not an
    error: reading its output is the model's job."""

    def __init__(self, sandbox: SandboxInterface | None, command_timeout: float = 120.0,
                 max_output_chars: int = MAX_OUTPUT_CHARS, deadline: float | None = None):  # fmt: skip
        self.sandbox, self.command_timeout = sandbox, command_timeout
        self.max_output_chars = max_output_chars
        self.deadline = deadline  # time.monotonic() after which no command runs (agent timeout)

    @tool
    async def bash(
        self, command: Annotated[str, "A bash command to run in the task's environment"]
    ) -> ToolResult:
        """Run a bash command in the task's environment and see its output and exit code."""
        assert self.sandbox is not None, "HarborBashTool needs a sandbox to run commands"
        timeout = self.command_timeout
        if self.deadline is not None:
            timeout = min(timeout, self.deadline - time.monotonic())
            if timeout <= 0:
                return error_tool_result(
                    "the agent's time for this task is over; the command did not run",
                    error_type="agent_timeout",
                    should_stop=True,
                )
        r = await self.sandbox.run_command(
            command, timeout=timeout, max_output_bytes=4 * self.max_output_chars
        )
        text = r.stdout + (f"\n[stderr]\n{r.stderr}" if r.stderr.strip() else "")
        text = _cap(text, self.max_output_chars)
        notes = []
        if r.timed_out:
            notes.append(f"command timed out after {timeout:g}s and was stopped")
        if r.output_truncated:
            notes.append("output exceeded the limit and was cut")
        notes.append(f"exit code {r.exit_code}")
        output = f"{text}\n[{'; '.join(notes)}]".lstrip("\n")
        return simple_tool_result(output, metadata={"exit_code": r.exit_code})


class HarborFileTools:
    """Glob, Grep, ReadFile, WriteFile and StrReplaceFile in the task's environment (they
    need `python3` there), for agents trained with file tools beside bash. A file that cannot
    be read or edited is an `error_tool_result` the model reads."""

    def __init__(self, sandbox: SandboxInterface, command_timeout: float = 60.0):
        self.sandbox, self.command_timeout = sandbox, command_timeout

    async def _python(self, script: str, *args: str) -> ToolResult:
        command = f"python3 -c {shlex.quote(script)} " + " ".join(shlex.quote(a) for a in args)
        r = await self.sandbox.run_command(command, timeout=self.command_timeout,
                                           max_output_bytes=4 * MAX_OUTPUT_CHARS)  # fmt: skip
        if r.exit_code != 0:
            return error_tool_result(_cap((r.stderr or r.stdout).strip(), 2000))
        return simple_tool_result(_cap(r.stdout, MAX_OUTPUT_CHARS))

    @tool
    async def Glob(
        self,
        pattern: Annotated[str, "Glob pattern, e.g. *.py or src/**/*.js"],
        directory: Annotated[str, "Absolute directory to search in"] = ".",
    ) -> ToolResult:
        """Find files whose path matches a glob pattern."""
        return await self._python(
            "import pathlib,sys\nd=pathlib.Path(sys.argv[2])\n"
            "m=sorted(str(p.relative_to(d)) for p in d.glob(sys.argv[1]))\n"
            "print('\\n'.join(m[:1000]) if m else 'no matches')", pattern, directory,
        )  # fmt: skip

    @tool
    async def Grep(
        self,
        pattern: Annotated[str, "A regular expression to search file contents for"],
        path: Annotated[str, "File or directory to search in"] = ".",
    ) -> ToolResult:
        """Search file contents with a regular expression; prints path:line:text."""
        r = await self.sandbox.run_command(
            f"grep -rnE -- {shlex.quote(pattern)} {shlex.quote(path)} | head -n 250",
            timeout=self.command_timeout, max_output_bytes=4 * MAX_OUTPUT_CHARS,
        )  # fmt: skip
        return simple_tool_result(_cap(r.stdout, MAX_OUTPUT_CHARS) or "no matches")

    @tool
    async def ReadFile(self, path: Annotated[str, "Path of the file to read"]) -> ToolResult:
        """Read a text file, with line numbers."""
        return await self._python(
            "import sys\nfor i,l in enumerate(open(sys.argv[1],errors='replace'),1):\n"
            "    print(f'{i:6}\\t{l.rstrip()}')\n    if i>=1000: break", path,
        )  # fmt: skip

    @tool
    async def WriteFile(
        self,
        path: Annotated[str, "Path of the file to write"],
        content: Annotated[str, "The whole new content of the file"],
    ) -> ToolResult:
        """Create or overwrite a file with the given content."""
        try:
            await self.sandbox.write_file(path, content)
        except SandboxError as exc:  # e.g. a read-only or invalid path: the model's to fix
            return error_tool_result(str(exc))
        return simple_tool_result(f"wrote {len(content)} characters to {path}")

    @tool
    async def StrReplaceFile(
        self,
        path: Annotated[str, "Path of the file to edit"],
        old: Annotated[str, "Exact text to replace (must occur once)"],
        new: Annotated[str, "Replacement text"],
    ) -> ToolResult:
        """Replace one exact occurrence of a string in a file."""
        return await self._python(
            "import sys,json\np,o,n=sys.argv[1],json.loads(sys.argv[2]),json.loads(sys.argv[3])\n"
            "t=open(p).read()\nc=t.count(o)\n"
            "if c!=1: sys.exit(f'{p}: the text occurs {c} times (must be once)')\n"
            "open(p,'w').write(t.replace(o,n))\nprint(f'edited {p}')",
            path, json.dumps(old), json.dumps(new),
        )  # fmt: skip

    def tools(self) -> list[FunctionTool]:
        return [self.Glob, self.Grep, self.ReadFile, self.WriteFile, self.StrReplaceFile]


def training_reward(rewards: dict[str, float]) -> tuple[float, str]:
    """The reward trained on: the `reward` key when there is one, else the mean of the keys."""
    if "reward" in rewards:
        return rewards["reward"], "the 'reward' key"
    return sum(rewards.values()) / len(rewards), f"the mean of keys {sorted(rewards)}"


class HarborReward:
    """Grades an episode with Harbor's verifier in the episode's environment. Every key of
    reward.json becomes a metric `reward/<key>`. A grader that produces no reward is a grading
    error: metric `grading_error` = 1 and the message goes to `on_error`; the 0.0 returned then
    is never trained on (the training loop drops groups with grading errors)."""

    def __init__(
        self,
        environment: TaskEnvironment,
        grader_timeout: float | None = None,
        on_error: Callable[[str], None] | None = None,
        on_reward_keys: Callable[[str], None] | None = None,
    ):
        self.environment, self.grader_timeout = environment, grader_timeout
        self.on_error = on_error or (lambda message: logger.warning("%s", message))
        self.on_reward_keys = on_reward_keys or (lambda message: logger.info("%s", message))

    async def __call__(self, history: list[Message]) -> tuple[float, dict[str, float]]:
        try:
            rewards = await self.environment.verify(self.grader_timeout)
        except GradingError as exc:
            self.on_error(str(exc))
            return 0.0, {"grading_error": 1.0}
        reward, source = training_reward(rewards)
        if len(rewards) > 1:
            self.on_reward_keys(
                f"task {self.environment.task.name!r}: reward.json has keys {sorted(rewards)}; "
                f"training on {source}"
            )
        metrics = {f"reward/{k}": v for k, v in rewards.items() if k != "reward"}
        return reward, {"grading_error": 0.0, **metrics}
