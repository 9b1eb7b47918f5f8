"""On-policy distillation from one teacher on DeepMath (reasoning) or Tulu3 (personalization).

    python -m tinker_cookbook.recipes.distillation.on_policy_distillation \\
        model_name=Qwen/Qwen3-8B-Base load_checkpoint_path=tinker://.../weights/final \\
        dataset=deepmath learning_rate=1e-4 groups_per_batch=512 lora_rank=128 \\
        wandb_project=cookbook_distillation

`dataset_path=` reads prompts from a local file of the dataset's schema; `teacher_model` /
`teacher_checkpoint` pick the teacher. `loss_fn` (importance_sampling, ppo, cispo, dro) with
`loss_fn_config`, `num_substeps` optimizer steps per batch, and `compute_post_kl` (log how far
each step moved the policy) shape the update. The renderer is `renderer_name=`, else the one
recorded with `load_checkpoint_path`, else the model's. Rerunning the same command resumes.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import chz

from tinker_cookbook.distillation import train_on_policy
from tinker_cookbook.distillation.datasets import (
    DistillationDatasetConfig,
    HeldOutMathEvalBuilder,
    PromptOnlyDatasetBuilder,
    TeacherConfig,
)
from tinker_cookbook.eval.evaluators import EvaluatorBuilder, MathEvalBuilder
from tinker_cookbook.recipes.common import (
    RLUpdateArgs,
    default_log_path,
    loop_run_fields,
    resolve_renderer,
    rl_update_fields,
)


@chz.chz
class DistillArgs(RLUpdateArgs):
    """What every single-turn on-policy distillation recipe takes."""

    model_name: str = "Qwen/Qwen3-8B-Base"
    group_size: int = 4  # samples per prompt
    lora_rank: int = 128
    kl_penalty_coef: float = 1.0
    kl_discount_factor: float = 0.0
    max_prompt_tokens: int = 1024  # longer questions are cut to this many tokens
    recompute_student_logprobs: bool = False
    max_steps_off_policy: int = 0
    # Held-out pass@1: `eval_size` problems split off the DeepMath prompts (default 100 when
    # streaming from Hugging Face, 0 for local files), or a file of {question, final_answer}.
    eval_size: int | None = None
    eval_dataset_path: str | None = None
    eval_samples: int = 4


@chz.chz
class CLIConfig(DistillArgs):
    dataset: Literal["deepmath", "tulu3"] = "deepmath"
    dataset_path: str | None = None  # a local file of the dataset's schema
    teacher_model: str = "Qwen/Qwen3-8B"
    teacher_checkpoint: str | None = None
    groups_per_batch: int = 64


def prompt_builder(
    cli: DistillArgs,
    renderer_name: str,
    dataset: str,
    dataset_path: str | None,
    groups_per_batch: int,
    test_size: int,
) -> PromptOnlyDatasetBuilder:
    return PromptOnlyDatasetBuilder(
        dataset_name=dataset,
        dataset_path=dataset_path,
        model_name_for_tokenizer=cli.model_name,
        renderer_name=renderer_name,
        groups_per_batch=groups_per_batch,
        group_size=cli.group_size,
        max_prompt_tokens=cli.max_prompt_tokens,
        test_size=test_size,
        seed=cli.seed,
    )


def eval_builders(
    cli: DistillArgs, renderer_name: str, prompts: PromptOnlyDatasetBuilder
) -> list[EvaluatorBuilder]:
    if cli.eval_dataset_path:
        return [
            MathEvalBuilder(
                file_path=cli.eval_dataset_path, model_name_for_tokenizer=cli.model_name,
                renderer_name=renderer_name, n_samples=cli.eval_samples, max_tokens=cli.max_tokens,
                temperature=cli.temperature, seed=cli.seed,
            )
        ]  # fmt: skip
    if prompts.dataset_name == "deepmath" and prompts.test_size > 0:
        return [
            HeldOutMathEvalBuilder(
                prompts=prompts,
                n_samples=cli.eval_samples,
                max_tokens=cli.max_tokens,
                temperature=cli.temperature,
            )
        ]
    return []


def distill_config(
    cli: DistillArgs,
    renderer_name: str,
    log_path: str,
    datasets: list[DistillationDatasetConfig],
    evaluators: list[EvaluatorBuilder],
    recipe_name: str,
) -> train_on_policy.Config:
    """The loop's Config: the command's run settings and its update settings, plus these."""
    return train_on_policy.Config(
        **loop_run_fields(cli, log_path, renderer_name),
        **rl_update_fields(cli),
        recipe_name=recipe_name,
        dataset_configs=datasets,
        evaluator_builders=evaluators,
        kl_penalty_coef=cli.kl_penalty_coef,
        kl_discount_factor=cli.kl_discount_factor,
        recompute_student_logprobs=cli.recompute_student_logprobs,
        max_steps_off_policy=cli.max_steps_off_policy,
    )


def build_config(cli: CLIConfig) -> train_on_policy.Config:
    renderer = resolve_renderer(cli)
    streamed_deepmath = cli.dataset == "deepmath" and not cli.dataset_path
    eval_size = cli.eval_size if cli.eval_size is not None else (100 if streamed_deepmath else 0)
    prompts = prompt_builder(
        cli, renderer, cli.dataset, cli.dataset_path, cli.groups_per_batch, eval_size
    )
    teacher = TeacherConfig(
        base_model=cli.teacher_model, load_checkpoint_path=cli.teacher_checkpoint
    )
    dataset = DistillationDatasetConfig(
        dataset_builder=prompts, teacher_config=teacher, groups_per_batch=cli.groups_per_batch
    )
    log_path = cli.log_path or default_log_path(
        "on_policy_distillation", cli.model_name, ds=cli.dataset, lr=cli.learning_rate,
        gpb=cli.groups_per_batch, r=cli.lora_rank,
    )  # fmt: skip
    return distill_config(
        cli, renderer, log_path, [dataset], eval_builders(cli, renderer, prompts),
        "recipe_distillation_on_policy",
    )  # fmt: skip


async def cli_main(cli_config: CLIConfig) -> dict:
    """Train (or resume) the run the command describes; returns its final checkpoint record."""
    return await train_on_policy.main(build_config(cli_config))


def main(cli_config: CLIConfig) -> dict:
    return asyncio.run(cli_main(cli_config))


if __name__ == "__main__":
    main(chz.entrypoint(CLIConfig))
