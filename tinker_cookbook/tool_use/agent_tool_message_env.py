"""The tool-using agent episode (`AgentToolMessageEnv`) and `build_agent_tool_env`, which wraps
it in a token-level env.

Each turn the assistant's reply is appended and its tool calls run; their results are appended.
The episode ends when the reply calls no tool (`stop/completed`), a tool asks to stop
(`stop/tool_stopped`), the tool-call budget runs out (`stop/max_tool_calls`), `max_turns` is
reached (`stop/max_turns`), or every call in a reply was unparseable and
`terminate_on_parse_error` (`stop/parse_error`). `reward_fn` grades the whole history once, at
the end; a turn whose calls were all unparseable earns `failed_parse_reward` instead.

The model's mistakes (unknown tool, bad JSON, invalid arguments, unparseable calls) come back
as tool messages it can read; a tool's own exception raises `ToolError` out of `step`.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

from tinker_cookbook.renderers import Renderer
from tinker_cookbook.renderers.messages import (
    Message,
    ToolCall,
    UnparsedToolCall,
    format_content_as_string,
    get_text_content,
)
from tinker_cookbook.rl.message_env import (
    EnvFromMessageEnv,
    MessageEnv,
    MessageStepResult,
    stop_metric,
)
from tinker_cookbook.rl.types import Logs, Metrics, StopReason
from tinker_cookbook.tool_use.tools import error_tool_result, handle_tool_call, tools_system_prompt
from tinker_cookbook.tool_use.types import Tool, ToolResult

RewardResult = tuple[float, dict[str, float]]
RewardFn = Callable[
    [list[Message]], Awaitable[RewardResult] | Awaitable[float] | RewardResult | float
]
"""Grades a finished episode's history: `(reward, metrics)` or a bare reward, sync or async."""
ToolExecution = Literal["parallel", "sequential"]
"""How one reply's calls run: concurrently, or one after another in the order written (for
tools that share state)."""


