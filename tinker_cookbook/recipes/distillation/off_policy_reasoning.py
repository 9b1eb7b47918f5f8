"""Off-policy distillation: SFT on a teacher's reasoning traces (OpenThoughts3 by default).

    python -m tinker_cookbook.recipes.distillation.off_policy_reasoning \\
        model_name=Qwen/Qwen3-8B-Base learning_rate=1e-3 batch_size=128 lora_rank=128 \\
        wandb_project=cookbook_distillation

OpenThoughts3 is streamed through a shuffle buffer of `buffer_size` rows, and an epoch is
`max_prompts` conversations (3,000 steps of 128 by default). `dataset_path=rows.jsonl` trains on
a local file of the same schema (`conversations` of `{from, value}`) instead. The renderer is
`renderer_name=`, else the one recorded with `load_checkpoint_path`, else the model's. Rerunning
the same command resumes from the last checkpoint in `log_path`.
"""

from __future__ import annotations

import asyncio

import chz

from tinker_cookbook.recipes.common import (
    RunArgs,
    default_log_path,
    loop_run_fields,
    resolve_renderer,
)
from tinker_cookbook.renderers import TrainOnWhat
from tinker_cookbook.supervised import train
from tinker_cookbook.supervised.data import FromConversationFileBuilder, HFChatDatasetBuilder
from tinker_cookbook.supervised.types import ChatDatasetBuilder, ChatDatasetBuilderCommonConfig
from tinker_cookbook.utils.lr_schedule import LRSchedule

OPENTHOUGHTS3 = "open-thoughts/OpenThoughts3-1.2M"
OPENTHOUGHTS3_ROWS = 1_200_000


@chz.chz
class CLIConfig(RunArgs):
    model_name: str = "Qwen/Qwen3-8B-Base"
    dataset: str = OPENTHOUGHTS3
    dataset_path: str | None = None  # a local .jsonl/.json/.parquet file of the same schema
    max_length: int = 16384
    batch_size: int = 128
    # Rows held in the streaming shuffle buffer (the cookbook uses 128 * 3000; each row is a
    # long trace, so that needs many GB of memory).
    buffer_size: int = 10_000
    max_prompts: int = 128 * 3000  # conversations per epoch (a local file: at most this many)
    test_size: int = 0  # held-out conversations for the NLL evaluation
    skip_bad_rows: bool = False
    learning_rate: float = 1e-3
    lr_schedule: LRSchedule = "linear"
    num_epochs: int = 1
    lora_rank: int = 128
    eval_every: int = 50
    save_every: int = 50


def dataset_builder(cli: CLIConfig, renderer_name: str | None = None) -> ChatDatasetBuilder:
    common = ChatDatasetBuilderCommonConfig(
        model_name_for_tokenizer=cli.model_name,
        renderer_name=renderer_name or cli.renderer_name,
        max_length=cli.max_length,
        batch_size=cli.batch_size,
        train_on_what=TrainOnWhat.ALL_ASSISTANT_MESSAGES,
    )
    if cli.dataset_path:
        return FromConversationFileBuilder(
            common_config=common,
            file_path=cli.dataset_path,
            test_size=cli.test_size,
            shuffle_seed=cli.seed,
            skip_bad_rows=cli.skip_bad_rows,
            max_rows=cli.max_prompts,
        )
    return HFChatDatasetBuilder(
        common_config=common,
        dataset_name=cli.dataset,
        test_size=cli.test_size,
        shuffle_seed=cli.seed,
        shuffle_buffer=cli.buffer_size,
        num_rows=OPENTHOUGHTS3_ROWS if cli.dataset == OPENTHOUGHTS3 else None,
        max_rows=cli.max_prompts,
        skip_bad_rows=cli.skip_bad_rows,
    )


def build_config(cli: CLIConfig) -> train.Config:
    renderer_name = resolve_renderer(cli)
    log_path = cli.log_path or default_log_path(
        "off_policy_reasoning",
        cli.model_name,
        lr=cli.learning_rate,
        bs=cli.batch_size,
        r=cli.lora_rank,
    )
    return train.Config(
        **loop_run_fields(cli, log_path, renderer_name),
        recipe_name="recipe_distillation_off_policy_reasoning",
        dataset_builder=dataset_builder(cli, renderer_name),
        num_epochs=cli.num_epochs,
    )


def cli_main(cli_config: CLIConfig) -> dict:
    """Train (or resume) the run the command describes; returns its final checkpoint record."""
    return asyncio.run(train.main(build_config(cli_config)))


main = cli_main


if __name__ == "__main__":
    cli_main(chz.entrypoint(CLIConfig))
