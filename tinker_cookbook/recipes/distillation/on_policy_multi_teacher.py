"""On-policy distillation from two teachers at once: DeepMath prompts scored by a reasoning
teacher, Tulu3 prompts by a chat teacher; each contributes its own groups to every batch.

    python -m tinker_cookbook.recipes.distillation.on_policy_multi_teacher \\
        learning_rate=1e-4 deepmath_groups_per_batch=256 tulu3_groups_per_batch=256 \\
        lora_rank=128 wandb_project=cookbook_distillation

`deepmath_dataset_path=` / `tulu3_dataset_path=` read local files of those schemas.
"""

from __future__ import annotations

import asyncio

import chz

from tinker_cookbook.distillation import train_on_policy
from tinker_cookbook.distillation.datasets import DistillationDatasetConfig, TeacherConfig
from tinker_cookbook.recipes.common import default_log_path, resolve_renderer
from tinker_cookbook.recipes.distillation import on_policy_distillation as single


@chz.chz
class CLIConfig(single.DistillArgs):
    deepmath_teacher_model: str = "Qwen/Qwen3-8B"
    deepmath_teacher_checkpoint: str | None = None
    deepmath_groups_per_batch: int = 256
    deepmath_dataset_path: str | None = None
    tulu3_teacher_model: str = "Qwen/Qwen3-8B"
    tulu3_teacher_checkpoint: str | None = None
    tulu3_groups_per_batch: int = 256
    tulu3_dataset_path: str | None = None


def build_config(cli: CLIConfig) -> train_on_policy.Config:
    renderer = resolve_renderer(cli)
    default_eval = 0 if cli.deepmath_dataset_path else 100
    eval_size = cli.eval_size if cli.eval_size is not None else default_eval
    deepmath = single.prompt_builder(
        cli, renderer, "deepmath", cli.deepmath_dataset_path, cli.deepmath_groups_per_batch,
        eval_size,
    )  # fmt: skip
    tulu3 = single.prompt_builder(
        cli, renderer, "tulu3", cli.tulu3_dataset_path, cli.tulu3_groups_per_batch, 0
    )
    datasets = [
        DistillationDatasetConfig(
            dataset_builder=deepmath,
            teacher_config=TeacherConfig(
                base_model=cli.deepmath_teacher_model,
                load_checkpoint_path=cli.deepmath_teacher_checkpoint,
            ),
            groups_per_batch=cli.deepmath_groups_per_batch,
        ),
        DistillationDatasetConfig(
            dataset_builder=tulu3,
            teacher_config=TeacherConfig(
                base_model=cli.tulu3_teacher_model,
                load_checkpoint_path=cli.tulu3_teacher_checkpoint,
            ),
            groups_per_batch=cli.tulu3_groups_per_batch,
        ),
    ]
    log_path = cli.log_path or default_log_path(
        "on_policy_multi_teacher", cli.model_name, lr=cli.learning_rate,
        dm=cli.deepmath_groups_per_batch, tulu=cli.tulu3_groups_per_batch, r=cli.lora_rank,
    )  # fmt: skip
    evaluators = single.eval_builders(cli, renderer, deepmath)
    return single.distill_config(
        cli, renderer, log_path, datasets, evaluators, "recipe_distillation_on_policy_multi_teacher"
    )


async def cli_main(cli_config: CLIConfig) -> dict:
    """Train (or resume) the run the command describes; returns its final checkpoint record."""
    return await train_on_policy.main(build_config(cli_config))


def main(cli_config: CLIConfig) -> dict:
    return asyncio.run(cli_main(cli_config))


if __name__ == "__main__":
    main(chz.entrypoint(CLIConfig))
