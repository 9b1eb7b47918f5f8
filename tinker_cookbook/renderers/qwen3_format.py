"""Qwen3's text conventions, byte for byte as its chat template writes them: `<think>` reasoning,
`<tool_call>` JSON calls and the `# Tools` system text. Shared with formats that borrow them."""

from __future__ import annotations

import json
import re
from typing import Any

from tinker_cookbook.renderers.messages import (
    Content,
    Message,
    TextPart,
    ThinkingPart,
    ToolCall,
    ToolSpec,
    UnparsedToolCall,
    ensure_list,
)

_TOOL_CALL_RE = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
_ARGUMENTS_KEY_RE = re.compile(r'"arguments"\s*:\s*')
_DECODER = json.JSONDecoder()

TOOLS_INTRO = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
TOOLS_OUTRO = (
    "\n</tools>\n\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)
UNTERMINATED = "unterminated tool block: '<tool_call>' opened without a matching '</tool_call>'"


def tools_system_text(tools: list[ToolSpec], system_prompt: str = "") -> str:
    """The system message the template writes for `tools=` (each tool `tojson`ed in the OpenAI
    `{"type": "function", "function": ...}` wrapper), after `system_prompt` if any."""
    lines = "".join("\n" + json.dumps(as_openai_tool(t), ensure_ascii=False) for t in tools)
    intro = f"{system_prompt}\n\n" if system_prompt else ""
    return intro + TOOLS_INTRO + lines + TOOLS_OUTRO


def as_openai_tool(tool: ToolSpec | dict[str, Any]) -> dict[str, Any]:
    """A tool in the OpenAI wrapper templates expect (left as is if already wrapped)."""
    if tool.get("type") == "function" and "function" in tool:
        return dict(tool)
    return {"type": "function", "function": dict(tool)}


def format_tool_call(call: ToolCall) -> str:
    """`arguments` is written as stored (JSON text), as the template writes a string."""
    return (
        f'<tool_call>\n{{"name": "{call.function.name}", "arguments": '
        f"{call.function.arguments}}}\n</tool_call>"
    )


def format_tool_calls(calls: list[ToolCall], after_text: bool) -> str:
    """Calls joined by newlines, with one more before them when text precedes."""
    if not calls:
        return ""
    return ("\n" if after_text else "") + "\n".join(format_tool_call(c) for c in calls)


def split_reasoning(content: Content) -> tuple[str, str]:
    """(reasoning, text) as the template reads an assistant message: thinking parts, or for a
    string a `<think>...</think>` prefix (which the template cuts off the text)."""
    if isinstance(content, list):
        parts = ensure_list(content)
        reasoning = "".join(p["thinking"] for p in parts if p["type"] == "thinking")
        return reasoning, "".join(p["text"] for p in parts if p["type"] == "text")
    if "</think>" not in content:
        return "", content
    head, tail = content.split("</think>")[0], content.split("</think>")[-1]
    return head.rstrip("\n").split("<think>")[-1].lstrip("\n"), tail.lstrip("\n")


def frame_reasoning(reasoning: str, text: str) -> str:
    """The block the template writes on the turn being produced, reasoning or not."""
    return "<think>\n" + reasoning.strip("\n") + "\n</think>\n\n" + text.lstrip("\n")


def inline_content(content: Content) -> str:
    """Content as one string, reasoning kept inline as `<think>...</think>` (no framing)."""
    if isinstance(content, str):
        return content
    return "".join(
        f"<think>{p['thinking']}</think>" if p["type"] == "thinking" else p.get("text", "")
        for p in content
    )


def parse_assistant_text(text: str, parse_reasoning: bool = True) -> Message:
    """A decoded reply as a message: reasoning as a thinking part (content stays a string when
    there is none), `<tool_call>` blocks as tool calls or, if they do not parse, as
    `unparsed_tool_calls`."""
    reasoning = ""
    if parse_reasoning and "</think>" in text:
        reasoning, text = split_reasoning(text)
    text, calls, unparsed = _split_tool_calls(text)
    content: Content = text
    if reasoning:
        parts: list = [ThinkingPart(type="thinking", thinking=reasoning)]
        content = parts + ([TextPart(type="text", text=text)] if text else [])
    message = Message(role="assistant", content=content)
    if calls:
        message["tool_calls"] = calls
    if unparsed:
        message["unparsed_tool_calls"] = unparsed
    return message


def _split_tool_calls(text: str) -> tuple[str, list[ToolCall], list[UnparsedToolCall]]:
    blocks = list(_TOOL_CALL_RE.finditer(text))
    calls: list[ToolCall] = []
    unparsed: list[UnparsedToolCall] = []
    for block in blocks:
        parsed = parse_tool_call_json(block.group(1), block.group(0))
        (calls if isinstance(parsed, ToolCall) else unparsed).append(parsed)
    if blocks:
        rest = [text[a.end() : b.start()] for a, b in zip(blocks, blocks[1:], strict=False)]
        rest.append(text[blocks[-1].end() :])
        text = text[: blocks[0].start()].removesuffix("\n") + "".join(r for r in rest if r.strip())
    tail = text[text.rfind("<tool_call>") :] if "<tool_call>" in text else ""
    if tail:
        unparsed.append(UnparsedToolCall(raw_text=tail, error=UNTERMINATED))
    return text, calls, unparsed


def parse_tool_call_json(inner: str, raw_text: str) -> ToolCall | UnparsedToolCall:
    """`{"name": ..., "arguments": {...}}` as a call, keeping the arguments' text as written."""
    try:
        payload = json.loads(inner)
    except json.JSONDecodeError as exc:
        return UnparsedToolCall(raw_text=raw_text, error=f"tool call is not valid JSON: {exc}")
    name = payload.get("name") if isinstance(payload, dict) else None
    arguments = payload.get("arguments", {}) if isinstance(payload, dict) else None
    if not isinstance(name, str) or not isinstance(arguments, dict):
        return UnparsedToolCall(
            raw_text=raw_text,
            error='tool call must be a JSON object {"name": "<string>", "arguments": {...}}',
        )
    call_id = payload.get("id")
    return ToolCall(
        function=ToolCall.FunctionBody(name=name, arguments=_arguments_text(inner, arguments)),
        id=call_id if isinstance(call_id, str) else None,
    )


def _arguments_text(inner: str, arguments: dict[str, Any]) -> str:
    """The arguments exactly as the model wrote them, so re-rendering reproduces its tokens."""
    match = _ARGUMENTS_KEY_RE.search(inner)
    if match:
        try:
            value, end = _DECODER.raw_decode(inner, match.end())
        except json.JSONDecodeError:
            value, end = None, 0
        if value == arguments:
            return inner[match.end() : end]
    return json.dumps(arguments, ensure_ascii=False)
