"""Tools for LLM agents: `@tool`, the `Tool` protocol, tool results, and the agent episode
(`AgentToolMessageEnv`, `build_agent_tool_env`) that RL and distillation train on."""

from tinker_cookbook.renderers.messages import ToolSpec
from tinker_cookbook.tool_use.agent_tool_message_env import (
    AgentToolMessageEnv,
    RewardFn,
    ToolExecution,
    build_agent_tool_env,
    tool_declaration,
)
from tinker_cookbook.tool_use.tools import (
    FunctionTool,
    error_tool_result,
    handle_tool_call,
    simple_tool_result,
    tool,
    tools_system_prompt,
)
from tinker_cookbook.tool_use.types import Tool, ToolError, ToolInput, ToolResult

__all__ = [
    "AgentToolMessageEnv",
    "FunctionTool",
    "RewardFn",
    "Tool",
    "ToolError",
    "ToolExecution",
    "ToolInput",
    "ToolResult",
    "ToolSpec",
    "build_agent_tool_env",
    "error_tool_result",
    "handle_tool_call",
    "simple_tool_result",
    "tool",
    "tool_declaration",
    "tools_system_prompt",
]
