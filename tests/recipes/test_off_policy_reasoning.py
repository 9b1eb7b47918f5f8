"""The seed's off-policy command parses as written and builds the documented run."""

import chz
import pytest

from tinker_cookbook.recipes.distillation import off_policy_reasoning as recipe
from tinker_cookbook.supervised.datasets import HFChatDatasetBuilder

SEED_ARGS = [
    "model_name=Qwen/Qwen3-8B-Base",
    "learning_rate=1e-3",
    "batch_size=128",
    "lora_rank=128",
    "wandb_project=cookbook_distillation",
]


def test_seed_command_builds_an_openthoughts3_run():
    cli = chz.Blueprint(recipe.CLIConfig).make_from_argv(SEED_ARGS)
    config = recipe.build_config(cli)
    assert (config.model_name, config.learning_rate, config.lora_rank) == (
        "Qwen/Qwen3-8B-Base",
        1e-3,
        128,
    )
    assert config.wandb_project == "cookbook_distillation"
    builder = config.dataset_builder
    assert isinstance(builder, HFChatDatasetBuilder)
    assert builder.dataset_name == "open-thoughts/OpenThoughts3-1.2M"
    assert builder.common_config.batch_size == 128
    assert builder.renderer.name == "qwen3"  # the real Qwen3 vocabulary, offline
    assert config.log_path == recipe.build_config(cli).log_path  # same command, same run folder


def test_unknown_flags_are_rejected():
    with pytest.raises(Exception, match="learning_rat"):
        chz.Blueprint(recipe.CLIConfig).make_from_argv([*SEED_ARGS, "learning_rat=1"])
