"""The Harbor builder's system prompt: unchanged by default (the prompt plus the bash tool's
JSON schema, exactly as `build_agent_tool_env` writes it), and a short prompt and compact tool
description, when given, are what the episode's rendered prompt starts with."""

import asyncio

import pytest

from tinker_cookbook.local import get_tokenizer
from tinker_cookbook.recipes.harbor_rl.harbor_env import (
    SYSTEM_PROMPT,
    HarborDatasetBuilder,
    system_message,
)
from tinker_cookbook.recipes.harbor_rl.harbor_tools import HarborBashTool
from tinker_cookbook.sandbox import available_backends
from tinker_cookbook.tool_use import build_agent_tool_env, tools_system_prompt

needs_sandbox = pytest.mark.skipif(not available_backends(), reason="no sandbox backend")
TOK = get_tokenizer("tiny-qwen3-1m")


def builder(**kwargs) -> HarborDatasetBuilder:
    return HarborDatasetBuilder(
        model_name_for_tokenizer="tiny-qwen3-1m",
        task_filter="sum-numbers",
        group_size=1,
        groups_per_batch=1,
        **kwargs,
    )


def first_prompt(b: HarborDatasetBuilder) -> tuple[list[int], object]:
    """The rendered initial observation of one real episode, and its group builder."""
    train, _ = asyncio.run(b())
    group = train.get_batch(0)[0]

    async def run():
        try:
            (env,) = await group.make_envs()
            observation, _ = await env.initial_observation()
            return observation.to_ints()
        finally:
            await group.cleanup()

    return asyncio.run(run()), group


def test_system_message_texts():
    schema_prompt = tools_system_prompt([HarborBashTool(None).bash], SYSTEM_PROMPT)
    assert builder().system_message() == system_message() == schema_prompt
    assert '"parameters"' in schema_prompt and SYSTEM_PROMPT in schema_prompt
    assert builder(system_prompt="Be brief.").system_message() == tools_system_prompt(
        [HarborBashTool(None).bash], "Be brief."
    )
    short = builder(system_prompt="Be brief.", tool_description="Call bash(command).")
    assert short.system_message() == "Be brief.\n\nCall bash(command)."
    assert builder(system_prompt="", tool_description="Only this.").system_message() == "Only this."


@needs_sandbox
def test_default_prompt_is_what_build_agent_tool_env_renders():
    tokens, group = first_prompt(builder())
    user = {"role": "user", "content": group.task.instruction}
    reference = build_agent_tool_env(
        group.renderer, [HarborBashTool(None).bash], [user], lambda h: 0.0,
        system_prompt=SYSTEM_PROMPT,
    )  # fmt: skip
    expected, _ = asyncio.run(reference.initial_observation())
    assert tokens == expected.to_ints()


@needs_sandbox
def test_a_short_prompt_and_tool_description_reach_the_rendered_prompt():
    default_tokens, _ = first_prompt(builder())
    tokens, group = first_prompt(
        builder(system_prompt="Be brief.", tool_description="Call bash(command).")
    )
    assert TOK.decode(tokens) == (
        "<|im_start|>system\nBe brief.\n\nCall bash(command).<|im_end|>\n"
        f"<|im_start|>user\n{group.task.instruction}<|im_end|>\n<|im_start|>assistant\n"
    )
    assert len(tokens) < len(default_tokens) - 500
