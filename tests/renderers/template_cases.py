"""Conversations checked against the models' own chat templates, and the offline tokenizers
the expected ids are computed with (shared by `make_expected_ids.py` and the tests)."""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from tokenizers import AddedToken

from tinker_cookbook.renderers import Message, ToolCall
from tinker_cookbook.tokenizer_utils import get_tokenizer

FIXTURES = Path(__file__).parent / "fixtures"
EXPECTED_IDS = FIXTURES / "expected_ids.json"

# renderer -> (template file, extra apply_chat_template arguments, tokenizer)
TEMPLATES: dict[str, tuple[str, dict[str, Any], str]] = {
    "qwen3": ("qwen3_chat_template.jinja", {}, "qwen"),
    "qwen3_disable_thinking": ("qwen3_chat_template.jinja", {"enable_thinking": False}, "qwen"),
    "qwen3_instruct": ("qwen3_instruct_2507_chat_template.jinja", {}, "qwen"),
    "kimi_k2": ("kimi_k2_thinking_chat_template.jinja", {}, "kimi"),
}

# Kimi's own vocabulary cannot be downloaded here: its markers are added to the Qwen one, which
# exercises the same layout and token boundaries.
KIMI_MARKERS = [
    "<|im_user|>", "<|im_assistant|>", "<|im_system|>", "<|im_middle|>",
    "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>", "<|tool_call_begin|>",
    "<|tool_call_argument_begin|>", "<|tool_call_end|>",
]  # fmt: skip

WEATHER_TOOLS = [
    {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "Ville, e.g. Zürich"}},
            "required": ["city"],
        },
    },
    {
        "name": "search",
        "description": "Search the web",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
    },
]


@lru_cache(maxsize=1)
def qwen_tokenizer():
    return get_tokenizer("Qwen/Qwen3-8B")


@lru_cache(maxsize=1)
def kimi_tokenizer():
    """The Qwen vocabulary plus Kimi K2's chat markers (as special tokens)."""
    tok = copy.deepcopy(get_tokenizer("Qwen/Qwen3-8B"))
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in KIMI_MARKERS])
    tok.name_or_path = "kimi-k2-test-vocabulary"
    return tok


def tokenizer_for(renderer_name: str):
    return kimi_tokenizer() if TEMPLATES[renderer_name][2] == "kimi" else qwen_tokenizer()


def call(name: str, arguments: dict[str, Any], call_id: str | None = None) -> ToolCall:
    return ToolCall.from_arguments(name, arguments, id=call_id)


def thinking(reasoning: str, text: str = "") -> list:
    parts: list = [{"type": "thinking", "thinking": reasoning}]
    return parts + ([{"type": "text", "text": text}] if text else [])


def qwen_cases() -> dict[str, list[Message]]:
    """Conversations for the Qwen3 renderers; tools are declared the renderer's way (the
    template gets the same tools through `tools=`)."""
    tool_turns: list[Message] = [
        {"role": "user", "content": "Weather in Zürich, then search for umbrellas."},
        {
            "role": "assistant",
            "content": thinking("Weather first."),
            "tool_calls": [call("get_weather", {"city": "Zürich"})],
        },
        {"role": "tool", "content": '{"sky": "rain", "°C": 12}', "name": "get_weather"},
        {
            "role": "assistant",
            "content": "It rains; searching.",
            "tool_calls": [call("search", {"query": "umbrella ☂ shop"})],
        },
        {"role": "tool", "content": "Shop A\nShop B", "name": "search"},
        {"role": "assistant", "content": thinking("Summarise.", "Rain: try Shop A or B.")},
    ]
    return {
        "plain": [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello."}],
        "system_prompt": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is 6 * 7?"},
            {"role": "assistant", "content": "42"},
        ],
        "multi_turn": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is 6 * 7?"},
            {"role": "assistant", "content": "42"},
            {"role": "user", "content": "And 6 + 7?"},
            {"role": "assistant", "content": "13"},
        ],
        "thinking_in_history": [
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": thinking("Add two and two.", "4")},
            {"role": "user", "content": "Times 3?"},
            {"role": "assistant", "content": "<think>\n4*3 is 12.\n</think>\n\n12"},
            {"role": "user", "content": "Minus 1?"},
            {"role": "assistant", "content": thinking("12-1", "11")},
        ],
        "tool_calls_and_results": [
            {"role": "system", "content": "Use tools when useful."},
            *tool_turns,
        ],
        "consecutive_tool_results": [
            {"role": "user", "content": "Weather in Genève and Zürich?"},
            {
                "role": "assistant",
                "content": "Checking both.",
                "tool_calls": [
                    call("get_weather", {"city": "Genève"}),
                    call("get_weather", {"city": "Zürich"}),
                ],
            },
            {"role": "tool", "content": "sunny", "name": "get_weather"},
            {"role": "tool", "content": "rain", "name": "get_weather"},
            {"role": "tool", "content": "error: rate limited", "name": "get_weather"},
            {"role": "assistant", "content": "Genève is sunny; Zürich has rain."},
        ],
        "non_ascii_and_verbatim_arguments": [
            {"role": "user", "content": "東京の天気は？"},
            {
                "role": "assistant",
                "content": thinking("天気を調べる"),
                "tool_calls": [
                    call("get_weather", {"city": "東京", "note": "ünïcödé ✓"}),
                    ToolCall(
                        function=ToolCall.FunctionBody(name="search", arguments='{"query":"x"}')
                    ),
                ],
            },
            {"role": "tool", "content": "晴れ", "name": "get_weather"},
            {"role": "tool", "content": "none", "name": "search"},
            {"role": "assistant", "content": "晴れです。"},
        ],
        "tools_declared": ["TOOLS", *tool_turns],
        "tools_declared_with_system_prompt": ["TOOLS:You are a weather bot.", *tool_turns],
    }


