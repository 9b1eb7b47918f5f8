"""What a tool is (`Tool`), what it receives (`ToolInput`) and what it answers (`ToolResult`).

`Tool` is a Protocol, so any class with these members is a tool without inheriting from
anything; `@tool` builds one from a function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from tinker_cookbook.renderers.messages import Message, ToolSpec


@dataclass
class ToolInput:
    """The arguments the model passed (already decoded from JSON) and the id of its call."""

    arguments: dict[str, Any]
    call_id: str | None = None


@dataclass
class ToolResult:
    """What a call produced: messages for the conversation (usually one `tool` message),
    whether the episode should end, numbers to log, and anything else for the caller
    (`metadata` never reaches the model)."""

    messages: list[Message]
    should_stop: bool = False
    metrics: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


class ToolError(RuntimeError):
    """A tool's own code failed (it raised, or returned something other than a ToolResult).

    This is a bug for the tool's author, so it ends the rollout instead of being shown to the
    model; a failure the model should read is returned as `error_tool_result(...)`."""


@runtime_checkable
class Tool(Protocol):
    """A tool the model can call: implement these members on any class."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def parameters_schema(self) -> dict[str, Any]:
        """JSON schema of the arguments object."""
        ...

    async def run(self, input: ToolInput) -> ToolResult: ...

    def to_spec(self) -> ToolSpec:
        """The declaration a renderer shows the model (inherited by classes that subclass
        `Tool` explicitly; others define it themselves)."""
        return ToolSpec(
            name=self.name, description=self.description, parameters=self.parameters_schema
        )
