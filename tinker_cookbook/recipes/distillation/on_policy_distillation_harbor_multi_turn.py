"""On-policy distillation of multi-turn tool use on Harbor tasks (sandboxed bash).

    python -m tinker_cookbook.recipes.distillation.on_policy_distillation_harbor_multi_turn \\
        model_name=moonshotai/Kimi-K2-Thinking teacher_model=moonshotai/Kimi-K2-Thinking \\
        max_turns=10 group_size=4 groups_per_batch=8 learning_rate=1e-4 lora_rank=8 \\
        max_tokens=2048 max_trajectory_tokens=24576

Tasks come from `tasks_dir`, a downloaded `dataset` (`uvx harbor datasets download NAME@VERSION`),
or the bundled pack. Environment tokens (system prompt, instruction, tool output, chat headers)
are masked: only the student's own tokens carry loss.
"""

from __future__ import annotations

import asyncio

import chz

from tinker_cookbook.distillation import train_on_policy
from tinker_cookbook.distillation.train_on_policy import DistillationDatasetConfig, TeacherConfig
from tinker_cookbook.recipes.common import config_from_cli, default_log_path
from tinker_cookbook.recipes.distillation.harbor_multiturn import HarborDistillationDatasetBuilder
from tinker_cookbook.recipes.harbor_rl import train as harbor_train


@chz.chz
class CLIConfig(harbor_train.HarborArgs):
    teacher_model: str = "Qwen/Qwen3-8B"
    teacher_checkpoint: str | None = None
    learning_rate: float = 1e-4
    lora_rank: int = 8
    kl_penalty_coef: float = 1.0
    kl_discount_factor: float = 0.0


def build_config(cli: CLIConfig) -> train_on_policy.Config:
    log_path = cli.log_path or default_log_path(
        "harbor_multi_turn", cli.model_name, ds=cli.dataset or cli.tasks_dir or "bundled",
        lr=cli.learning_rate, gpb=cli.groups_per_batch, r=cli.lora_rank,
    )  # fmt: skip
    dataset = DistillationDatasetConfig(
        dataset_builder=harbor_train.harbor_builder(cli, HarborDistillationDatasetBuilder),
        teacher_config=TeacherConfig(
            base_model=cli.teacher_model, load_checkpoint_path=cli.teacher_checkpoint
        ),
        groups_per_batch=cli.groups_per_batch,
        name="harbor",
    )
    return config_from_cli(
        train_on_policy.Config, cli, log_path=log_path, dataset_configs=[dataset]
    )


def main(cli: CLIConfig) -> dict:
    return asyncio.run(train_on_policy.main(build_config(cli)))


if __name__ == "__main__":
    chz.nested_entrypoint(main)
