"""On-policy distillation from one teacher on DeepMath (reasoning) or Tulu3 (personalization).

    python -m tinker_cookbook.recipes.distillation.on_policy_distillation \\
        model_name=Qwen/Qwen3-8B-Base load_checkpoint_path=tinker://.../weights/final \\
        dataset=deepmath learning_rate=1e-4 groups_per_batch=512 lora_rank=128 \\
        wandb_project=cookbook_distillation

`dataset_path=` reads prompts from a local file of the dataset's schema; `teacher_model` /
`teacher_checkpoint` pick the teacher. Rerunning the same command resumes.
"""

from __future__ import annotations

import asyncio

import chz

from tinker_cookbook.distillation import train_on_policy
from tinker_cookbook.distillation.datasets import HeldOutMathEvalBuilder, PromptDatasetBuilder
from tinker_cookbook.distillation.train_on_policy import DistillationDatasetConfig, TeacherConfig
from tinker_cookbook.eval.evaluators import MathEvalBuilder
from tinker_cookbook.recipes.common import RunArgs, config_from_cli, default_log_path


@chz.chz
class CLIConfig(RunArgs):
    model_name: str = "Qwen/Qwen3-8B-Base"
    dataset: str = "deepmath"  # deepmath | tulu3
    dataset_path: str | None = None
    teacher_model: str = "Qwen/Qwen3-8B"
    teacher_checkpoint: str | None = None
    renderer_name: str | None = None
    group_size: int = 4
    groups_per_batch: int = 64
    learning_rate: float = 1e-4
    lr_schedule: str = "constant"
    lr_warmup_steps: int = 0
    lora_rank: int = 128
    max_tokens: int = 4096
    temperature: float = 1.0
    kl_penalty_coef: float = 1.0
    kl_discount_factor: float = 0.0
    max_prompt_tokens: int = 1024
    recompute_student_logprobs: bool = False
    max_steps_off_policy: int = 0
    # Held-out pass@1: `eval_size` problems split off the DeepMath prompts (default 100 when
    # streaming from Hugging Face, 0 for local files), or a file of {question, final_answer}.
    eval_size: int | None = None
    eval_dataset_path: str | None = None
    eval_samples: int = 4
    eval_every: int = 20
    save_every: int = 20


def prompt_builder(
    cli: CLIConfig, dataset: str, dataset_path: str | None, groups_per_batch: int, test_size: int
) -> PromptDatasetBuilder:
    return PromptDatasetBuilder(
        dataset=dataset,
        dataset_path=dataset_path,
        model_name_for_tokenizer=cli.model_name,
        renderer_name=cli.renderer_name,
        groups_per_batch=groups_per_batch,
        group_size=cli.group_size,
        max_prompt_tokens=cli.max_prompt_tokens,
        test_size=test_size,
        seed=cli.seed,
    )


def eval_builders(cli: CLIConfig, prompts: PromptDatasetBuilder) -> list:
    if cli.eval_dataset_path:
        return [
            MathEvalBuilder(
                file_path=cli.eval_dataset_path, model_name_for_tokenizer=cli.model_name,
                renderer_name=cli.renderer_name, n_samples=cli.eval_samples, max_tokens=cli.max_tokens,
                temperature=cli.temperature, seed=cli.seed,
            )
        ]  # fmt: skip
    if prompts.dataset == "deepmath" and prompts.test_size > 0:
        return [
            HeldOutMathEvalBuilder(
                prompts=prompts,
                n_samples=cli.eval_samples,
                max_tokens=cli.max_tokens,
                temperature=cli.temperature,
            )
        ]
    return []


def build_config(cli: CLIConfig) -> train_on_policy.Config:
    eval_size = (
        cli.eval_size
        if cli.eval_size is not None
        else (100 if cli.dataset == "deepmath" and not cli.dataset_path else 0)
    )
    prompts = prompt_builder(cli, cli.dataset, cli.dataset_path, cli.groups_per_batch, eval_size)
    teacher = TeacherConfig(
        base_model=cli.teacher_model, load_checkpoint_path=cli.teacher_checkpoint
    )
    log_path = cli.log_path or default_log_path(
        "on_policy_distillation", cli.model_name, ds=cli.dataset, lr=cli.learning_rate,
        gpb=cli.groups_per_batch, r=cli.lora_rank,
    )  # fmt: skip
    return config_from_cli(
        train_on_policy.Config,
        cli,
        log_path=log_path,
        dataset_configs=[
            DistillationDatasetConfig(
                dataset_builder=prompts,
                teacher_config=teacher,
                groups_per_batch=cli.groups_per_batch,
            )
        ],
        evaluator_builders=eval_builders(cli, prompts),
    )


def main(cli: CLIConfig) -> dict:
    return asyncio.run(train_on_policy.main(build_config(cli)))


if __name__ == "__main__":
    chz.nested_entrypoint(main)
