"""Correct tool-using episodes of the tool world, as SFT transcripts.

A correct agent runs one fixed bash command that reads the problem file, gets the tool's
reply, and ends with a short final reply, so a tiny byte-level model learns the whole episode
in seconds: nothing has to be copied from the instruction, whose wording varies a little. The
transcripts open exactly as the Harbor environment opens an episode, so SFT on them trains the
very sequences the model later sees in the sandbox.
"""

from __future__ import annotations

import json
from pathlib import Path

from tinker_cookbook.model_info import get_recommended_renderer_name
from tinker_cookbook.recipes.harbor_rl.harbor_env import opening_messages
from tinker_cookbook.recipes.quickstart.arithmetic import ArithProblem
from tinker_cookbook.recipes.quickstart.tool_world.tasks import COMMAND, instruction
from tinker_cookbook.renderers import Message, Renderer, ToolCall, get_renderer
from tinker_cookbook.tokenizer_utils import get_tokenizer

FINAL_REPLY = "Done."
# What HarborBashTool returns for a command with no output and exit code 0.
SILENT_TOOL_OUTPUT = "[exit code 0]"
# A short system prompt and tool description in place of the default prompt and the bash tool's
# JSON schema (~760 of ~950 prompt tokens on the byte-level tiny models).
SHORT_SYSTEM_PROMPT = "You are an agent in a Linux shell."
SHORT_TOOL_DESCRIPTION = (
    'Tool: bash. Call it as <tool_call>{"name": "bash", "arguments": {"command": "..."}}'
    "</tool_call>; reply without a call when done."
)


def reference_messages(problem: ArithProblem) -> list[Message]:
    """What a correct agent says after the task's instruction: the fixed bash call, the tool's
    reply (the command prints nothing), and a short final answer with no tool call."""
    return [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [ToolCall.from_arguments("bash", {"command": COMMAND}, id="call_0")],
        },
        {"role": "tool", "name": "bash", "tool_call_id": "call_0", "content": SILENT_TOOL_OUTPUT},
        {"role": "assistant", "content": FINAL_REPLY},
    ]


def model_renderer(model_name: str) -> Renderer:
    """The chat format a model's transcripts and episodes are written in."""
    return get_renderer(get_recommended_renderer_name(model_name), get_tokenizer(model_name))


def transcript(
    problem: ArithProblem,
    renderer: Renderer,
    system_prompt: str = SHORT_SYSTEM_PROMPT,
    tool_description: str | None = SHORT_TOOL_DESCRIPTION,
) -> list[Message]:
    """A whole correct episode, opening with exactly the system message and instruction the
    Harbor environment shows (`system_message`, the task's instruction.md)."""
    return [
        *opening_messages(renderer, system_prompt, tool_description),
        {"role": "user", "content": instruction(problem)},
        *reference_messages(problem),
    ]


def write_tool_transcripts(
    path: str | Path,
    problems: list[ArithProblem],
    renderer: Renderer,
    system_prompt: str = SHORT_SYSTEM_PROMPT,
    tool_description: str | None = SHORT_TOOL_DESCRIPTION,
) -> Path:
    """Correct transcripts as a `messages` JSONL file (assistant `tool_calls`, named tool
    results): what `off_policy_reasoning dataset_path=...` (FromConversationFileBuilder)
    trains on, rendering the calls in the model's tool format with loss on assistant turns."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w") as f:
        for problem in problems:
            row = {"messages": transcript(problem, renderer, system_prompt, tool_description)}
            f.write(json.dumps(row, default=lambda call: call.model_dump()) + "\n")
    tmp.replace(path)
    return path
