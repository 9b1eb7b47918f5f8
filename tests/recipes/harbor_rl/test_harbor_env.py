"""The Harbor builder's opening messages: by default the system prompt with the bash tool
declared in the model's own format (exactly as `build_agent_tool_env` writes it), and a short
prompt and compact tool description, when given, are what the episode's rendered prompt starts
with."""

import asyncio
from typing import Annotated

import pytest

from tinker_cookbook.local import get_tokenizer
from tinker_cookbook.recipes.harbor_rl.harbor_env import (
    SYSTEM_PROMPT,
    HarborDatasetBuilder,
    opening_messages,
)
from tinker_cookbook.recipes.harbor_rl.harbor_tools import HarborBashTool
from tinker_cookbook.renderers import get_renderer
from tinker_cookbook.sandbox import available_backends
from tinker_cookbook.tool_use import (
    ToolResult,
    build_agent_tool_env,
    simple_tool_result,
    tool,
    tools_system_prompt,
)

needs_sandbox = pytest.mark.skipif(not available_backends(), reason="no sandbox backend")
TOK = get_tokenizer("tiny-qwen3-1m")


def builder(**kwargs) -> HarborDatasetBuilder:
    return HarborDatasetBuilder(
        model_name="tiny-qwen3-1m",
        task_filter="sum-numbers",
        group_size=1,
        batch_size=1,
        environment="local",
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


def test_opening_messages_declare_the_tool_in_the_models_own_format():
    bash = HarborBashTool(None).bash
    default = builder()
    renderer = default.renderer()
    native = renderer.create_conversation_prefix_with_tools([bash.to_spec()], SYSTEM_PROMPT)
    assert default.opening_messages() == opening_messages(renderer) == native
    text = native[0]["content"]
    assert text.startswith(SYSTEM_PROMPT) and "<tools>" in text and '"name": "bash"' in text
    short = builder(system_prompt="Be brief.", tool_description="Call bash(command).")
    assert short.opening_messages() == [
        {"role": "system", "content": "Be brief.\n\nCall bash(command)."}
    ]
    only = builder(system_prompt="", tool_description="Only this.")
    assert only.opening_messages() == [{"role": "system", "content": "Only this."}]


def test_a_format_without_a_tool_declaration_gets_the_schemas_as_text():
    role_colon = get_renderer("role_colon", TOK)
    with pytest.raises(NotImplementedError):
        role_colon.create_conversation_prefix_with_tools([], "x")
    (message,) = opening_messages(role_colon, "Be brief.")
    assert message["content"] == tools_system_prompt([HarborBashTool(None).bash], "Be brief.")


def test_a_kimi_episode_declares_and_reads_back_kimis_own_tool_calls():
    """The tool is declared in Kimi's format, and a call the model writes in that format runs
    the tool (a Qwen-style declaration would teach a format Kimi's parser never reads)."""
    from tests.renderers.template_cases import kimi_tokenizer

    renderer = get_renderer("kimi_k2", kimi_tokenizer())
    ran = []

    @tool
    async def bash(command: Annotated[str, "a shell command"]) -> ToolResult:
        """Run a command."""
        ran.append(command)
        return simple_tool_result("hi")

    env = build_agent_tool_env(
        renderer, [bash], [{"role": "user", "content": "say hi"}], lambda h: 0.0,
        system_prompt=SYSTEM_PROMPT,
    )  # fmt: skip
    observation, _ = asyncio.run(env.initial_observation())
    prompt = renderer.tokenizer.decode(observation.to_ints())
    assert "<|im_system|>tool_declare<|im_middle|>" in prompt and '"bash"' in prompt
    reply = (
        "<|tool_calls_section_begin|><|tool_call_begin|>functions.bash:0"
        '<|tool_call_argument_begin|>{"command": "echo hi"}<|tool_call_end|>'
        "<|tool_calls_section_end|><|im_end|>"
    )
    result = asyncio.run(env.step(renderer.tokenizer.encode(reply, add_special_tokens=False)))
    assert ran == ["echo hi"]
    assert not result.episode_done
    assert "## Return of functions.bash:0\nhi" in renderer.tokenizer.decode(
        result.next_observation.to_ints()
    )


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


def test_the_cookbook_spelling_of_the_builder(tmp_path):
    """`HarborDatasetBuilder(tasks=..., batch_size=..., group_size=..., model_name=...)` with
    tasks the user loaded and a SandboxFactory of their own, graded by Harbor's verifier."""
    from tinker_cookbook.recipes.harbor_rl.harbor_env import HarborTask, SandboxFactory
    from tinker_cookbook.recipes.harbor_rl.harbor_tasks import BUNDLED_TASKS_DIR
    from tinker_cookbook.sandbox import LocalSandbox
    from tinker_cookbook.sandbox.local_environment import build_from_dockerfile

    made = []

    async def factory(env_dir, timeout):
        sandbox = LocalSandbox()
        await build_from_dockerfile(sandbox, env_dir, env_dir.parent.name, 60)
        await sandbox.run_command("mkdir -p /logs/verifier")
        made.append(timeout)
        return sandbox

    hook: SandboxFactory = factory
    path = BUNDLED_TASKS_DIR / "sum-numbers"
    task = HarborTask(task_name="sum-numbers", instruction=(path / "instruction.md").read_text(),
                      task_dir=path)  # fmt: skip
    b = HarborDatasetBuilder(tasks=[task], batch_size=1, group_size=2, model_name="tiny-qwen3-1m",
                             sandbox_factory=hook, sandbox_timeout=77)  # fmt: skip
    train, _ = asyncio.run(b())
    group = train.get_batch(0)[0]

    async def run():
        try:
            envs = await group.make_envs()
            for env in group.environments:
                await env.sandbox.run_command("echo 360 > /app/answer.txt")
            return [await e.message_env.reward_fn([]) for e in envs]
        finally:
            await group.cleanup()

    assert asyncio.run(run()) == [(1.0, {"grading_error": 0.0})] * 2
    assert made == [77, 77]


def test_overflow_and_parse_rewards_reach_the_episodes_and_distillation_zeroes_them():
    from tinker_cookbook.recipes.distillation.harbor_multiturn import (
        HarborDistillationDatasetBuilder,
    )

    options = builder(max_generation_tokens=512, context_overflow_reward=-0.5).episode_options()
    assert (options.max_generation_tokens, options.context_overflow_reward) == (512, -0.5)
    distilled = HarborDistillationDatasetBuilder(model_name="tiny-qwen3-1m", environment="local")
    options = distilled.episode_options()
    assert (options.context_overflow_reward, options.failed_parse_reward) == (0.0, 0.0)
