"""The cookbook's documented on-policy distillation example, run against this package.

Written from the cookbook's distillation reference: the same imports, builders and config
fields, with the built-in tiny models and the DeepMath fixture in place of 8B models and the
Hugging Face dataset (the only change: `dataset_path=`, this project's offline addition).
"""

import asyncio
import json
from pathlib import Path

import chz

from tinker_cookbook import checkpoint_utils, cli_utils
from tinker_cookbook.distillation import train_on_policy
from tinker_cookbook.distillation.datasets import (
    DistillationDatasetConfig,
    PromptOnlyDatasetBuilder,
    TeacherConfig,
)

DEEPMATH = Path(__file__).parents[1] / "fixtures" / "deepmath_sample.jsonl"


@chz.chz
class CLIConfig:
    model_name: str = "tiny-qwen3-1m"
    teacher_model: str = "tiny-qwen3-1m"
    dataset: str = "deepmath"
    group_size: int = 2
    groups_per_batch: int = 2
    learning_rate: float = 1e-4
    max_tokens: int = 16
    kl_penalty_coef: float = 1.0
    kl_discount_factor: float = 0.0
    lora_rank: int = 8
    renderer_name: str | None = None
    load_checkpoint_path: str | None = None
    log_path: str | None = None
    behavior_if_log_dir_exists: cli_utils.LogdirBehavior = "ask"
    max_steps: int | None = None


async def cli_main(cli_config: CLIConfig, dataset_path: str) -> None:
    renderer_name = await checkpoint_utils.resolve_renderer_name_from_checkpoint_or_default_async(
        model_name=cli_config.model_name,
        explicit_renderer_name=cli_config.renderer_name,
        load_checkpoint_path=cli_config.load_checkpoint_path,
    )
    dataset_builder = PromptOnlyDatasetBuilder(
        dataset_name=cli_config.dataset,
        groups_per_batch=cli_config.groups_per_batch,
        group_size=cli_config.group_size,
        model_name_for_tokenizer=cli_config.model_name,
        renderer_name=renderer_name,
        dataset_path=dataset_path,
    )
    teacher_config = TeacherConfig(base_model=cli_config.teacher_model)
    dataset_config = DistillationDatasetConfig(
        dataset_builder=dataset_builder,
        teacher_config=teacher_config,
        groups_per_batch=cli_config.groups_per_batch,
    )
    log_path = cli_config.log_path
    assert log_path is not None
    cli_utils.check_log_dir(log_path, behavior_if_exists=cli_config.behavior_if_log_dir_exists)
    config = train_on_policy.Config(
        dataset_configs=[dataset_config],
        model_name=cli_config.model_name,
        renderer_name=renderer_name,
        learning_rate=cli_config.learning_rate,
        lora_rank=cli_config.lora_rank,
        max_tokens=cli_config.max_tokens,
        kl_penalty_coef=cli_config.kl_penalty_coef,
        kl_discount_factor=cli_config.kl_discount_factor,
        log_path=log_path,
        max_steps=cli_config.max_steps,
    )
    await train_on_policy.main(config)


def test_documented_distillation_example_trains_one_step(tmp_path, isolated_cache):
    log_path = tmp_path / "distill"
    cli_config = CLIConfig(log_path=str(log_path), max_steps=1)
    asyncio.run(cli_main(cli_config, str(DEEPMATH)))
    rows = [json.loads(line) for line in (log_path / "metrics.jsonl").read_text().splitlines()]
    trained = [row for row in rows if "teacher_kl" in row]
    assert len(trained) == 1, rows
    assert trained[0]["teacher_kl"] == trained[0]["teacher_kl"]  # a number, not NaN


def test_check_log_dir_raise_refuses_an_existing_run(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    try:
        cli_utils.check_log_dir(str(tmp_path), behavior_if_exists="raise")
    except (FileExistsError, ValueError) as exc:
        assert str(tmp_path) in str(exc)
    else:
        raise AssertionError("behavior_if_exists='raise' accepted a directory with a run in it")
