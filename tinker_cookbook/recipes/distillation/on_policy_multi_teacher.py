"""On-policy distillation from two teachers at once: DeepMath prompts scored by a reasoning
teacher, Tulu3 prompts by a chat teacher; each contributes its own groups to every batch.

    python -m tinker_cookbook.recipes.distillation.on_policy_multi_teacher \\
        learning_rate=1e-4 deepmath_groups_per_batch=256 tulu3_groups_per_batch=256 \\
        lora_rank=128 wandb_project=cookbook_distillation
"""

from __future__ import annotations

import asyncio

import chz

from tinker_cookbook.distillation import train_on_policy
from tinker_cookbook.distillation.train_on_policy import DistillationDatasetConfig, TeacherConfig
from tinker_cookbook.recipes.common import default_log_path
from tinker_cookbook.recipes.distillation import on_policy_distillation as single


@chz.chz
class CLIConfig(single.CLIConfig):
    deepmath_teacher: str = "Qwen/Qwen3-8B"
    deepmath_teacher_checkpoint: str | None = None
    deepmath_groups_per_batch: int = 256
    deepmath_dataset_path: str | None = None
    tulu3_teacher: str = "Qwen/Qwen3-8B"
    tulu3_teacher_checkpoint: str | None = None
    tulu3_groups_per_batch: int = 256
    tulu3_dataset_path: str | None = None


def build_config(cli: CLIConfig) -> train_on_policy.Config:
    eval_size = (
        cli.eval_size if cli.eval_size is not None else (0 if cli.deepmath_dataset_path else 100)
    )
    deepmath = single.prompt_builder(
        cli, "deepmath", cli.deepmath_dataset_path, cli.deepmath_groups_per_batch, eval_size
    )
    tulu3 = single.prompt_builder(
        cli, "tulu3", cli.tulu3_dataset_path, cli.tulu3_groups_per_batch, 0
    )
    datasets = [
        DistillationDatasetConfig(
            dataset_builder=deepmath,
            teacher_config=TeacherConfig(
                base_model=cli.deepmath_teacher,
                load_checkpoint_path=cli.deepmath_teacher_checkpoint,
            ),
            groups_per_batch=cli.deepmath_groups_per_batch,
        ),
        DistillationDatasetConfig(
            dataset_builder=tulu3,
            teacher_config=TeacherConfig(
                base_model=cli.tulu3_teacher, load_checkpoint_path=cli.tulu3_teacher_checkpoint
            ),
            groups_per_batch=cli.tulu3_groups_per_batch,
        ),
    ]
    log_path = cli.log_path or default_log_path(
        "on_policy_multi_teacher", cli.model_name, lr=cli.learning_rate,
        dm=cli.deepmath_groups_per_batch, tulu=cli.tulu3_groups_per_batch, r=cli.lora_rank,
    )  # fmt: skip
    base = single.build_config(
        chz.replace(
            cli,
            log_path=log_path,
            dataset="deepmath",
            dataset_path=cli.deepmath_dataset_path,
            eval_size=eval_size,
        )
    )
    return chz.replace(
        base, dataset_configs=datasets, evaluator_builders=single.eval_builders(cli, deepmath)
    )


def main(cli: CLIConfig) -> dict:
    return asyncio.run(train_on_policy.main(build_config(cli)))


if __name__ == "__main__":
    chz.nested_entrypoint(main)
