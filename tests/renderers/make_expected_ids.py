"""Regenerate `fixtures/expected_ids.json`: the token ids the models' own chat templates (the
`fixtures/*.jinja` files, rendered by transformers' engine) give for `template_cases.py`.

    .venv/bin/python tests/renderers/make_expected_ids.py

Templates: Qwen/Qwen3-8B's (the Qwen3 hybrid models share it; `enable_thinking=False` for
qwen3_disable_thinking), Qwen3-*-Instruct-2507's, and moonshotai/Kimi-K2-Thinking's
`chat_template.jinja`. Ids come from the offline tokenizers in `template_cases.py`.

What is recorded, per renderer and conversation:
- `prompts[i]`: the template with `add_generation_prompt=True` on the messages before
  assistant message `i` (the renderer's messages, tool declarations included);
- `example`: the whole conversation as a training example. For Qwen that is the template's
  render without the newline after the final `<|im_end|>` (it opens the next turn; a sampled
  reply ends at the stop token). For Kimi it is the template's prompt for the final turn plus
  that turn as the template writes a turn being produced (`<think>reasoning</think>text`):
  rendering a finished conversation, the template would drop the final turn's reasoning, and
  training on that teaches the model not to reason. Where the final turn has no reasoning, the
  two agree (checked below). `null` where the renderer refuses to train the conversation.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.renderers.template_cases import (  # noqa: E402
    EXPECTED_IDS,
    FIXTURES,
    TEMPLATES,
    expand,
    kimi_cases,
    qwen_cases,
    template_inputs,
    tokenizer_for,
)
from tinker_cookbook.renderers import get_renderer, get_text_content, get_thinking_content  # noqa: E402


def render(renderer_name: str, messages, tools, generation: bool) -> str:
    template, kwargs, _ = TEMPLATES[renderer_name]
    tokenizer = tokenizer_for(renderer_name)
    return tokenizer.apply_chat_template(
        messages,
        tools=tools,
        chat_template=(FIXTURES / template).read_text(),
        tokenize=False,
        add_generation_prompt=generation,
        **kwargs,
    )


def expected_for(renderer_name: str, conversation: list) -> dict:
    kimi = renderer_name == "kimi_k2"
    tokenizer = tokenizer_for(renderer_name)
    renderer = get_renderer(renderer_name, tokenizer)
    messages = expand(renderer, conversation)
    hf_messages, tools = template_inputs(conversation, kimi)
    offset = len(messages) - len(hf_messages)  # the renderer's extra declaration messages

    def ids(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    prompts = {
        str(i): ids(render(renderer_name, hf_messages[: i - offset], tools, generation=True))
        for i, m in enumerate(messages)
        if m["role"] == "assistant"
    }
    final = messages[-1]
    reasoning = get_thinking_content(final)
    if renderer_name == "qwen3_disable_thinking" and reasoning:
        example = None  # a closed think block cannot be followed by reasoning
    elif kimi:
        prompt = render(renderer_name, hf_messages[:-1], tools, generation=True)
        turn = f"<think>{reasoning}</think>{get_text_content(final)}<|im_end|>"
        example = ids(prompt + turn)
        whole = render(renderer_name, hf_messages, tools, generation=False)
        assert reasoning or ids(whole) == example, "Kimi: prompt + turn != template render"
    else:
        whole = render(renderer_name, hf_messages, tools, generation=False)
        example = ids(whole.removesuffix("\n"))
    return {"prompts": prompts, "example": example}


def main() -> None:
    expected = {
        name: {
            case: expected_for(name, conversation)
            for case, conversation in (kimi_cases() if name == "kimi_k2" else qwen_cases()).items()
        }
        for name in TEMPLATES
    }
    text = json.dumps(expected, separators=(",", ":"))
    EXPECTED_IDS.write_text(text.replace('},"', '},\n"') + "\n")
    print(f"wrote {EXPECTED_IDS} ({len(text)} bytes)")


if __name__ == "__main__":
    main()
