"""Harbor tasks as RL environments: one environment per episode (any Harbor environment type,
the `local` sandbox, or a `SandboxFactory`), a bash tool, and the task's grading by Harbor's
verifier (or any other reward function) at the end."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import chz

from tinker_cookbook.model_info import get_recommended_renderer_name
from tinker_cookbook.recipes.harbor_rl.environments import (
    SandboxFactory,
    TaskEnvironment,
    resolve_environment,
    start_environment,
)
from tinker_cookbook.recipes.harbor_rl.harbor_tasks import (
    HarborTask,
    HarborTaskError,
    load_tasks,
    resolve_tasks_dir,
)
from tinker_cookbook.recipes.harbor_rl.harbor_tools import (
    HarborBashTool,
    HarborFileTools,
    HarborReward,
)
from tinker_cookbook.renderers import Message, Renderer, get_renderer
from tinker_cookbook.rl.types import (
    Env,
    EnvGroupBuilder,
    GroupIndexedDataset,
    RLDatasetBuilder,
)
from tinker_cookbook.tokenizer_utils import get_tokenizer
from tinker_cookbook.tool_use import RewardFn, Tool, build_agent_tool_env, tool_declaration

SYSTEM_PROMPT = (
    "You are an agent working in a Linux shell. Use the bash tool to inspect and change the "
    "environment until the task is done, then reply without a tool call."
)


def opening_messages(
    renderer: Renderer,
    system_prompt: str = SYSTEM_PROMPT,
    tool_description: str | None = None,
    tools: Sequence[Tool] | None = None,
) -> list[Message]:
    """The messages a Harbor episode starts with before the task's instruction: the model's
    own tool declaration with the system prompt, or the short `tool_description` (see
    `tool_declaration`)."""
    tools = tools or [HarborBashTool(None).bash]  # the schema needs no sandbox
    return tool_declaration(renderer, tools, system_prompt or None, tool_description)


@dataclass
class EpisodeOptions:
    """How each episode runs: where its environment comes from and what the agent gets."""

    environment: str = "local"
    environment_kwargs: dict[str, Any] = field(default_factory=dict)
    sandbox_factory: SandboxFactory | None = None
    sandbox_timeout: int = 3600
    command_timeout: float = 120.0
    grader_timeout: float | None = None
    max_turns: int = 10
    max_trajectory_tokens: int = 32768
    max_generation_tokens: int | None = None
    context_overflow_reward: float = -0.1  # a reply cut off, or no room left for the next
    failed_parse_reward: float = -0.1  # a reply, or all its tool calls, unparseable
    system_prompt: str = SYSTEM_PROMPT
    tool_description: str | None = None
    enable_file_tools: bool = False
    concurrency: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(64))
    announced: set[str] = field(default_factory=set)  # printed once per run, not per group


class HarborEnvGroupBuilder(EnvGroupBuilder):
    """`group_size` episodes of one task, each in a fresh environment (the task's image is
    built once and reused); every environment is removed in `cleanup`, whatever happened."""

    def __init__(self, task: HarborTask, renderer: Renderer, group_size: int,
                 options: EpisodeOptions, reward_fn: RewardFn | None = None):  # fmt: skip
        self.task, self.renderer, self.group_size = task, renderer, group_size
        self.options, self.reward_fn = options, reward_fn
        self.environments: list[TaskEnvironment] = []
        self._held = 0  # concurrency permits held by this group
        self._errors: list[str] = []

    async def make_envs(self) -> Sequence[Env]:
        results = await asyncio.gather(
            *[self._start() for _ in range(self.group_size)], return_exceptions=True
        )
        errors = [e for e in results if isinstance(e, BaseException)]
        if errors:
            raise errors[0]
        return [self._env(environment) for environment in results]  # type: ignore[arg-type]

    async def _start(self) -> TaskEnvironment:
        o = self.options
        await o.concurrency.acquire()
        self._held += 1  # recorded at once: cleanup releases it even if the start fails
        environment = await start_environment(
            self.task, o.environment, o.environment_kwargs, o.sandbox_factory, o.sandbox_timeout
        )
        self.environments.append(environment)
        return environment

    def _env(self, environment: TaskEnvironment) -> Env:
        o = self.options
        # The agent's time: the task's [agent] timeout_sec, at most sandbox_timeout.
        budget = min(o.sandbox_timeout, environment.config.agent.timeout_sec or o.sandbox_timeout)
        deadline = time.monotonic() + budget
        tools = [HarborBashTool(environment.sandbox, o.command_timeout, deadline=deadline).bash]
        if o.enable_file_tools:
            tools += HarborFileTools(environment.sandbox, o.command_timeout).tools()
        reward = self.reward_fn or HarborReward(
            environment,
            o.grader_timeout,
            on_error=self._errors.append,
            on_reward_keys=self._announce,
        )
        return build_agent_tool_env(
            self.renderer, tools, [{"role": "user", "content": self.task.instruction}], reward,
            max_turns=o.max_turns, max_trajectory_tokens=o.max_trajectory_tokens,
            max_generation_tokens=o.max_generation_tokens,
            context_overflow_reward=o.context_overflow_reward,
            failed_parse_reward=o.failed_parse_reward,
            system_prompt=o.system_prompt, tool_description=o.tool_description,
        )  # fmt: skip

    def _announce(self, message: str) -> None:
        if message not in self.options.announced:
            self.options.announced.add(message)
            print(message)

    def grading_errors(self) -> list[str]:
        return list(self._errors)

    async def cleanup(self) -> None:
        environments, self.environments = self.environments, []
        try:
            await asyncio.gather(*[e.stop() for e in environments])
        finally:
            for _ in range(self._held):
                self.options.concurrency.release()
            self._held = 0

    def logging_tags(self) -> list[str]:
        return ["harbor"]


class HarborDataset(GroupIndexedDataset):
    """One env group per task."""

    def __init__(self, tasks: list[HarborTask], batch_size: int,
                 make_builder: Callable[[HarborTask], HarborEnvGroupBuilder]):  # fmt: skip
        self.tasks, self.groups_per_batch, self.make_builder = tasks, batch_size, make_builder

    def num_groups(self) -> int:
        return len(self.tasks)

    def get_group(self, index: int) -> HarborEnvGroupBuilder:
        return self.make_builder(self.tasks[index])


@chz.chz
class HarborDatasetBuilder(RLDatasetBuilder):
    """Harbor tasks as RL groups, with the Tinker cookbook's fields (`tasks`, `batch_size`,
    `group_size`, `model_name`, `sandbox_factory`, `reward_fn`, timeouts). Tasks come from
    `tasks`, else `tasks_dir` (flat or nested), else a downloaded `dataset` (e.g.
    terminal-bench@2.0), else the bundled pack; graded by Harbor's verifier (HarborReward)."""

    model_name: str
    tasks: list[HarborTask] | None = None
    batch_size: int = 8  # groups (tasks) per batch
    group_size: int = 4
    tasks_dir: str | None = None
    dataset: str | None = None
    task_name: str | None = None  # only the task of this name
    task_filter: str | None = None  # only tasks whose name contains this
    strict: bool = False  # a task that cannot be loaded is an error instead of a skipped line
    renderer_name: str | None = None
    max_turns: int = 10
    max_trajectory_tokens: int = 32 * 1024
    max_generation_tokens: int | None = None  # room kept for each reply (see build_agent_tool_env)
    context_overflow_reward: float = -0.1  # a reply cut off, or no room left for the next
    failed_parse_reward: float = -0.1  # a reply, or all its tool calls, unparseable
    # Where episodes run: auto (docker, else podman), local (the engine-free sandbox), any
    # environment type Harbor knows (docker, podman, modal, daytona, e2b, ...) or module:Class;
    # environment_kwargs are passed to it (e.g. local: memory_mb).
    environment: str = "auto"
    environment_kwargs: dict[str, str] = chz.field(default_factory=dict)
    max_concurrent_environments: int = 16
    sandbox_factory: SandboxFactory | None = None
    reward_fn: RewardFn | None = None
    sandbox_timeout: int = 3600
    command_timeout: float = 120.0
    grader_timeout: float | None = None  # default: the task's [verifier] timeout_sec
    enable_file_tools: bool = False
    test_size: int = 0
    seed: int = 0
    # What each episode's system message says ahead of the tools (default: SYSTEM_PROMPT)...
    system_prompt: str | None = None
    # ...and, when set, a short text describing the bash tool and how to call it, in place of
    # its full JSON schema (hundreds of tokens: most of the prompt for a tiny model's study).
    tool_description: str | None = None

    def renderer(self) -> Renderer:
        name = self.renderer_name or get_recommended_renderer_name(self.model_name)
        return get_renderer(name, get_tokenizer(self.model_name))

    def resolved_system_prompt(self) -> str:
        return SYSTEM_PROMPT if self.system_prompt is None else self.system_prompt

    def opening_messages(self) -> list[Message]:
        """What every episode of these datasets shows before the task's instruction."""
        return opening_messages(
            self.renderer(), self.resolved_system_prompt(), self.tool_description
        )

    def load(self) -> list[HarborTask]:
        if self.tasks is not None:
            tasks = list(self.tasks)
        else:
            folder = resolve_tasks_dir(self.tasks_dir, self.dataset)
            tasks = load_tasks(folder, self.task_filter, self.strict).tasks
        if self.task_name:
            names = [t.name for t in tasks]
            tasks = [t for t in tasks if t.name == self.task_name]
            if not tasks:
                raise HarborTaskError(f"task_name={self.task_name!r} is not among the "
                                      f"{len(names)} loaded tasks (e.g. {names[:5]})")  # fmt: skip
        random.Random(self.seed).shuffle(tasks)
        return tasks

    def episode_options(self) -> EpisodeOptions:
        environment = (
            "factory" if self.sandbox_factory is not None else resolve_environment(self.environment)
        )
        return EpisodeOptions(
            environment=environment,
            environment_kwargs=dict(self.environment_kwargs),
            sandbox_factory=self.sandbox_factory,
            sandbox_timeout=self.sandbox_timeout,
            command_timeout=self.command_timeout,
            grader_timeout=self.grader_timeout,
            max_turns=self.max_turns,
            max_trajectory_tokens=self.max_trajectory_tokens,
            max_generation_tokens=self.max_generation_tokens,
            context_overflow_reward=self.context_overflow_reward,
            failed_parse_reward=self.failed_parse_reward,
            system_prompt=self.resolved_system_prompt(),
            tool_description=self.tool_description,
            enable_file_tools=self.enable_file_tools,
            concurrency=asyncio.Semaphore(self.max_concurrent_environments),
        )

    def make_datasets(
        self, train_reward_fn: RewardFn | None = None, test_reward_fn: RewardFn | None = None
    ) -> tuple[HarborDataset, HarborDataset | None]:
        """Training and held-out datasets from one load of the tasks, sharing one limit on
        concurrent environments; each split's reward (None: `reward_fn`, else the tasks' own
        grading)."""
        tasks, renderer, options = self.load(), self.renderer(), self.episode_options()

        def builder_for(reward_fn: RewardFn | None) -> Callable[[HarborTask], Any]:
            reward_fn = reward_fn or self.reward_fn
            return lambda task: HarborEnvGroupBuilder(
                task, renderer, self.group_size, options, reward_fn
            )

        test, train = tasks[: self.test_size], tasks[self.test_size :]
        if not train:
            raise ValueError(
                f"no training tasks left ({len(tasks)} tasks, test_size={self.test_size})"
            )
        held_out = (
            HarborDataset(test, min(self.batch_size, len(test)), builder_for(test_reward_fn))
            if test
            else None
        )
        return HarborDataset(train, self.batch_size, builder_for(train_reward_fn)), held_out

    async def __call__(self) -> tuple[HarborDataset, HarborDataset | None]:
        return self.make_datasets()
