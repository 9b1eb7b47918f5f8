"""`@tool` and the `Tool` protocol: schemas from signatures, the model's mistakes returned to it,
and a tool's own bugs raised to the user."""

import asyncio
from typing import Annotated

import pydantic
import pytest

from tinker_cookbook.renderers.messages import ToolCall
from tinker_cookbook.tool_use import (
    FunctionTool,
    Tool,
    ToolError,
    ToolInput,
    ToolResult,
    error_tool_result,
    handle_tool_call,
    simple_tool_result,
    tool,
    tools_system_prompt,
)


class Point(pydantic.BaseModel):
    x: int
    y: int = 0


@tool
def add(a: Annotated[int, "the first number"], b: int = 2, title: str = "") -> ToolResult:
    """Add two integers.

    Longer text that is not part of the description."""
    return simple_tool_result(str(a + b))


@tool(name="explode", description="Always fails.")
def fails(reason: str) -> ToolResult:
    raise RuntimeError(reason)


@tool
async def chatty(text: str) -> str:  # a bug: returns text instead of a ToolResult
    """Forgets simple_tool_result."""
    return text


class Counter:
    def __init__(self):
        self.total = 0

    @tool
    async def bump(
        self, by: Annotated[int, pydantic.Field(ge=1, description="step")], p: Point | None = None
    ) -> ToolResult:
        """Increase the counter."""
        self.total += by
        return simple_tool_result(
            str(self.total), should_stop=self.total >= 3, metrics={"bumps": 1.0}
        )


class Clock:
    """A tool written against the protocol, without @tool or inheritance."""

    name = "clock"
    description = "What time it is."
    parameters_schema = {"type": "object", "properties": {}}

    def __init__(self, answer):
        self.answer = answer

    async def run(self, input: ToolInput) -> ToolResult:
        return self.answer

    def to_spec(self):
        return {"name": self.name, "description": self.description, "parameters": {}}


def run(t, args, call_id=None):
    return asyncio.run(t.run(ToolInput(arguments=args, call_id=call_id)))


def call(name, arguments='{"a": 1}', id="c1"):
    return ToolCall(function=ToolCall.FunctionBody(name=name, arguments=arguments), id=id)


def content(result: ToolResult) -> str:
    return result.messages[0]["content"]


def test_schema_from_signature_and_docstring():
    spec = add.to_spec()
    assert spec["name"] == "add" and spec["description"] == "Add two integers."
    assert spec["parameters"]["properties"]["a"] == {
        "description": "the first number",
        "type": "integer",
    }
    assert spec["parameters"]["required"] == ["a"]
    assert "title" in spec["parameters"]["properties"]  # a parameter named title is kept
    bump = Counter.bump.parameters_schema
    assert bump["properties"]["by"]["minimum"] == 1 and "Point" in str(bump)
    assert (fails.name, fails.description) == ("explode", "Always fails.")
    assert isinstance(add, FunctionTool) and isinstance(add, Tool)
    with pytest.raises(TypeError, match=r"tool 'spread': \*args"):
        tool(name="spread")(lambda *xs: xs)


def test_sync_async_and_methods_with_call_id_and_name_filled_in():
    result = run(add, {"a": 1}, call_id="c7")
    assert result.messages == [
        {"role": "tool", "content": "3", "tool_call_id": "c7", "name": "add"}
    ]
    counter = Counter()
    r = run(counter.bump, {"by": 2, "p": {"x": 1}})
    assert content(r) == "2" and not r.should_stop and r.metrics == {"bumps": 1.0}
    assert run(counter.bump, {"by": 1}).should_stop and counter.total == 3
    with pytest.raises(TypeError, match="tool 'bump' is a method: use it from an instance"):
        run(Counter.bump, {"by": 1})


def test_invalid_arguments_come_back_to_the_model_naming_argument_and_value():
    bad = run(add, {"a": "seven"}, call_id="c2")
    assert content(bad).startswith(
        '{"error": "invalid arguments for tool \'add\': a: Input should be a valid integer'
    )
    assert "got 'seven'" in content(bad) and bad.metadata == {"error": "validation_failed"}
    assert bad.messages[0]["tool_call_id"] == "c2"
    assert "b_extra: Extra inputs are not permitted" in content(run(add, {"a": 1, "b_extra": 2}))
    assert "a: Field required" in content(run(add, {}))
    assert "greater than or equal to 1" in content(run(Counter().bump, {"by": 0}))


def test_a_tools_own_exception_propagates_with_its_name():
    with pytest.raises(RuntimeError, match="disk full") as info:
        run(fails, {"reason": "disk full"})
    assert "raised inside tool 'explode'" in info.value.__notes__
    with pytest.raises(TypeError, match="tool 'chatty' returned str, not a ToolResult"):
        run(chatty, {"text": "hi"})


def test_result_helpers():
    ok = simple_tool_result("fine", metadata={"exit_code": 0}, call_id=None)
    assert ok.messages[0] == {"role": "tool", "content": "fine", "tool_call_id": "", "name": ""}
    assert ok.metadata == {"exit_code": 0} and ok.metrics == {} and not ok.should_stop
    err = error_tool_result("no such file", name="read", error_type="not_found", should_stop=True)
    assert content(err) == '{"error": "no such file"}' and err.metadata == {"error": "not_found"}
    assert err.should_stop and err.messages[0]["name"] == "read"


def test_handle_tool_call_answers_the_models_mistakes():
    tools = {"add": add, "clock": Clock(simple_tool_result("noon"))}
    unknown = asyncio.run(handle_tool_call(tools, call("ad")))
    assert "unknown tool 'ad'; available tools: add, clock" in content(unknown)
    assert unknown.metadata == {"error": "tool_not_found"}
    assert unknown.messages[0]["tool_call_id"] == "c1"
    broken = asyncio.run(handle_tool_call(tools, call("add", '{"a": ')))
    assert "arguments of tool call 'add' are not valid JSON" in content(broken)
    assert broken.metadata == {"error": "json_decode_failed"}
    not_object = asyncio.run(handle_tool_call(tools, call("add", "[1]")))
    assert "must be a JSON object, got list" in content(not_object)
    noon = asyncio.run(handle_tool_call(tools, call("clock", "{}", id="c9")))
    assert noon.messages[0] == {"role": "tool", "content": "noon", "tool_call_id": "c9",
                                "name": "clock"}  # fmt: skip


def test_handle_tool_call_raises_a_tools_bug_to_the_user():
    tools = {"explode": fails, "clock": Clock("noon")}
    with pytest.raises(ToolError, match="tool 'explode' raised RuntimeError: boom"):
        asyncio.run(handle_tool_call(tools, call("explode", '{"reason": "boom"}')))
    with pytest.raises(ToolError, match="tool 'clock' returned str, not a ToolResult"):
        asyncio.run(handle_tool_call(tools, call("clock", "{}")))


def test_tools_system_prompt_lists_the_schemas():
    text = tools_system_prompt([add, Clock(None)], "Be brief.")
    assert text.startswith("Be brief.\n\n# Tools\n")
    assert '{"type": "function", "function": {"name": "clock"' in text
