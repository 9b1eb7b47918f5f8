"""RL on Harbor tasks with the tasks' own grading as the reward.

    python -m tinker_cookbook.recipes.harbor_rl.train model_name=Qwen/Qwen3-8B \\
        dataset=terminal-bench@2.0 group_size=4 groups_per_batch=8 learning_rate=1e-5

Without `tasks_dir`/`dataset` it trains on the bundled pack of small shell tasks.
`environment=` picks where episodes run: auto (docker, else podman), local (the engine-free
sandbox), or any Harbor environment type (modal, daytona, e2b, ...) for scale.
"""

from __future__ import annotations

import asyncio

import chz

from tinker_cookbook.recipes.common import (
    RLUpdateArgs,
    default_log_path,
    fields_from_cli,
    loop_run_fields,
    resolve_renderer,
    rl_update_fields,
)
from tinker_cookbook.recipes.harbor_rl.harbor_env import HarborDatasetBuilder
from tinker_cookbook.rl import train


@chz.chz
class HarborArgs(RLUpdateArgs):
    """What every Harbor recipe takes: the tasks, where episodes run, the agent's budget."""

    model_name: str = "Qwen/Qwen3-8B"
    tasks_dir: str | None = None
    dataset: str | None = None  # e.g. terminal-bench@2.0, as `harbor datasets download` names it
    task_name: str | None = None  # only the task of this name
    task_filter: str | None = None  # only tasks whose name contains this
    strict: bool = False  # a task that cannot be loaded stops the run instead of being skipped
    environment: str = "auto"  # auto | local | docker | podman | modal | daytona | e2b | ...
    environment_kwargs: dict[str, str] = chz.field(default_factory=dict)
    max_concurrent_environments: int = 16
    enable_file_tools: bool = False
    group_size: int = 4
    groups_per_batch: int = 8
    max_turns: int = 10
    max_tokens: int = 2048
    max_trajectory_tokens: int = 24576
    # Room kept for each reply: an episode ends once the next prompt leaves less than this
    # under max_trajectory_tokens (default: max_tokens, as in the cookbook).
    max_generation_tokens: int | None = None
    sandbox_timeout: int = 3600
    command_timeout: float = 120.0
    learning_rate: float = 1e-5
    save_every: int = 10
    # The episodes' system message (default: the Harbor agent prompt) and, when set, a short
    # description of the bash tool in place of its JSON schema (see HarborDatasetBuilder).
    system_prompt: str | None = None
    tool_description: str | None = None


@chz.chz
class CLIConfig(HarborArgs):
    """RL: the tasks' own grading is the reward."""

    grader_timeout: float | None = None  # default: each task's [verifier] timeout_sec
    test_size: int = 0  # tasks held out, rolled out and graded every eval_every steps
    eval_every: int = 5
    context_overflow_reward: float = -0.1  # a reply cut off, or no room left for the next


def harbor_builder(
    cli: HarborArgs, builder_class: type[HarborDatasetBuilder] = HarborDatasetBuilder
) -> HarborDatasetBuilder:
    room = cli.max_generation_tokens if cli.max_generation_tokens is not None else cli.max_tokens
    return fields_from_cli(
        builder_class, cli, batch_size=cli.groups_per_batch, max_generation_tokens=room
    )


def build_config(cli: CLIConfig) -> train.Config:
    log_path = cli.log_path or default_log_path(
        "harbor_rl",
        cli.model_name,
        ds=cli.dataset or cli.tasks_dir or "bundled",
        lr=cli.learning_rate,
        gpb=cli.groups_per_batch,
    ).replace("/distillation/", "/")
    cli = chz.replace(cli, renderer_name=resolve_renderer(cli))  # said on the console
    return train.Config(
        **loop_run_fields(cli, log_path, cli.renderer_name),
        **rl_update_fields(cli),
        recipe_name="recipe_harbor_rl",
        dataset_builder=harbor_builder(cli),
    )


async def cli_main(cli_config: CLIConfig) -> dict:
    """Train (or resume) the run the command describes; returns its final checkpoint record."""
    return await train.main(build_config(cli_config))


def main(cli_config: CLIConfig) -> dict:
    return asyncio.run(cli_main(cli_config))


if __name__ == "__main__":
    main(chz.entrypoint(CLIConfig))
