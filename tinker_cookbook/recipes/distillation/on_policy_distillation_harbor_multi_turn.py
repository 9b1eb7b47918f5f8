"""On-policy distillation of multi-turn tool use on Harbor tasks (sandboxed bash).

    python -m tinker_cookbook.recipes.distillation.on_policy_distillation_harbor_multi_turn \\
        model_name=moonshotai/Kimi-K2-Thinking teacher_model=moonshotai/Kimi-K2-Thinking \\
        max_turns=10 group_size=4 groups_per_batch=8 learning_rate=1e-4 lora_rank=8 \\
        max_tokens=2048 max_trajectory_tokens=24576

Tasks come from `tasks_dir`, a downloaded `dataset` (`uvx harbor datasets download NAME@VERSION`),
or the bundled pack (`task_name=` keeps one task of them). Environment tokens (system prompt,
instruction, tool output, chat headers) are masked: only the student's own tokens carry loss.
"""

from __future__ import annotations

import asyncio

import chz

from tinker_cookbook.distillation import train_on_policy
from tinker_cookbook.distillation.datasets import DistillationDatasetConfig, TeacherConfig
from tinker_cookbook.recipes.common import (
    default_log_path,
    loop_run_fields,
    resolve_renderer,
    rl_update_fields,
)
from tinker_cookbook.recipes.distillation.harbor_multiturn import HarborDistillationDatasetBuilder
from tinker_cookbook.recipes.harbor_rl import train as harbor_train
from tinker_cookbook.recipes.harbor_rl.harbor_env import HarborTask


@chz.chz
class CLIConfig(harbor_train.HarborArgs):
    teacher_model: str = "Qwen/Qwen3-8B"
    teacher_checkpoint: str | None = None
    learning_rate: float = 1e-4
    lora_rank: int = 8
    kl_penalty_coef: float = 1.0
    kl_discount_factor: float = 0.0
    test_size: int = 0  # tasks held out, graded by their own tests every eval_every steps
    eval_every: int = 20


def build_config(cli: CLIConfig, tasks: list[HarborTask] | None = None) -> train_on_policy.Config:
    """`tasks`, when given, replace the ones `tasks_dir`/`dataset` would load."""
    renderer = resolve_renderer(cli)
    log_path = cli.log_path or default_log_path(
        "harbor_multi_turn", cli.model_name, ds=cli.dataset or cli.tasks_dir or "bundled",
        lr=cli.learning_rate, gpb=cli.groups_per_batch, r=cli.lora_rank,
    )  # fmt: skip
    builder = harbor_train.harbor_builder(
        chz.replace(cli, renderer_name=renderer), HarborDistillationDatasetBuilder
    )
    dataset = DistillationDatasetConfig(
        dataset_builder=chz.replace(builder, tasks=tasks) if tasks is not None else builder,
        teacher_config=TeacherConfig(
            base_model=cli.teacher_model, load_checkpoint_path=cli.teacher_checkpoint
        ),
        groups_per_batch=cli.groups_per_batch,
        name="harbor",
    )
    return train_on_policy.Config(
        **loop_run_fields(cli, log_path, renderer),
        **rl_update_fields(cli),
        recipe_name="recipe_distillation_on_policy_harbor_multi_turn",
        dataset_configs=[dataset],
        kl_penalty_coef=cli.kl_penalty_coef,
        kl_discount_factor=cli.kl_discount_factor,
    )


async def cli_main(cli_config: CLIConfig, tasks: list[HarborTask] | None = None) -> dict:
    """Train (or resume) the run the command describes; returns its final checkpoint record."""
    return await train_on_policy.main(build_config(cli_config, tasks))


def main(cli_config: CLIConfig) -> dict:
    return asyncio.run(cli_main(cli_config))


if __name__ == "__main__":
    main(chz.entrypoint(CLIConfig))