@dataclass
class AgentToolMessageEnv(MessageEnv):
    """A tool-using episode in messages. Calls beyond `max_tool_calls` (per episode) are
    dropped and end the episode; calls beyond `max_tool_calls_per_turn` get an error result.
    Every `ToolResult` is kept in `tool_results`; its metrics are summed into the step's
    metrics and its metadata is logged (`tool_metadata_<i>`)."""

    tools: Sequence[Tool]
    initial_messages: list[Message]
    max_turns: int
    reward_fn: RewardFn
    failed_parse_reward: float = -0.1
    terminate_on_parse_error: bool = True
    max_tool_calls: int | None = None
    tool_execution: ToolExecution = "parallel"
    max_tool_calls_per_turn: int | None = None
    history: list[Message] = field(default_factory=list)
    tool_results: list[ToolResult] = field(default_factory=list, init=False)
    _turn_count: int = field(default=0, init=False)
    _tool_calls_made: int = field(default=0, init=False)
    _should_stop: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        for i, candidate in enumerate(self.tools):
            if not isinstance(candidate, Tool):
                raise TypeError(
                    f"tools[{i}] ({candidate!r}) is not a Tool: it needs name, description, "
                    "parameters_schema, run and to_spec (or use @tool on a function)"
                )
        names = [t.name for t in self.tools]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"two tools share the name(s) {duplicates}")
        if self.tool_execution not in get_args(ToolExecution):
            raise ValueError(
                f"tool_execution={self.tool_execution!r}; expected one of "
                f"{list(get_args(ToolExecution))}"
            )
        self._tool_dict = {t.name: t for t in self.tools}

    async def initial_observation(self) -> list[Message]:
        if not self.history:
            self.history = list(self.initial_messages)
        return self.history

    async def step(self, message: Message) -> MessageStepResult:
        self._turn_count += 1
        self.history.append(message)
        metrics: Metrics = {}
        logs: Logs = {}
        if text := get_text_content(message):
            logs["assistant_content"] = text
        calls: list[ToolCall] = list(message.get("tool_calls") or [])
        unparsed: list[UnparsedToolCall] = list(message.get("unparsed_tool_calls") or [])
        capped = await self._run_calls(calls, metrics, logs)
        if unparsed:
            self._answer_unparsed(unparsed, metrics, logs)
            if not calls:
                return self._parse_failure(metrics, logs)
        reason = self._stop_reason(calls, capped)
        reward = 0.0
        if reason is not None:
            metrics[stop_metric(reason)] = 1.0
            reward, reward_metrics = await self._grade()
            metrics.update(reward_metrics)
        done = reason is not None
        return MessageStepResult(reward, done, self._conversation(), metrics, logs)

    def _conversation(self) -> list[Message]:
        """A copy of the history: a step's result must not change as the episode goes on."""
        return list(self.history)

    def _parse_failure(self, metrics: Metrics, logs: Logs) -> MessageStepResult:
        """Every call was unparseable: `failed_parse_reward`, and no grading."""
        done = self.terminate_on_parse_error or self._turn_count >= self.max_turns
        if done:
            metrics[stop_metric(StopReason.PARSE_ERROR)] = 1.0
        return MessageStepResult(
            self.failed_parse_reward, done, self._conversation(), metrics, logs
        )

    def _stop_reason(self, calls: list[ToolCall], capped: bool) -> StopReason | None:
        if not calls:
            return StopReason.COMPLETED
        if self._should_stop:
            return StopReason.TOOL_STOPPED
        if capped:
            return StopReason.MAX_TOOL_CALLS
        if self._turn_count >= self.max_turns:
            return StopReason.MAX_TURNS
        return None

    async def _run_calls(self, calls: list[ToolCall], metrics: Metrics, logs: Logs) -> bool:
        """Run this reply's calls within the budgets; True when the episode budget cut it."""
        allowed = calls
        if self.max_tool_calls is not None:
            allowed = calls[: max(self.max_tool_calls - self._tool_calls_made, 0)]
            if len(allowed) < len(calls):
                logs["tool_calls_dropped"] = (
                    f"{len(calls) - len(allowed)} call(s) not run: "
                    f"max_tool_calls={self.max_tool_calls} reached"
                )
        per_turn = self.max_tool_calls_per_turn
        run_now = allowed if per_turn is None else allowed[:per_turn]
        results = await self._execute(run_now)
        results += [
            error_tool_result(
                f"not run: at most {per_turn} tool calls per turn",
                call_id=call.id,
                name=call.function.name,
                error_type="too_many_calls",
            )
            for call in allowed[len(run_now) :]
        ]
        self._tool_calls_made += len(run_now)
        if calls:
            metrics["tool_calls"] = float(len(run_now))
        for i, (call, result) in enumerate(zip(allowed, results, strict=True)):
            self._record(i, call, result, metrics, logs)
        return len(allowed) < len(calls)

    async def _execute(self, calls: list[ToolCall]) -> list[ToolResult]:
        if self.tool_execution == "sequential":
            return [await handle_tool_call(self._tool_dict, call) for call in calls]
        return list(await asyncio.gather(*[handle_tool_call(self._tool_dict, c) for c in calls]))

    def _record(
        self, i: int, call: ToolCall, result: ToolResult, metrics: Metrics, logs: Logs
    ) -> None:
        self.tool_results.append(result)
        self.history.extend(result.messages)
        self._should_stop = self._should_stop or result.should_stop
        for key, value in result.metrics.items():
            metrics[key] = metrics.get(key, 0.0) + value
        if error := result.metadata.get("error"):
            key = f"tool_errors/{error}"
            metrics[key] = metrics.get(key, 0.0) + 1.0
        logs[f"tool_call_{i}"] = f"{call.function.name}({call.function.arguments})"
        contents = [format_content_as_string(m["content"]) for m in result.messages]
        logs[f"tool_result_{i}"] = "\n".join(contents)
        if result.metadata:
            logs[f"tool_metadata_{i}"] = json.dumps(result.metadata, default=str)

    def _answer_unparsed(
        self, unparsed: list[UnparsedToolCall], metrics: Metrics, logs: Logs
    ) -> None:
        """Tell the model, in a tool message per call, why its call could not be read."""
        metrics["parse_error"] = 1.0
        logs["parse_errors"] = "\n".join(u.error for u in unparsed)
        for u in unparsed:
            error = {"error": f"tool call could not be parsed: {u.error}"}
            self.history.append({"role": "tool", "content": json.dumps(error, ensure_ascii=False)})

    async def _grade(self) -> tuple[float, dict[str, float]]:
        result = self.reward_fn(self.history)
        if inspect.isawaitable(result):
            result = await result
        reward, metrics = result if isinstance(result, tuple) else (result, {})
        return float(reward), dict(metrics)


