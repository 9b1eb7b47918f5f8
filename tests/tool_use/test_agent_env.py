"""The agent episode: message-level behaviour, then the token-level env from
`build_agent_tool_env` (the one-character renderer, then the real Qwen3 renderer)."""

import asyncio
import json

import pytest

from tests.tool_use.char_renderer import CharRenderer, decode, encode, reply
from tinker_cookbook.local import get_tokenizer
from tinker_cookbook.renderers import get_renderer
from tinker_cookbook.renderers.messages import ToolCall, UnparsedToolCall
from tinker_cookbook.tool_use import (
    AgentToolMessageEnv,
    ToolError,
    ToolInput,
    ToolResult,
    build_agent_tool_env,
    simple_tool_result,
    tool,
)

seen_keys: list[str] = []


@tool
async def lookup(key: str) -> ToolResult:
    """Look a key up."""
    seen_keys.append(key)
    return simple_tool_result({"a": "1", "b": "2"}.get(key, "missing"), metadata={"key": key})


@tool
def finish(answer: str) -> ToolResult:
    """Submit the answer and end."""
    return simple_tool_result("submitted", should_stop=True, metrics={"answers": 1.0})


@tool
def crash(x: int) -> ToolResult:
    """A tool with a bug."""
    return ToolResult(mesages=[])  # type: ignore[call-arg]


class Notes:
    """A user's tool class implementing the protocol by hand."""

    name = "note"
    description = "Keep a note."
    parameters_schema = {"type": "object", "properties": {"text": {"type": "string"}}}

    def __init__(self):
        self.notes: list[str] = []

    async def run(self, input: ToolInput) -> ToolResult:
        self.notes.append(input.arguments["text"])
        return simple_tool_result(f"{len(self.notes)} notes", metadata={"count": len(self.notes)})

    def to_spec(self):
        return {"name": self.name, "description": self.description, "parameters": {}}


def calls(*pairs, text=""):
    tool_calls = [ToolCall.from_arguments(n, a, id=f"c{i}") for i, (n, a) in enumerate(pairs)]
    return {"role": "assistant", "content": text, "tool_calls": tool_calls}


def unparsed(*errors, valid=()):
    message = calls(*valid)
    message["unparsed_tool_calls"] = [UnparsedToolCall(raw_text="{", error=e) for e in errors]
    return message


async def graded(history):
    return float(any(m.get("content") == "submitted" for m in history)), {"len": len(history)}


def message_env(tools=(lookup, finish), **kwargs):
    kwargs.setdefault("max_turns", 5)
    return AgentToolMessageEnv(
        tools=list(tools), initial_messages=[{"role": "user", "content": "go"}],
        reward_fn=graded, **kwargs,
    )  # fmt: skip


def steps(env, *messages):
    async def go():
        await env.initial_observation()
        return [await env.step(m) for m in messages]

    return asyncio.run(go())


def test_calls_run_and_the_episode_ends_without_a_call():
    env = message_env()
    first, last = steps(env, calls(("lookup", {"key": "a"}), ("lookup", {"key": "zz"})), calls())
    assert not first.episode_done and first.reward == 0.0
    assert [m["content"] for m in first.next_messages[2:]] == ["1", "missing"]
    assert [m["tool_call_id"] for m in first.next_messages[2:]] == ["c0", "c1"]
    assert first.metrics == {"tool_calls": 2.0}
    assert last.episode_done and last.reward == 0.0
    assert last.metrics == {"stop/completed": 1.0, "len": 5}
    assert last.next_messages == env.history and len(env.history) == 5


def test_tool_result_metadata_and_metrics_reach_the_caller():
    env = message_env([lookup, finish, Notes()])
    first, last = steps(env, calls(("lookup", {"key": "b"}), ("note", {"text": "x"})),
                        calls(("finish", {"answer": "2"})))  # fmt: skip
    assert [r.metadata for r in env.tool_results[:2]] == [{"key": "b"}, {"count": 1}]
    assert json.loads(first.logs["tool_metadata_1"]) == {"count": 1}
    assert first.logs["tool_call_0"] == 'lookup({"key": "b"})' and first.logs["tool_result_1"]
    assert last.episode_done and last.reward == 1.0
    assert last.metrics["answers"] == 1.0 and last.metrics["stop/tool_stopped"] == 1.0


