"""Off-policy distillation: SFT on a teacher's reasoning traces (OpenThoughts3 by default).

    python -m tinker_cookbook.recipes.distillation.off_policy_reasoning \\
        model_name=Qwen/Qwen3-8B-Base learning_rate=1e-3 batch_size=128 lora_rank=128 \\
        wandb_project=cookbook_distillation

`dataset_path=rows.jsonl` trains on a local file of the same schema (`conversations` of
`{from, value}`) instead of streaming `open-thoughts/OpenThoughts3-1.2M`. Rerunning the same
command resumes from the last checkpoint in `log_path`.
"""

from __future__ import annotations

import chz

from tinker_cookbook.recipes.common import RunArgs, config_from_cli, default_log_path
from tinker_cookbook.renderers import TrainOnWhat
from tinker_cookbook.supervised import train
from tinker_cookbook.supervised.datasets import (
    ChatDatasetBuilder,
    ChatDatasetBuilderCommonConfig,
    FromConversationFileBuilder,
    HFChatDatasetBuilder,
)

OPENTHOUGHTS3 = "open-thoughts/OpenThoughts3-1.2M"
OPENTHOUGHTS3_ROWS = 1_200_000


@chz.chz
class CLIConfig(RunArgs):
    model_name: str = "Qwen/Qwen3-8B-Base"
    dataset: str = OPENTHOUGHTS3
    dataset_path: str | None = None  # a local .jsonl/.json/.parquet file of the same schema
    renderer_name: str | None = None
    max_length: int = 16384
    batch_size: int = 128
    test_size: int = 0  # held-out conversations for the NLL evaluation
    skip_bad_rows: bool = False
    learning_rate: float = 1e-3
    lr_schedule: str = "linear"
    lr_warmup_steps: int = 0
    num_epochs: int = 1
    lora_rank: int = 128
    eval_every: int = 50
    save_every: int = 50


def dataset_builder(cli: CLIConfig) -> ChatDatasetBuilder:
    common = ChatDatasetBuilderCommonConfig(
        model_name_for_tokenizer=cli.model_name,
        renderer_name=cli.renderer_name,
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
        )
    return HFChatDatasetBuilder(
        common_config=common,
        dataset_name=cli.dataset,
        test_size=cli.test_size,
        shuffle_seed=cli.seed,
        num_rows=OPENTHOUGHTS3_ROWS if cli.dataset == OPENTHOUGHTS3 else None,
        skip_bad_rows=cli.skip_bad_rows,
    )


def build_config(cli: CLIConfig) -> train.Config:
    log_path = cli.log_path or default_log_path(
        "off_policy_reasoning",
        cli.model_name,
        lr=cli.learning_rate,
        bs=cli.batch_size,
        r=cli.lora_rank,
    )
    return config_from_cli(
        train.Config, cli, log_path=log_path, dataset_builder=dataset_builder(cli)
    )


def main(cli: CLIConfig) -> dict:
    return train.main(build_config(cli))


if __name__ == "__main__":
    chz.nested_entrypoint(main)
