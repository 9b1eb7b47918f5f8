"""`@tool` turns a function or method into a `Tool`, and `handle_tool_call` runs a model's call.

The name comes from the function, the description from the first paragraph of its docstring,
the JSON schema from its signature (`Annotated[str, "what it is"]` or a pydantic `Field`
describes a parameter; pydantic models may be parameter types). A decorated function returns a
`ToolResult` (`simple_tool_result(text)` for the common case).

Who sees a failure: a mistake in the model's call (unknown tool, bad JSON, missing or invalid
arguments) comes back as a tool message the model can read; a failure the tool expects (file
not found, ...) is the tool returning `error_tool_result(...)`; an exception raised by the
tool's own code is a bug, so it propagates to the user (as `ToolError` from an episode).
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import typing
from collections.abc import Callable, Sequence
from typing import Annotated, Any, get_args, get_origin, overload

import pydantic

from tinker_cookbook.renderers.messages import Content, Message, ToolCall, ToolSpec
from tinker_cookbook.tool_use.types import Tool, ToolError, ToolInput, ToolResult


def simple_tool_result(
    content: Content,
    *,
    call_id: str | None = "",
    name: str = "",
    should_stop: bool = False,
    metrics: dict[str, float] | None = None,
    metadata: dict[str, Any] | None = None,
) -> ToolResult:
    """One `tool` message with `content` (text or content parts). An empty `call_id`/`name`
    is filled in from the call when the tool runs in an episode."""
    message = Message(role="tool", content=content, tool_call_id=call_id or "", name=name)
    return ToolResult(
        messages=[message],
        should_stop=should_stop,
        metrics=metrics or {},
        metadata=metadata or {},
    )


def error_tool_result(
    error_msg: str,
    *,
    call_id: str | None = "",
    name: str = "",
    error_type: str = "execution_error",
    should_stop: bool = False,
) -> ToolResult:
    """A failure the model should read: content `{"error": error_msg}`, and
    `metadata["error"] = error_type` for the caller."""
    result = simple_tool_result(
        json.dumps({"error": error_msg}, ensure_ascii=False),
        call_id=call_id,
        name=name,
        should_stop=should_stop,
    )
    result.metadata["error"] = error_type
    return result


def label_tool_result(result: ToolResult, call_id: str, name: str) -> ToolResult:
    """Fill in the `tool_call_id` and `name` a tool left empty on its tool messages."""
    for message in result.messages:
        if message["role"] != "tool":
            continue
        if not message.get("tool_call_id") and call_id:
            message["tool_call_id"] = call_id
        if not message.get("name"):
            message["name"] = name
    return result


class FunctionTool:
    """A `Tool` made from a function or method by `@tool`. On a class it binds like a method:
    `obj.search` is a tool that runs with `obj` as `self`."""

    def __init__(
        self, fn: Callable[..., Any], name: str | None = None, description: str | None = None
    ):
        self._fn = fn
        self._name = name or fn.__name__
        doc = _first_paragraph(inspect.getdoc(fn) or "")
        self._description = doc if description is None else description
        self._is_method = _is_method(fn)
        self._params_model = _arguments_model(fn, self._name, self._is_method)
        self._instance: Any = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def description(self) -> str:
        return self._description

    @property
    def parameters_schema(self) -> dict[str, Any]:
        return _strip_titles(self._params_model.model_json_schema())

    def to_spec(self) -> ToolSpec:
        return ToolSpec(
            name=self.name, description=self.description, parameters=self.parameters_schema
        )

    def __get__(self, instance: Any, owner: type | None = None) -> FunctionTool:
        if instance is None:
            return self
        bound = copy.copy(self)
        bound._instance = instance
        return bound

    async def run(self, input: ToolInput) -> ToolResult:
        """Validate the arguments (invalid ones: an error result for the model) and call the
        function; its exceptions propagate, noted with the tool's name."""
        call_id = input.call_id or ""
        try:
            parsed = self._params_model.model_validate(input.arguments)
        except pydantic.ValidationError as exc:
            return error_tool_result(
                f"invalid arguments for tool {self.name!r}: {_describe_errors(exc)}",
                call_id=call_id,
                name=self.name,
                error_type="validation_failed",
            )
        kwargs = {field: getattr(parsed, field) for field in self._params_model.model_fields}
        result = await self._call(kwargs)
        if not isinstance(result, ToolResult):
            raise TypeError(
                f"tool {self.name!r} returned {type(result).__name__}, not a ToolResult "
                "(wrap text with simple_tool_result(...))"
            )
        return label_tool_result(result, call_id, self.name)

    async def _call(self, kwargs: dict[str, Any]) -> Any:
        if self._is_method and self._instance is None:
            raise TypeError(
                f"tool {self.name!r} is a method: use it from an instance (obj.{self.name})"
            )
        args = (self._instance,) if self._is_method else ()
        try:
            if inspect.iscoroutinefunction(self._fn):
                return await self._fn(*args, **kwargs)
            return await asyncio.to_thread(self._fn, *args, **kwargs)
        except Exception as exc:
            exc.add_note(f"raised inside tool {self.name!r}")
            raise

    def __repr__(self) -> str:
        return f"FunctionTool({self.name!r})"