def test_the_models_mistakes_are_tool_messages_it_can_read():
    env = message_env()
    (step,) = steps(env, calls(("nope", {}), ("lookup", {"key": 3})))
    first, second = (json.loads(m["content"])["error"] for m in step.next_messages[-2:])
    assert first == "unknown tool 'nope'; available tools: finish, lookup"
    assert second.startswith("invalid arguments for tool 'lookup': key: Input should be")
    assert step.metrics["tool_errors/tool_not_found"] == 1.0
    assert step.metrics["tool_errors/validation_failed"] == 1.0 and not step.episode_done


def test_a_tools_bug_ends_the_episode_with_the_tools_name():
    env = message_env([lookup, crash])
    with pytest.raises(ToolError, match="tool 'crash' raised TypeError") as info:
        steps(env, calls(("crash", {"x": 1})))
    assert "mesages" in str(info.value.__cause__)


def test_unparseable_calls_get_a_tool_message_and_failed_parse_reward():
    ended = message_env(failed_parse_reward=-0.7)
    (step,) = steps(ended, unparsed("bad JSON at line 1"))
    assert step.episode_done and step.reward == -0.7
    assert step.metrics == {"parse_error": 1.0, "stop/parse_error": 1.0}
    assert json.loads(step.next_messages[-1]["content"]) == {
        "error": "tool call could not be parsed: bad JSON at line 1"
    }
    retried = message_env(failed_parse_reward=-0.7, terminate_on_parse_error=False)
    first, second = steps(retried, unparsed("oops"), calls(("finish", {"answer": "1"})))
    assert not first.episode_done and first.reward == -0.7
    assert second.episode_done and second.reward == 1.0
    mixed = message_env(failed_parse_reward=-0.7)
    (step,) = steps(mixed, unparsed("oops", valid=[("lookup", {"key": "a"})]))
    assert not step.episode_done and step.reward == 0.0 and step.metrics["parse_error"] == 1.0
    assert [m["content"][:10] for m in step.next_messages[-2:]] == ["1", '{"error": ']


def test_turn_and_call_budgets():
    capped = message_env(max_turns=1)
    (step,) = steps(capped, calls(("lookup", {"key": "a"})))
    assert step.episode_done and step.metrics["stop/max_turns"] == 1.0
    budget = message_env(max_tool_calls=2)
    first, second = steps(budget, calls(("lookup", {"key": "a"})),
                          calls(("lookup", {"key": "b"}), ("lookup", {"key": "c"})))  # fmt: skip
    assert not first.episode_done and second.episode_done
    assert (
        second.metrics["stop/max_tool_calls"] == 1.0
        and "1 call(s) not run" in second.logs["tool_calls_dropped"]
    )
    per_turn = message_env(max_tool_calls_per_turn=1)
    (step,) = steps(per_turn, calls(("lookup", {"key": "a"}), ("lookup", {"key": "b"})))
    assert "at most 1 tool calls per turn" in step.next_messages[-1]["content"]
    assert step.metrics["tool_calls"] == 1.0 and not step.episode_done


def test_sequential_execution_keeps_the_written_order_and_bad_settings_are_named():
    seen_keys.clear()
    env = message_env(tool_execution="sequential")
    steps(env, calls(*[("lookup", {"key": k}) for k in "abcd"]))
    assert seen_keys == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="tool_execution='threads'"):
        message_env(tool_execution="threads")
    with pytest.raises(TypeError, match=r"tools\[1\] \('lookup'\) is not a Tool"):
        message_env([lookup, "lookup"])
    with pytest.raises(ValueError, match=r"share the name\(s\) \['lookup'\]"):
        message_env([lookup, lookup])


def test_token_env_keeps_sampled_tokens_and_renders_tool_results_after_them():
    notes = Notes()
    env = build_agent_tool_env(
        CharRenderer(), [lookup, notes], [{"role": "user", "content": "hi"}], graded
    )
    call = reply(' \ncall note {"text": "x"}')  # the blank line is parsed away

    async def go():
        ob, _ = await env.initial_observation()
        return ob, await env.step(call), await env.step(reply("bye"))

    ob, first, last = asyncio.run(go())
    assert notes.notes == ["x"] and not first.episode_done
    assert first.next_observation.to_ints() == ob.to_ints() + call + encode("[tool]1 notes") + [
        0
    ] + encode("[assistant]")
    assert last.episode_done and last.metrics["stop/completed"] == 1.0


