"""The agent episode loop and its token-level Env, driven by scripted model replies."""

import asyncio
import json

import pytest

from tinker_cookbook.local import get_tokenizer
from tinker_cookbook.renderers import get_renderer
from tinker_cookbook.tool_use import AgentToolMessageEnv, build_agent_tool_env, tool

CALLS = []


@tool
def lookup(key: str) -> str:
    """Look a key up."""
    CALLS.append(key)
    return {"a": "1", "b": "2"}.get(key, "missing")


@tool
async def finish(answer: str):
    """Submit the answer and end."""
    from tinker_cookbook.tool_use import ToolResult

    return ToolResult.text("finish", "submitted", should_stop=True)


def call_msg(*calls):
    return {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"name": n, "arguments": a} for n, a in calls],
    }


def reward_of(history):
    return float(any(m.get("content") == "submitted" for m in history)), {
        "history_len": float(len(history))
    }


def run(coro):
    return asyncio.run(coro)


def test_message_loop_runs_calls_and_ends_on_no_call():
    env = AgentToolMessageEnv(
        [lookup, finish], [{"role": "user", "content": "go"}], reward_of, max_turns=5
    )
    r = run(env.step(call_msg(("lookup", {"key": "a"}), ("lookup", {"key": "zz"}), ("nope", {}))))
    assert not r.done and [m["content"] for m in r.new_messages][:2] == ["1", "missing"]
    assert "unknown tool 'nope'; available tools: finish, lookup" in r.new_messages[2]["content"]
    r = run(env.step({"role": "assistant", "content": "done"}))
    assert r.done and r.end_reason == "no_tool_call"
    reward, metrics = run(env.final_reward())
    assert reward == 0.0 and metrics["tool/calls"] == 3 and metrics["tool/unknown_tool"] == 1.0


def test_stop_tool_max_turns_and_call_cap():
    env = AgentToolMessageEnv(
        [lookup, finish], [], reward_of, max_turns=5, max_tool_calls_per_turn=1
    )
    r = run(env.step(call_msg(("lookup", {"key": "b"}), ("finish", {"answer": "2"}))))
    assert "at most 1 tool calls per turn" in r.new_messages[1]["content"] and not r.done
    r = run(env.step(call_msg(("finish", {"answer": "2"}))))
    assert r.done and r.end_reason == "tool_stop"
    assert run(env.final_reward())[0] == 1.0
    capped = AgentToolMessageEnv([lookup], [], reward_of, max_turns=1)
    assert run(capped.step(call_msg(("lookup", {"key": "a"})))).end_reason == "max_turns"


def test_malformed_calls_end_with_penalty_or_get_a_retry():
    broken = {
        "role": "assistant",
        "content": "",
        "tool_call_error": "tool call '{' is not valid JSON",
    }
    ender = AgentToolMessageEnv([lookup], [], reward_of, on_malformed="end", malformed_penalty=-0.5)
    assert run(ender.step(dict(broken))).end_reason == "malformed_tool_call"
    assert run(ender.final_reward())[0] == -0.5
    retry = AgentToolMessageEnv([lookup], [], reward_of, on_malformed="retry")
    r = run(retry.step(dict(broken)))
    assert (
        not r.done
        and "could not be used: tool call '{' is not valid JSON" in r.new_messages[0]["content"]
    )
    with pytest.raises(ValueError, match="on_malformed"):
        AgentToolMessageEnv([lookup], [], reward_of, on_malformed="ignore")


def test_token_env_masks_and_extends_one_sequence():
    """Scripted replies through the real Qwen3 renderer: each observation extends the last
    one by exactly the sampled tokens plus the rendered tool result and header."""
    tok = get_tokenizer("Qwen/Qwen3-8B")
    renderer = get_renderer("qwen3", tok)
    env = build_agent_tool_env(
        renderer,
        [lookup, finish],
        [{"role": "user", "content": "What is a?"}],
        reward_of,
        max_turns=4,
    )
    ob0, stop = run(env.initial_observation())
    assert stop == [151645] and "# Tools" in tok.decode(ob0.to_ints())
    reply1 = tok.encode(
        '<tool_call>\n{"name": "lookup", "arguments": {"key": "a"}}\n</tool_call>'
    ) + [151645]
    s1 = run(env.step(reply1))
    assert not s1.episode_done and s1.reward == 0.0
    ob1 = s1.next_observation.to_ints()
    assert ob1[: len(ob0.to_ints()) + len(reply1)] == ob0.to_ints() + reply1
    added = tok.decode(ob1[len(ob0.to_ints()) + len(reply1) :])
    assert (
        added
        == "\n<|im_start|>user\n<tool_response>\n1\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
    )
    reply2 = tok.encode(
        '<tool_call>\n{"name": "finish", "arguments": {"answer": "1"}}\n</tool_call>'
    ) + [151645]
    s2 = run(env.step(reply2))
    assert s2.episode_done and s2.reward == 1.0 and s2.metrics["end_reason/tool_stop"] == 1.0


def test_context_overflow_and_truncation_end_the_episode():
    tok = get_tokenizer("Qwen/Qwen3-8B")
    renderer = get_renderer("qwen3", tok)
    env = build_agent_tool_env(
        renderer, [lookup], [{"role": "user", "content": "hi"}], reward_of, max_trajectory_tokens=10
    )
    run(env.initial_observation())
    reply = tok.encode(
        json.dumps({"x": 1})
        + '<tool_call>\n{"name": "lookup", "arguments": {"key": "a"}}\n</tool_call>'
    ) + [151645]
    assert run(env.step(reply)).metrics["end_reason/context_overflow"] == 1.0
    env2 = build_agent_tool_env(renderer, [lookup], [{"role": "user", "content": "hi"}], reward_of)
    run(env2.initial_observation())
    assert run(env2.step(tok.encode("I was cut off mid"))).metrics["end_reason/truncated"] == 1.0


def test_a_reply_cut_off_inside_a_tool_call_is_truncated_not_malformed():
    tok = get_tokenizer("Qwen/Qwen3-8B")
    renderer = get_renderer("qwen3", tok)
    env = build_agent_tool_env(
        renderer, [lookup], [{"role": "user", "content": "hi"}], reward_of, on_malformed="retry"
    )
    run(env.initial_observation())
    cut = tok.encode('<tool_call>\n{"name": "lookup", "argu')  # no <|im_end|>: max_tokens hit
    result = run(env.step(cut))
    assert result.episode_done and result.metrics["end_reason/truncated"] == 1.0


def test_role_colon_tool_turns_continue_inside_the_user_turn():
    tok = get_tokenizer("Qwen/Qwen3-8B")
    renderer = get_renderer("role_colon", tok)
    env = build_agent_tool_env(
        renderer, [lookup], [{"role": "user", "content": "What is a?"}], reward_of
    )
    ob0, stop = run(env.initial_observation())
    reply = tok.encode(
        ' <tool_call>\n{"name": "lookup", "arguments": {"key": "a"}}\n</tool_call>\n\nUser:'
    )
    step = run(env.step(reply))
    added = tok.decode(step.next_observation.to_ints()[len(ob0.to_ints()) + len(reply) :])
    assert stop == ["\n\nUser:"] and added == " [lookup result]\n1\n\nAssistant:"
