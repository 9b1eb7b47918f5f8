"""Agent episodes with tools: a message-level loop and the token-level Env the RL and
distillation loops train on.

Each turn the assistant's message is appended, its tool calls run (in parallel or in order,
optionally capped), and their results are appended. The episode ends when the assistant calls
no tool, a tool asks to stop, `max_turns` is reached, a tool call is malformed (with
`on_malformed="end"`; `"retry"` instead tells the model what was wrong and lets it try again),
the reply is cut off at max_tokens, or the context would exceed `max_trajectory_tokens`. The
reward function runs once, at the end, on the whole history.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from tinker import types

from tinker_cookbook.renderers import Message, Renderer
from tinker_cookbook.rl.types import Env, Metrics, StepResult, StopCondition
from tinker_cookbook.tool_use.tools import Tool, ToolResult

RewardFn = Callable[
    [list[Message]], Awaitable[float | tuple[float, Metrics]] | float | tuple[float, Metrics]
]


@dataclass
class MessageStepResult:
    new_messages: list[Message]
    done: bool
    end_reason: str | None = None
    metrics: Metrics = field(default_factory=dict)


class AgentToolMessageEnv:
    """The message-level episode loop; knows nothing about tokens."""

    def __init__(
        self,
        tools: Sequence[Tool],
        initial_messages: list[Message],
        reward_fn: RewardFn,
        max_turns: int = 10,
        parallel_tool_calls: bool = True,
        max_tool_calls_per_turn: int | None = None,
        on_malformed: str = "end",  # end | retry
        malformed_penalty: float = 0.0,
    ):
        if on_malformed not in ("end", "retry"):
            raise ValueError(f"on_malformed={on_malformed!r} is not 'end' or 'retry'")
        self.tools = {t.name: t for t in tools}
        self.history: list[Message] = list(initial_messages)
        self.reward_fn, self.max_turns = reward_fn, max_turns
        self.parallel, self.max_calls = parallel_tool_calls, max_tool_calls_per_turn
        self.on_malformed, self.malformed_penalty = on_malformed, malformed_penalty
        self.turns = 0
        self.penalty = 0.0
        self.metrics: Metrics = {}

    async def step(self, message: Message) -> MessageStepResult:
        self.turns += 1
        self.history.append(message)
        if "tool_call_error" in message:
            self._count("tool/malformed_calls")
            if self.on_malformed == "end":
                self.penalty += self.malformed_penalty
                return MessageStepResult([], True, "malformed_tool_call")
            correction: Message = {
                "role": "user",
                "content": f"Your tool call could not be used: {message['tool_call_error']}. Reply again with a valid call.",
            }
            self.history.append(correction)
            return self._continue([correction])
        calls = message.get("tool_calls", [])
        if not calls:
            return MessageStepResult([], True, "no_tool_call")
        results = await self._run_calls(calls)
        new = [m for r in results for m in r.messages]
        self.history += new
        for r in results:
            for key, value in r.metrics.items():
                self.metrics[key] = self.metrics.get(key, 0.0) + value
        if any(r.should_stop for r in results):
            return MessageStepResult(new, True, "tool_stop")
        return self._continue(new)

    def _continue(self, new: list[Message]) -> MessageStepResult:
        if self.turns >= self.max_turns:
            return MessageStepResult(new, True, "max_turns")
        return MessageStepResult(new, False)

    async def _run_calls(self, calls: list[dict]) -> list[ToolResult]:
        allowed = calls if self.max_calls is None else calls[: self.max_calls]
        skipped = calls[len(allowed) :]
        if self.parallel:
            results = list(await asyncio.gather(*[self._run_one(c) for c in allowed]))
        else:
            results = [await self._run_one(c) for c in allowed]
        for call in skipped:
            results.append(
                ToolResult.text(
                    call["name"], f"Error: not run: at most {self.max_calls} tool calls per turn"
                )
            )
        self._count("tool/calls", len(allowed))
        return results

    async def _run_one(self, call: dict) -> ToolResult:
        tool = self.tools.get(call["name"])
        if tool is None:
            return ToolResult.text(
                call["name"],
                f"Error: unknown tool {call['name']!r}; available tools: {', '.join(sorted(self.tools))}",
                metrics={"tool/unknown_tool": 1.0},
            )
        return await tool(call.get("arguments", {}))

    async def final_reward(self) -> tuple[float, Metrics]:
        result = self.reward_fn(self.history)
        if inspect.isawaitable(result):
            result = await result
        reward, metrics = result if isinstance(result, tuple) else (float(result), {})
        return float(reward) + self.penalty, {**self.metrics, **metrics}

    def _count(self, key: str, n: float = 1.0) -> None:
        self.metrics[key] = self.metrics.get(key, 0.0) + n


def tools_system_prompt(tools: Sequence[Tool], base: str | None = None) -> str:
    """Describe the tools and how to call them (the `<tool_call>` JSON format)."""
    specs = "\n".join(json.dumps(t.spec(), ensure_ascii=False) for t in tools)
    intro = f"{base}\n\n" if base else ""
    return (
        f"{intro}# Tools\n\nThese functions are available; each is described by a JSON schema:\n"
        f"<tools>\n{specs}\n</tools>\n\n"
        'To call one, write a JSON object with "name" and "arguments" between <tool_call> and '
        "</tool_call> tags. Results come back inside <tool_response> tags. Reply without a tool "
        "call when you are done."
    )


class AgentToolEnv(Env):
    """Token-level view of an AgentToolMessageEnv.

    Each observation is the previous observation, the tokens the model sampled, and the newly
    rendered tool messages plus the next assistant header: the conversation rendered again,
    except that the model's own turns keep their exact sampled tokens, so the episode is one
    training sequence in which every environment token is masked.
    """

    def __init__(
        self, renderer: Renderer, message_env: AgentToolMessageEnv, max_trajectory_tokens: int
    ):
        self.renderer, self.message_env = renderer, message_env
        self.max_trajectory_tokens = max_trajectory_tokens
        self.tokens: list[int] = []

    async def initial_observation(self) -> tuple[types.ModelInput, StopCondition]:
        prompt = self.renderer.build_generation_prompt(self.message_env.history)
        self.tokens = prompt.to_ints()
        return prompt, self.renderer.get_stop_sequences()

    async def step(self, action: list[int]) -> StepResult:
        message, _ = self.renderer.parse_response(action)
        if not self.renderer.ends_with_stop(action):  # cut off at max_tokens, even mid-call
            message.pop("tool_call_error", None)
            self.message_env.history.append(message)
            return await self._finish("truncated")
        result = await self.message_env.step(message)
        if result.done:
            return await self._finish(result.end_reason or "done")
        tokens = self.tokens + list(action) + self.renderer.render_continuation(result.new_messages)
        if len(tokens) > self.max_trajectory_tokens:
            return await self._finish("context_overflow")
        self.tokens = tokens
        return StepResult(
            0.0, False, types.ModelInput.from_ints(tokens), self.renderer.get_stop_sequences()
        )

    async def _finish(self, reason: str) -> StepResult:
        reward, metrics = await self.message_env.final_reward()
        metrics = {**metrics, f"end_reason/{reason}": 1.0, "turns": float(self.message_env.turns)}
        return StepResult(reward, True, types.ModelInput.empty(), [], metrics)


def tool_system_message(
    tools: Sequence[Tool], system_prompt: str | None, tool_description: str | None = None
) -> str:
    """The system message of a tool-using episode: the tools' JSON schemas and calling
    convention, or `tool_description` in their place (a few lines instead of hundreds of
    tokens, for small models whose prompt would otherwise be mostly schema)."""
    if tool_description is None:
        return tools_system_prompt(tools, system_prompt)
    return "\n\n".join(p for p in (system_prompt, tool_description) if p)


def build_agent_tool_env(
    renderer: Renderer,
    tools: Sequence[Tool],
    initial_messages: list[Message],
    reward_fn: RewardFn,
    max_turns: int = 10,
    max_trajectory_tokens: int = 32768,
    system_prompt: str | None = None,
    tool_description: str | None = None,
    **message_env_options,
) -> AgentToolEnv:
    """A token-level Env: the tools are described in a system message ahead of
    `initial_messages`, and the episode runs as AgentToolMessageEnv describes."""
    messages = [m for m in initial_messages if m["role"] != "system"]
    base = system_prompt or next(
        (m["content"] for m in initial_messages if m["role"] == "system"), None
    )
    content = tool_system_message(tools, base, tool_description)
    system: Message = {"role": "system", "content": content}
    message_env = AgentToolMessageEnv(
        tools, [system, *messages], reward_fn, max_turns, **message_env_options
    )
    return AgentToolEnv(renderer, message_env, max_trajectory_tokens)