def test_token_env_bounds_and_penalties():
    def env(**kwargs):
        return build_agent_tool_env(
            CharRenderer(), [lookup], [{"role": "user", "content": "hi"}], graded, **kwargs
        )

    async def one(e, action, extra=None):
        await e.initial_observation()
        return await e.step(action, extra=extra)

    cut = asyncio.run(one(env(), encode("call look")))  # no end of turn: max_tokens hit
    assert cut.episode_done and cut.reward == -0.1 and cut.metrics["stop/max_tokens"] == 1.0
    broken = asyncio.run(one(env(failed_parse_reward=-1.0), reply("call lookup {")))
    assert broken.episode_done and broken.reward == -1.0
    tight = env(max_trajectory_tokens=60, max_generation_tokens=20)
    step = asyncio.run(one(tight, reply('call lookup {"key": "a"}')))
    assert step.episode_done and step.metrics["stop/context_overflow"] == 1.0


def test_system_prompt_or_tool_description_declares_the_tools():
    def first_prompt(**kwargs):
        messages = [{"role": "system", "content": "Old."}, {"role": "user", "content": "hi"}]
        e = build_agent_tool_env(CharRenderer(), [lookup], messages, graded, **kwargs)
        return decode(asyncio.run(e.initial_observation())[0].to_ints())

    assert first_prompt() == "[system]Old.|[user]hi|[assistant]"
    assert first_prompt(system_prompt="New.").startswith("[system]New.\n\n# Tools\n")
    assert first_prompt(system_prompt="").startswith("[system]# Tools\n")
    short = first_prompt(tool_description="Call lookup(key).")
    assert short == "[system]Old.\n\nCall lookup(key).|[user]hi|[assistant]"


QWEN_TOKENIZER = get_tokenizer("tiny-qwen3-1m")


def qwen_reply(text: str) -> list[int]:
    return QWEN_TOKENIZER.encode(text, add_special_tokens=False) + [
        QWEN_TOKENIZER.convert_tokens_to_ids("<|im_end|>")
    ]


def test_qwen3_episode_with_a_protocol_tool_and_a_decorated_tool():
    renderer = get_renderer("qwen3", QWEN_TOKENIZER)
    notes = Notes()
    env = build_agent_tool_env(
        renderer, [notes, finish], [{"role": "user", "content": "note x"}], graded, max_turns=4
    )
    call = qwen_reply('<tool_call>\n{"name": "note", "arguments": {"text": "x"}}\n</tool_call>')
    done = qwen_reply('<tool_call>\n{"name": "finish", "arguments": {"answer": "x"}}\n</tool_call>')

    async def go():
        ob, _ = await env.initial_observation()
        return ob, await env.step(call), await env.step(done)

    ob, first, last = asyncio.run(go())
    assert notes.notes == ["x"] and not first.episode_done
    observation = first.next_observation.to_ints()
    assert observation[: ob.length + len(call)] == ob.to_ints() + call
    added = QWEN_TOKENIZER.decode(observation[ob.length + len(call) :])
    assert "<tool_response>\n1 notes\n</tool_response>" in added
    assert added.endswith("<|im_start|>assistant\n")
    assert last.episode_done and last.reward == 1.0 and last.metrics["stop/tool_stopped"] == 1.0


def test_qwen3_malformed_call_is_read_back_to_the_model():
    renderer = get_renderer("qwen3", QWEN_TOKENIZER)
    env = build_agent_tool_env(
        renderer, [finish], [{"role": "user", "content": "hi"}], graded,
        terminate_on_parse_error=False, failed_parse_reward=-0.5,
    )  # fmt: skip
    broken = qwen_reply('<tool_call>\n{"name": "finish", "arguments": {"answer": }\n</tool_call>')

    async def go():
        await env.initial_observation()
        return await env.step(broken)

    step = asyncio.run(go())
    assert not step.episode_done and step.reward == -0.5 and step.metrics["parse_error"] == 1.0
    text = QWEN_TOKENIZER.decode(step.next_observation.to_ints())
    assert "tool call could not be parsed" in text