def kimi_cases() -> dict[str, list[Message]]:
    return {
        "plain": [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello."}],
        "multi_turn_thinking_in_history": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": thinking("Add.", "4")},
            {"role": "user", "content": "Times 3?"},
            {"role": "assistant", "content": "12"},
        ],
        "tools_declared_calls_and_results": [
            "TOOLS",
            {"role": "user", "content": "Weather in Genève and Zürich?"},
            {
                "role": "assistant",
                "content": thinking("Both cities.", "Checking."),
                "tool_calls": [
                    call("get_weather", {"city": "Genève"}, "functions.get_weather:0"),
                    call("get_weather", {"city": "Zürich"}, "functions.get_weather:1"),
                ],
            },
            {
                "role": "tool",
                "content": "sunny",
                "name": "get_weather",
                "tool_call_id": "functions.get_weather:0",
            },
            {
                "role": "tool",
                "content": "rain",
                "name": "get_weather",
                "tool_call_id": "functions.get_weather:1",
            },
            {"role": "assistant", "content": thinking("Compare.", "Genève: sun; Zürich: rain.")},
        ],
        "tools_and_system_prompt_no_reasoning": [
            "TOOLS:You are a weather bot.",
            {"role": "user", "content": "東京?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [call("get_weather", {"city": "東京"}, "functions.get_weather:0")],
            },
            {
                "role": "tool",
                "content": "晴れ",
                "name": "get_weather",
                "tool_call_id": "functions.get_weather:0",
            },
            {"role": "assistant", "content": "晴れです。"},
        ],
    }


def expand(renderer, conversation: list) -> list[Message]:
    """Replace a `"TOOLS"` / `"TOOLS:<system prompt>"` marker with the renderer's declaration."""
    out: list[Message] = []
    for item in conversation:
        if isinstance(item, str):
            out += renderer.create_conversation_prefix_with_tools(
                WEATHER_TOOLS, item.removeprefix("TOOLS").removeprefix(":")
            )
        else:
            out.append(item)
    return out


def template_inputs(conversation: list, kimi: bool) -> tuple[list[dict], list[dict] | None]:
    """The conversation as `apply_chat_template` takes it: OpenAI-style messages (reasoning in
    `reasoning_content`, Qwen's call arguments as dicts, which its template `tojson`s) and the
    tools, which Kimi's tokenizer passes with their keys sorted."""
    tools, system, messages = None, None, []
    for item in conversation:
        if isinstance(item, str):
            tools = [{"type": "function", "function": t} for t in WEATHER_TOOLS]
            system = item.removeprefix("TOOLS").removeprefix(":") or None
            if kimi:
                tools = json.loads(json.dumps(tools, sort_keys=True))
            continue
        messages.append(_openai_message(item, kimi))
    if system:
        messages.insert(0, {"role": "system", "content": system})
    return messages, tools


def _openai_message(message: Message, kimi: bool) -> dict:
    content = message["content"]
    out: dict[str, Any] = {"role": message["role"]}
    if isinstance(content, str):
        out["content"] = content
    else:
        out["content"] = "".join(p["text"] for p in content if p["type"] == "text")
        out["reasoning_content"] = "".join(
            p["thinking"] for p in content if p["type"] == "thinking"
        )
    if message.get("tool_calls"):
        out["tool_calls"] = [
            {
                "type": "function",
                "id": c.id,
                "function": {
                    "name": c.function.name,
                    "arguments": _template_arguments(c.function.arguments, kimi),
                },
            }
            for c in message["tool_calls"]
        ]
    for key in ("name", "tool_call_id"):
        if key in message:
            out[key] = message[key]
    return out


def _template_arguments(arguments: str, kimi: bool) -> str | dict:
    """Qwen's template `tojson`s a dict: pass one wherever that writes the same text, so the
    test covers it; arguments stored in another layout (compact JSON) stay text, as Kimi's."""
    parsed = json.loads(arguments)
    return parsed if not kimi and json.dumps(parsed, ensure_ascii=False) == arguments else arguments
