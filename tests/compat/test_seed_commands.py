"""The user's own commands (the project seed's "Run it" section), parsed by each recipe's
command line and built into the run they describe, offline: every flag is accepted, reaches the
training config, and the renderer each model needs is the one chosen. (Training an 8B model is
not done here; the same recipes run end to end on the tiny models in tests/recipes.)"""

import shlex

import chz
import pytest

from tinker_cookbook.recipes.distillation import (
    off_policy_reasoning,
    on_policy_distillation,
    on_policy_distillation_harbor_multi_turn,
    on_policy_multi_teacher,
)

SEED_COMMANDS = {
    "off_policy": (
        off_policy_reasoning,
        "model_name=Qwen/Qwen3-8B-Base learning_rate=1e-3 batch_size=128 lora_rank=128 "
        "wandb_project=cookbook_distillation",
    ),
    "on_policy_deepmath": (
        on_policy_distillation,
        "model_name=Qwen/Qwen3-8B-Base "
        "load_checkpoint_path=tinker://4a1939e6-04be-5a77-9e4e-910ccff9f27e:train:0/weights/final "
        "dataset=deepmath learning_rate=1e-4 groups_per_batch=512 lora_rank=128 "
        "wandb_project=cookbook_distillation",
    ),
    "on_policy_tulu3": (
        on_policy_distillation,
        "model_name=Qwen/Qwen3-8B-Base dataset=tulu3 learning_rate=1e-4 groups_per_batch=64 "
        "lora_rank=128 wandb_project=cookbook_distillation",
    ),
    "harbor_multi_turn": (
        on_policy_distillation_harbor_multi_turn,
        "model_name=moonshotai/Kimi-K2-Thinking teacher_model=moonshotai/Kimi-K2-Thinking "
        "max_turns=10 group_size=4 groups_per_batch=8 learning_rate=1e-4 lora_rank=8 "
        "max_tokens=2048 max_trajectory_tokens=24576",
    ),
    "multi_teacher": (
        on_policy_multi_teacher,
        "learning_rate=1e-4 deepmath_groups_per_batch=256 tulu3_groups_per_batch=256 "
        "lora_rank=128 wandb_project=cookbook_distillation",
    ),
}


def parse(module, command: str):
    return chz.Blueprint(module.CLIConfig).make_from_argv(shlex.split(command))


@pytest.mark.parametrize("name", sorted(SEED_COMMANDS))
def test_each_seed_command_builds_its_run(name):
    module, command = SEED_COMMANDS[name]
    config = module.build_config(parse(module, command))
    flags = dict(arg.split("=", 1) for arg in shlex.split(command))
    assert config.learning_rate == float(flags["learning_rate"])
    assert config.lora_rank == int(flags["lora_rank"])
    if "model_name" in flags:
        assert config.model_name == flags["model_name"]
    if "wandb_project" in flags:
        assert config.wandb_project == flags["wandb_project"]


def test_the_kimi_command_renders_in_kimis_format():
    module, command = SEED_COMMANDS["harbor_multi_turn"]
    config = module.build_config(parse(module, command))
    assert config.renderer_name == "kimi_k2"
    (dataset,) = config.dataset_configs
    assert dataset.teacher_config.base_model == "moonshotai/Kimi-K2-Thinking"
    assert dataset.dataset_builder.max_trajectory_tokens == 24576


def test_the_qwen_commands_render_in_qwen3s_format():
    for name in ("off_policy", "on_policy_tulu3", "multi_teacher"):
        module, command = SEED_COMMANDS[name]
        assert module.build_config(parse(module, command)).renderer_name == "qwen3", name