@overload
def tool(fn: Callable[..., Any], /) -> FunctionTool: ...
@overload
def tool(
    *, name: str | None = None, description: str | None = None
) -> Callable[[Callable[..., Any]], FunctionTool]: ...
def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
) -> FunctionTool | Callable[[Callable[..., Any]], FunctionTool]:
    """Decorator: `@tool`, or `@tool(name=..., description=...)` to override either."""
    if fn is None:
        return lambda f: FunctionTool(f, name, description)
    return FunctionTool(fn, name, description)


async def handle_tool_call(tools: dict[str, Tool], tool_call: ToolCall) -> ToolResult:
    """Run one call the model made. Its own mistakes become error results it can read; an
    exception from the tool, or a result that is not a ToolResult, raises `ToolError`."""
    name, call_id = tool_call.function.name, tool_call.id or ""
    found = tools.get(name)
    if found is None:
        return error_tool_result(
            f"unknown tool {name!r}; available tools: {', '.join(sorted(tools))}",
            call_id=call_id,
            name=name,
            error_type="tool_not_found",
        )
    try:
        arguments = tool_call.parsed_arguments()
    except ValueError as exc:
        return error_tool_result(
            str(exc), call_id=call_id, name=name, error_type="json_decode_failed"
        )
    try:
        result = await found.run(ToolInput(arguments=arguments, call_id=call_id))
    except Exception as exc:
        raise ToolError(f"tool {name!r} raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(result, ToolResult):
        raise ToolError(f"tool {name!r} returned {type(result).__name__}, not a ToolResult")
    return label_tool_result(result, call_id, name)


def tools_system_prompt(tools: Sequence[Tool], base: str | None = None) -> str:
    """A renderer-independent text declaring the tools and the `<tool_call>` JSON format
    (renderers with a native declaration offer `create_conversation_prefix_with_tools`)."""
    specs = "\n".join(
        json.dumps({"type": "function", "function": t.to_spec()}, ensure_ascii=False) for t in tools
    )
    intro = f"{base}\n\n" if base else ""
    return (
        f"{intro}# Tools\n\nThese functions are available; each is described by a JSON schema:\n"
        f"<tools>\n{specs}\n</tools>\n\n"
        'To call one, write a JSON object with "name" and "arguments" between <tool_call> and '
        "</tool_call> tags. Results come back inside <tool_response> tags. Reply without a tool "
        "call when you are done."
    )


def _is_method(fn: Callable[..., Any]) -> bool:
    params = list(inspect.signature(fn).parameters)
    return bool(params) and params[0] == "self"


def _arguments_model(
    fn: Callable[..., Any], name: str, skip_self: bool
) -> type[pydantic.BaseModel]:
    """A pydantic model of the parameters; unknown argument names are rejected."""
    hints = typing.get_type_hints(fn, include_extras=True)
    params = list(inspect.signature(fn).parameters.values())[int(skip_self) :]
    fields: dict[str, Any] = {}
    for param in params:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {name!r}: *args/**kwargs cannot be described to a model")
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (_with_description(hints.get(param.name, Any)), default)
    model_name = "".join(part.capitalize() for part in name.split("_")) + "Arguments"
    config = pydantic.ConfigDict(extra="forbid")
    return pydantic.create_model(model_name, __config__=config, **fields)


def _with_description(annotation: Any) -> Any:
    """`Annotated[T, "text"]` -> `Annotated[T, Field(description="text")]`."""
    if get_origin(annotation) is Annotated:
        base, *extras = get_args(annotation)
        extras = [pydantic.Field(description=e) if isinstance(e, str) else e for e in extras]
        return Annotated[(base, *extras)]
    return annotation


def _strip_titles(schema: Any) -> Any:
    """Drop pydantic's generated `title`s (tokens a model does not need); a parameter named
    `title` is a dict-valued key of `properties`, and stays."""
    if isinstance(schema, dict):
        return {
            k: _strip_titles(v)
            for k, v in schema.items()
            if not (k == "title" and isinstance(v, str))
        }
    if isinstance(schema, list):
        return [_strip_titles(v) for v in schema]
    return schema


def _first_paragraph(doc: str) -> str:
    return doc.strip().split("\n\n")[0].replace("\n", " ")


def _describe_errors(exc: pydantic.ValidationError) -> str:
    """`argument: problem, got value` for each invalid argument."""
    parts = []
    for error in exc.errors():
        where = ".".join(map(str, error["loc"])) or "arguments"
        got = "" if error["type"] == "missing" else f", got {error['input']!r}"
        parts.append(f"{where}: {error['msg']}{got}")
    return "; ".join(parts)