def build_agent_tool_env(
    renderer: Renderer,
    tools: Sequence[Tool],
    initial_messages: list[Message],
    reward_fn: RewardFn,
    *,
    max_turns: int = 5,
    failed_parse_reward: float = -0.1,
    terminate_on_parse_error: bool = True,
    max_tool_calls: int | None = None,
    max_trajectory_tokens: int | None = None,
    max_generation_tokens: int | None = None,
    context_overflow_reward: float = -0.1,
    tool_execution: ToolExecution = "parallel",
    max_tool_calls_per_turn: int | None = None,
    system_prompt: str | None = None,
    tool_description: str | None = None,
) -> EnvFromMessageEnv:
    """A token-level env for an agent with `tools`.

    `initial_messages` are used as given: declare the tools in them, e.g. with
    `renderer.create_conversation_prefix_with_tools([t.to_spec() for t in tools], prompt)`.
    Or set `system_prompt` ("" for none) or `tool_description`: `tool_declaration`'s messages
    then come first, replacing any system message given (whose text is the prompt when
    `system_prompt` is None). `failed_parse_reward` is the reward of a reply
    that does not parse or whose calls all fail to parse (ending the episode when
    `terminate_on_parse_error`); `max_generation_tokens` is the room the episode keeps for
    each reply within `max_trajectory_tokens` (see `EnvFromMessageEnv`).
    """
    messages = _with_tool_declaration(
        renderer, tools, initial_messages, system_prompt, tool_description
    )
    message_env = AgentToolMessageEnv(
        tools=tools,
        initial_messages=messages,
        max_turns=max_turns,
        reward_fn=reward_fn,
        failed_parse_reward=failed_parse_reward,
        terminate_on_parse_error=terminate_on_parse_error,
        max_tool_calls=max_tool_calls,
        tool_execution=tool_execution,
        max_tool_calls_per_turn=max_tool_calls_per_turn,
    )
    return EnvFromMessageEnv(
        renderer=renderer,
        message_env=message_env,
        failed_parse_reward=failed_parse_reward,
        terminate_on_parse_error=terminate_on_parse_error,
        max_trajectory_tokens=max_trajectory_tokens,
        max_generation_tokens=max_generation_tokens,
        context_overflow_reward=context_overflow_reward,
    )


def tool_declaration(
    renderer: Renderer,
    tools: Sequence[Tool],
    system_prompt: str | None,
    tool_description: str | None = None,
) -> list[Message]:
    """The messages that open a tool episode. By default the model's own tool declaration
    (`renderer.create_conversation_prefix_with_tools`: what the model was trained to read, and
    the call format its `parse_response` reads back); a format without one gets the schemas as
    text (`tools_system_prompt`). `tool_description` replaces the schemas with a short text, for
    small models whose prompt would otherwise be mostly schema."""
    if tool_description is not None:
        text = "\n\n".join(p for p in (system_prompt, tool_description) if p)
        return [{"role": "system", "content": text}] if text else []
    try:
        specs = [t.to_spec() for t in tools]
        return renderer.create_conversation_prefix_with_tools(specs, system_prompt or "")
    except NotImplementedError:
        return [{"role": "system", "content": tools_system_prompt(tools, system_prompt)}]


def _with_tool_declaration(
    renderer: Renderer,
    tools: Sequence[Tool],
    messages: list[Message],
    system_prompt: str | None,
    tool_description: str | None,
) -> list[Message]:
    if system_prompt is None and tool_description is None:
        return list(messages)
    if system_prompt is None:
        given = [get_text_content(m) for m in messages if m["role"] == "system"]
        system_prompt = given[0] if given else None
    rest = [m for m in messages if m["role"] != "system"]
    return [*tool_declaration(renderer, tools, system_prompt, tool_description), *rest]
