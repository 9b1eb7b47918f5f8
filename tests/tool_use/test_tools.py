"""@tool: schemas from signatures, and errors returned to the model instead of raised."""

import asyncio
from typing import Annotated

import pydantic

from tinker_cookbook.tool_use import ToolResult, tool


class Point(pydantic.BaseModel):
    x: int
    y: int = 0


@tool
def add(a: Annotated[int, "the first number"], b: int = 2) -> int:
    """Add two integers.

    Longer text that is not part of the description."""
    return a + b


@tool(name="explode")
def fails(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(reason)


class Counter:
    def __init__(self):
        self.total = 0

    @tool
    async def bump(
        self, by: Annotated[int, pydantic.Field(ge=1, description="step")], p: Point | None = None
    ) -> ToolResult:
        """Increase the counter."""
        self.total += by
        return ToolResult.text(
            "bump", str(self.total), should_stop=self.total >= 3, metrics={"bumps": 1.0}
        )


def call(t, args):
    return asyncio.run(t(args))


def test_schema_from_signature_and_docstring():
    spec = add.spec()["function"]
    assert spec["name"] == "add" and spec["description"] == "Add two integers."
    assert spec["parameters"]["properties"]["a"] == {
        "description": "the first number",
        "type": "integer",
    }
    assert spec["parameters"]["required"] == ["a"]
    bump = Counter.bump.spec()["function"]
    assert bump["parameters"]["properties"]["by"]["minimum"] == 1
    assert "Point" in str(bump["parameters"]) and fails.name == "explode"
    mode = tool(lambda mode: mode)  # noqa: E731
    assert mode.name == "<lambda>"


def test_sync_async_and_methods():
    assert call(add, {"a": 1}).messages[0]["content"] == "3"
    counter = Counter()
    r = call(counter.bump, {"by": 2, "p": {"x": 1}})
    assert r.messages[0]["content"] == "2" and not r.should_stop and r.metrics == {"bumps": 1.0}
    assert call(counter.bump, {"by": 1}).should_stop
    assert counter.total == 3


def test_errors_become_messages_for_the_model():
    bad_type = call(add, {"a": "seven"}).messages[0]["content"]
    assert bad_type.startswith(
        "Error: invalid arguments for tool 'add': a: Input should be a valid integer"
    )
    assert (
        "b_extra: Extra inputs are not permitted"
        in call(add, {"a": 1, "b_extra": 2}).messages[0]["content"]
    )
    assert "a: Field required" in call(add, {}).messages[0]["content"]
    assert "Expecting value" in call(add, "not json").messages[0]["content"]
    crash = call(fails, {"reason": "disk full"})
    assert crash.messages[0]["content"] == "Error: tool 'explode' failed: RuntimeError: disk full"
    assert crash.metrics == {"tool/exceptions": 1.0}
    assert "greater than or equal to 1" in call(Counter().bump, {"by": 0}).messages[0]["content"]
