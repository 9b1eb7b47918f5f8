"""Renderers give the same token ids as the models' own chat templates (recorded in
`fixtures/expected_ids.json` by `make_expected_ids.py`; no network needed)."""

import json

import pytest

from tests.renderers.template_cases import (
    EXPECTED_IDS,
    TEMPLATES,
    expand,
    kimi_cases,
    qwen_cases,
    tokenizer_for,
)
from tinker_cookbook.renderers import RendererError, get_renderer

EXPECTED = json.loads(EXPECTED_IDS.read_text())
CASES = [
    (name, case, conversation)
    for name in TEMPLATES
    for case, conversation in (kimi_cases() if name == "kimi_k2" else qwen_cases()).items()
]


def show(renderer, ids: list[int]) -> str:
    return repr(renderer.tokenizer.decode(ids))


@pytest.mark.parametrize("name, case, conversation", CASES, ids=[f"{n}-{c}" for n, c, _ in CASES])
def test_prompts_and_examples_equal_the_chat_template(name, case, conversation):
    renderer = get_renderer(name, tokenizer_for(name))
    messages = expand(renderer, conversation)
    expected = EXPECTED[name][case]
    assert expected["prompts"], "every case has an assistant turn"
    for index, ids in expected["prompts"].items():
        prompt = renderer.build_generation_prompt(messages[: int(index)]).to_ints()
        assert prompt == ids, (
            f"prompt before message {index}:\n{show(renderer, prompt)}\n!=\n{show(renderer, ids)}"
        )
    if expected["example"] is None:
        with pytest.raises(RendererError, match="closed"):
            renderer.build_supervised_example(messages)
        return
    example, weights = renderer.build_supervised_example(messages)
    assert example.to_ints() == expected["example"], (
        f"{show(renderer, example.to_ints())}\n!=\n{show(renderer, expected['example'])}"
    )
    assert len(weights) == example.length and weights.sum() > 0


def test_the_recorded_cases_are_the_current_ones():
    """`make_expected_ids.py` must be rerun when `template_cases.py` changes."""
    for name, case, _ in CASES:
        assert case in EXPECTED[name], f"no recorded ids for {name}/{case}: rerun the script"
