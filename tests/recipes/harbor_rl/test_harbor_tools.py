"""Harbor's bash and file tools as `Tool`s, on a scripted sandbox: results are tool messages
naming the call, and what goes wrong in the task's files is an error result the model reads."""

import asyncio
import json

from tinker_cookbook.recipes.harbor_rl.harbor_tools import HarborBashTool, HarborFileTools
from tinker_cookbook.renderers.messages import ToolCall
from tinker_cookbook.sandbox.base import CommandResult, SandboxInterface
from tinker_cookbook.tool_use import Tool, ToolInput, handle_tool_call


class ScriptedSandbox(SandboxInterface):
    """Answers every command with `result`; a write to /proc fails as a real one would."""

    def __init__(self, result: CommandResult):
        self.result, self.commands = result, []

    async def run_command(self, command, workdir=None, timeout=60.0, max_output_bytes=1_000_000,
                          env=None, stdin=None) -> CommandResult:  # fmt: skip
        self.commands.append(command)
        if command.startswith("mkdir -p") and "/proc" in command:
            return CommandResult("", "Read-only file system", 1)
        return self.result

    async def cleanup(self) -> None:
        pass


def run(tool, **arguments):
    return asyncio.run(tool.run(ToolInput(arguments=arguments, call_id="c3")))


def test_bash_result_is_a_tool_message_for_the_call():
    sandbox = ScriptedSandbox(CommandResult("4\n", "", 0))
    bash = HarborBashTool(sandbox).bash
    assert isinstance(bash, Tool) and bash.to_spec()["name"] == "bash"
    call = ToolCall.from_arguments("bash", {"command": "echo $((2+2))"}, id="c5")
    result = asyncio.run(handle_tool_call({"bash": bash}, call))
    assert result.messages == [
        {"role": "tool", "content": "4\n\n[exit code 0]", "tool_call_id": "c5", "name": "bash"}
    ]
    assert result.metadata == {"exit_code": 0} and sandbox.commands == ["echo $((2+2))"]


def test_file_tool_failures_are_errors_the_model_reads():
    failing = HarborFileTools(ScriptedSandbox(CommandResult("", "no such file: /x", 1)))
    missing = run(failing.ReadFile, path="/x")
    assert json.loads(missing.messages[0]["content"]) == {"error": "no such file: /x"}
    assert missing.metadata == {"error": "execution_error"}
    assert missing.messages[0]["name"] == "ReadFile"
    read_only = run(failing.WriteFile, path="/proc/x", content="hi")
    assert "cannot write /proc/x" in read_only.messages[0]["content"]
    working = HarborFileTools(ScriptedSandbox(CommandResult("a.py\n", "", 0)))
    assert run(working.Glob, pattern="*.py").messages[0]["content"] == "a.py\n"
    assert [t.name for t in working.tools()] == [
        "Glob", "Grep", "ReadFile", "WriteFile", "StrReplaceFile",
    ]  # fmt: skip
