"""The cookbook's documented tool-use snippets: a `@tool` function, stateful tools on a class,
a user class implementing the `Tool` protocol, `build_agent_tool_env`, against this package."""

import asyncio
import json
from typing import Annotated

import pytest

from tinker_cookbook.renderers import get_renderer
from tinker_cookbook.tokenizer_utils import get_tokenizer
from tinker_cookbook.tool_use import (
    FunctionTool,
    Tool,
    ToolError,
    ToolInput,
    ToolResult,
    build_agent_tool_env,
    error_tool_result,
    simple_tool_result,
    tool,
)


@tool
async def search(query: Annotated[str, "Search query"]) -> ToolResult:
    """Search for information."""
    return simple_tool_result(json.dumps({"hits": [query.upper()]}))


class MyTools:
    def __init__(self, api_key: str):
        self._api_key = api_key

    @tool
    async def lookup(self, id: Annotated[str, "Document ID"]) -> ToolResult:
        """Look up a document by ID."""
        if id == "missing":
            return error_tool_result(f"no document {id}")
        return simple_tool_result(f"{id} via {self._api_key}")


class Counter:
    """A tool written as a plain class against the `Tool` protocol (no base class)."""

    def __init__(self):
        self.calls = 0

    @property
    def name(self) -> str:
        return "count"

    @property
    def description(self) -> str:
        return "Count how often it was called."

    @property
    def parameters_schema(self) -> dict:
        return {"type": "object", "properties": {}, "required": []}

    async def run(self, input: ToolInput) -> ToolResult:
        self.calls += 1
        return simple_tool_result(str(self.calls), call_id=input.call_id, name=self.name)

    def to_spec(self):
        return {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters_schema,
        }


def test_decorated_function_is_a_function_tool_with_a_schema():
    assert isinstance(search, FunctionTool)
    assert isinstance(search, Tool)
    spec = search.to_spec()
    assert spec["name"] == "search"
    assert spec["description"] == "Search for information."
    assert spec["parameters"]["properties"]["query"]["description"] == "Search query"


def test_stateful_tools_share_instance_state():
    tools = MyTools(api_key="k1")
    result = asyncio.run(tools.lookup.run(ToolInput(arguments={"id": "doc7"}, call_id="c1")))
    assert "doc7 via k1" in json.dumps([str(m["content"]) for m in result.messages])
    missing = asyncio.run(tools.lookup.run(ToolInput(arguments={"id": "missing"})))
    assert "no document missing" in str(missing.messages[0]["content"])


async def reward_fn(history):
    return 1.0, {}


def test_a_protocol_tool_runs_in_an_agent_episode():
    renderer = get_renderer("qwen3", get_tokenizer("tiny-qwen3-1m"))
    counter = Counter()
    assert isinstance(counter, Tool)
    env = build_agent_tool_env(
        renderer=renderer,
        tools=[counter, search],
        initial_messages=[{"role": "user", "content": "count twice"}],
        reward_fn=reward_fn,
        max_turns=3,
    )
    text = '<tool_call>\n{"name": "count", "arguments": {}}\n</tool_call><|im_end|>'
    action = renderer.tokenizer.encode(text, add_special_tokens=False)

    async def episode():
        await env.initial_observation()
        return await env.step(action)

    result = asyncio.run(episode())
    assert counter.calls == 1
    assert not result.episode_done
    shown = renderer.tokenizer.decode(result.next_observation.to_ints())
    assert "<tool_response>\n1\n</tool_response>" in shown, shown[-300:]


def test_a_tools_own_bug_reaches_the_user_not_the_model():
    @tool
    async def broken(x: Annotated[int, "a number"]) -> ToolResult:
        """Always misbuilt."""
        return ToolResult(mesages=[])  # type: ignore[call-arg]  # a typo in the tool's code

    renderer = get_renderer("qwen3", get_tokenizer("tiny-qwen3-1m"))
    env = build_agent_tool_env(
        renderer, [broken], [{"role": "user", "content": "go"}], reward_fn, max_turns=2
    )
    text = '<tool_call>\n{"name": "broken", "arguments": {"x": 1}}\n</tool_call><|im_end|>'

    async def episode():
        await env.initial_observation()
        return await env.step(renderer.tokenizer.encode(text, add_special_tokens=False))

    with pytest.raises(ToolError, match="broken"):
        asyncio.run(episode())


def test_tool_result_metadata_is_kept():
    result = simple_tool_result("ok", metadata={"exit_code": 0})
    assert result.metadata == {"exit_code": 0}
