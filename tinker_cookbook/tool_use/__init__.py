"""Generic agent-tool interaction: `@tool`, `ToolResult`, the agent episode loop and
`build_agent_tool_env` (token-level environments from tools + renderer + reward function)."""

from tinker_cookbook.tool_use.agent_env import (
    AgentToolEnv,
    AgentToolMessageEnv,
    MessageStepResult,
    RewardFn,
    build_agent_tool_env,
    tools_system_prompt,
)
from tinker_cookbook.tool_use.tools import Tool, ToolResult, tool

__all__ = [
    "AgentToolEnv",
    "AgentToolMessageEnv",
    "MessageStepResult",
    "RewardFn",
    "Tool",
    "ToolResult",
    "build_agent_tool_env",
    "tool",
    "tools_system_prompt",
]
