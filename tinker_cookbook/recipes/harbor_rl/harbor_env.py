"""Harbor tasks as RL environments: one sandbox per episode, a bash tool, the task's grading
(or any other reward function) at the end."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence

import chz

from tinker_cookbook.local.models import get_tokenizer
from tinker_cookbook.recipes.harbor_rl.harbor_tasks import (
    HarborTask,
    load_tasks,
    prepare_sandbox,
    resolve_tasks_dir,
)
from tinker_cookbook.recipes.harbor_rl.harbor_tools import HarborBashTool, HarborReward
from tinker_cookbook.renderers import Renderer, get_recommended_renderer_name, get_renderer
from tinker_cookbook.rl.types import Env, EnvGroupBuilder, RLDataset, RLDatasetBuilder
from tinker_cookbook.sandbox import LocalSandbox, LocalSandboxConfig
from tinker_cookbook.tool_use import RewardFn, Tool, build_agent_tool_env
from tinker_cookbook.tool_use.agent_env import tool_system_message

SYSTEM_PROMPT = (
    "You are an agent working in a Linux shell. Use the bash tool to inspect and change the "
    "environment until the task is done, then reply without a tool call."
)


def system_message(
    system_prompt: str = SYSTEM_PROMPT,
    tool_description: str | None = None,
    tools: Sequence[Tool] | None = None,
) -> str:
    """What a Harbor episode's system message says (see `tool_system_message`)."""
    tools = tools or [HarborBashTool(None).bash]  # the schema needs no sandbox
    return tool_system_message(tools, system_prompt or None, tool_description)


class HarborEnvGroupBuilder(EnvGroupBuilder):
    """`group_size` episodes of one task, each in a freshly built sandbox."""

    def __init__(
        self,
        task: HarborTask,
        renderer: Renderer,
        group_size: int,
        max_turns: int,
        max_trajectory_tokens: int,
        sandbox_config: LocalSandboxConfig,
        reward_fn: RewardFn | None = None,
        bash_timeout: float = 60.0,
        system_prompt: str = SYSTEM_PROMPT,
        tool_description: str | None = None,
    ):
        self.task, self.renderer, self.group_size = task, renderer, group_size
        self.max_turns, self.max_trajectory_tokens = max_turns, max_trajectory_tokens
        self.sandbox_config, self.reward_fn, self.bash_timeout = (
            sandbox_config,
            reward_fn,
            bash_timeout,
        )
        self.system_prompt, self.tool_description = system_prompt, tool_description
        self.sandboxes: list[LocalSandbox] = []

    async def make_envs(self) -> Sequence[Env]:
        async def build() -> LocalSandbox:
            sandbox = await prepare_sandbox(self.task, self.sandbox_config)
            self.sandboxes.append(sandbox)  # recorded at once: cleanup() finds it even if a
            return sandbox  # sibling's build fails or the rollout is cancelled

        results = await asyncio.gather(
            *[build() for _ in range(self.group_size)], return_exceptions=True
        )
        errors = [e for e in results if isinstance(e, BaseException)]
        if errors:
            raise errors[0]
        return [self._env(sandbox) for sandbox in results]

    def _env(self, sandbox: LocalSandbox) -> Env:
        reward = self.reward_fn if self.reward_fn is not None else HarborReward(self.task, sandbox)
        bash = HarborBashTool(sandbox, timeout=self.bash_timeout).bash
        return build_agent_tool_env(
            self.renderer, [bash], [{"role": "user", "content": self.task.instruction}], reward,
            max_turns=self.max_turns, max_trajectory_tokens=self.max_trajectory_tokens,
            system_prompt=self.system_prompt or None, tool_description=self.tool_description,
        )  # fmt: skip

    async def cleanup(self) -> None:
        await asyncio.gather(*[s.cleanup() for s in self.sandboxes])
        self.sandboxes = []

    def logging_tags(self) -> list[str]:
        return ["harbor"]


class HarborDataset(RLDataset):
    def __init__(
        self,
        tasks: list[HarborTask],
        groups_per_batch: int,
        make_builder: Callable[[HarborTask], HarborEnvGroupBuilder],
    ):
        self.tasks, self.groups_per_batch, self.make_builder = tasks, groups_per_batch, make_builder

    def __len__(self) -> int:
        return max(len(self.tasks) // self.groups_per_batch, 1)

    def get_batch(self, index: int) -> list[HarborEnvGroupBuilder]:
        start = index * self.groups_per_batch
        return [
            self.make_builder(self.tasks[(start + i) % len(self.tasks)])
            for i in range(self.groups_per_batch)
        ]


@chz.chz
class HarborDatasetBuilder(RLDatasetBuilder):
    """Harbor tasks from `tasks_dir`, a downloaded `dataset` (e.g. terminal-bench@2.0), or the
    bundled pack; graded by each task's own tests (HarborReward)."""

    model_name_for_tokenizer: str
    tasks_dir: str | None = None
    dataset: str | None = None
    task_filter: str | None = None  # keep tasks whose name contains this
    renderer_name: str | None = None
    group_size: int = 4
    groups_per_batch: int = 8
    max_turns: int = 10
    max_trajectory_tokens: int = 24576
    bash_timeout: float = 60.0
    sandbox_memory_mb: int = 1024
    test_size: int = 0
    seed: int = 0
    # What each episode's system message says ahead of the tools (default: SYSTEM_PROMPT)...
    system_prompt: str | None = None
    # ...and, when set, a short text describing the bash tool and how to call it, in place of
    # its full JSON schema (hundreds of tokens: most of the prompt for a tiny model's study).
    tool_description: str | None = None

    def renderer(self) -> Renderer:
        name = self.renderer_name or get_recommended_renderer_name(self.model_name_for_tokenizer)
        return get_renderer(name, get_tokenizer(self.model_name_for_tokenizer))

    def resolved_system_prompt(self) -> str:
        return SYSTEM_PROMPT if self.system_prompt is None else self.system_prompt

    def system_message(self) -> str:
        """The system message every episode of these datasets starts with."""
        return system_message(self.resolved_system_prompt(), self.tool_description)

    def load(self) -> list[HarborTask]:
        tasks = load_tasks(resolve_tasks_dir(self.tasks_dir, self.dataset), self.task_filter)
        random.Random(self.seed).shuffle(tasks)
        return tasks

    def make_datasets(
        self, reward_fn: RewardFn | None
    ) -> tuple[HarborDataset, HarborDataset | None]:
        tasks, renderer = self.load(), self.renderer()
        sandbox_config = LocalSandboxConfig(memory_mb=self.sandbox_memory_mb)

        def builder(task: HarborTask) -> HarborEnvGroupBuilder:
            return HarborEnvGroupBuilder(
                task, renderer, self.group_size, self.max_turns, self.max_trajectory_tokens,
                sandbox_config, reward_fn, self.bash_timeout, self.resolved_system_prompt(),
                self.tool_description,
            )  # fmt: skip

        test, train = tasks[: self.test_size], tasks[self.test_size :]
        if not train:
            raise ValueError(
                f"no training tasks left ({len(tasks)} tasks, test_size={self.test_size})"
            )
        held_out = (
            HarborDataset(test, min(self.groups_per_batch, len(test)), builder) if test else None
        )
        return HarborDataset(train, self.groups_per_batch, builder), held_out

    async def __call__(self) -> tuple[HarborDataset, HarborDataset | None]:
        return self.make_datasets(reward_fn=None)
