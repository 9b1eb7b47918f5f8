"""`@tool`: a Python function or method becomes a tool a model can call.

The name comes from the function, the description from its docstring, the JSON schema of the
arguments from its signature (`Annotated[str, "what it is"]` or pydantic `Field`s describe a
parameter; pydantic models are allowed as parameter types). Calling a tool never raises: bad
arguments and errors inside the tool come back as a tool message the model can read.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, get_args, get_origin

import pydantic

from tinker_cookbook.renderers import Message


@dataclass
class ToolResult:
    messages: list[Message]
    should_stop: bool = False  # end the episode after this call
    metrics: dict[str, float] = field(default_factory=dict)

    @classmethod
    def text(cls, name: str, content: str, **kwargs: Any) -> ToolResult:
        return cls(messages=[{"role": "tool", "name": name, "content": content}], **kwargs)


class Tool:
    """A callable tool: `await tool(arguments_dict) -> ToolResult`, plus its `spec()`."""

    def __init__(
        self, fn: Callable[..., Any], name: str | None = None, description: str | None = None
    ):
        self.fn = fn
        self.name = name or fn.__name__
        self.description = description or _first_paragraph(inspect.getdoc(fn) or "")
        self._skip_self = _is_method(fn)
        self.arguments_model = _arguments_model(fn, self.name, self._skip_self)
        self._bound_to: Any = None

    def __get__(self, instance: Any, owner: type | None = None) -> Tool:
        if instance is None:
            return self
        bound = object.__new__(Tool)
        bound.__dict__.update(self.__dict__)
        bound._bound_to = instance
        return bound

    @property
    def parameters(self) -> dict[str, Any]:
        return _strip_titles(self.arguments_model.model_json_schema())

    def spec(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    async def __call__(self, arguments: dict[str, Any] | str) -> ToolResult:
        try:
            if isinstance(arguments, str):
                arguments = json.loads(arguments)
            if not isinstance(arguments, dict):
                raise ValueError(f"arguments must be a JSON object, got {type(arguments).__name__}")
            parsed = self.arguments_model.model_validate(arguments)
        except (ValueError, pydantic.ValidationError) as exc:
            return self._error(
                f"invalid arguments for tool {self.name!r}: {_short(exc)}", "tool/invalid_arguments"
            )
        kwargs = {name: getattr(parsed, name) for name in self.arguments_model.model_fields}
        args = (self._bound_to,) if self._skip_self else ()
        try:
            if inspect.iscoroutinefunction(self.fn):
                result = await self.fn(*args, **kwargs)
            else:
                result = await asyncio.to_thread(self.fn, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the model reads the error instead of the run crashing
            return self._error(
                f"tool {self.name!r} failed: {type(exc).__name__}: {exc}", "tool/exceptions"
            )
        return self._as_result(result)

    def _as_result(self, result: Any) -> ToolResult:
        if isinstance(result, ToolResult):
            return result
        content = result if isinstance(result, str) else json.dumps(result, default=str)
        return ToolResult.text(self.name, content)

    def _error(self, message: str, metric: str) -> ToolResult:
        return ToolResult.text(self.name, f"Error: {message}", metrics={metric: 1.0})


def tool(
    fn: Callable[..., Any] | None = None, *, name: str | None = None, description: str | None = None
):
    """Decorator: `@tool` or `@tool(name=..., description=...)`."""
    if fn is None:
        return lambda f: Tool(f, name, description)
    return Tool(fn, name, description)


def _is_method(fn: Callable[..., Any]) -> bool:
    params = list(inspect.signature(fn).parameters)
    return bool(params) and params[0] == "self"


def _arguments_model(
    fn: Callable[..., Any], name: str, skip_self: bool
) -> type[pydantic.BaseModel]:
    hints = typing.get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {}
    for i, (pname, param) in enumerate(inspect.signature(fn).parameters.items()):
        if skip_self and i == 0:
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {name!r}: *args/**kwargs cannot be described to a model")
        annotation = hints.get(pname, Any)
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[pname] = (_describe(annotation), default)
    model_name = "".join(part.capitalize() for part in name.split("_")) + "Arguments"
    return pydantic.create_model(
        model_name, __config__=pydantic.ConfigDict(extra="forbid"), **fields
    )


def _describe(annotation: Any) -> Any:
    """`Annotated[T, "text"]` -> `Annotated[T, Field(description="text")]`."""
    if get_origin(annotation) is Annotated:
        base, *extras = get_args(annotation)
        extras = [pydantic.Field(description=e) if isinstance(e, str) else e for e in extras]
        return Annotated[(base, *extras)]
    return annotation


def _strip_titles(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_titles(v) for k, v in schema.items() if k != "title"}
    if isinstance(schema, list):
        return [_strip_titles(v) for v in schema]
    return schema


def _first_paragraph(doc: str) -> str:
    return doc.strip().split("\n\n")[0].replace("\n", " ")


def _short(exc: Exception) -> str:
    if isinstance(exc, pydantic.ValidationError):
        return "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors()
        )
    return str(exc)
