"""Every distillation recipe takes the cookbook recipe's flags (`--help` lists them), and the
seed's commands still build their runs."""

import subprocess
import sys

import chz
import pytest

from tinker_cookbook.recipes.distillation import off_policy_reasoning as off_policy
from tinker_cookbook.recipes.distillation import on_policy_distillation as single
from tinker_cookbook.recipes.distillation import on_policy_distillation_harbor_multi_turn as harbor
from tinker_cookbook.recipes.distillation import on_policy_multi_teacher as multi

SHARED = [
    "model_name",
    "lora_rank",
    "renderer_name",
    "load_checkpoint_path",
    "learning_rate",
    "log_path",
    "wandb_project",
    "wandb_name",
    "save_every",
    "base_url",
    "behavior_if_log_dir_exists",
    "max_steps",
]
ON_POLICY = [
    "group_size",
    "max_tokens",
    "temperature",
    "kl_penalty_coef",
    "kl_discount_factor",
    "num_substeps",
    "loss_fn",
    "loss_fn_config",
    "eval_every",
]
COOKBOOK_FLAGS = {
    "off_policy_reasoning": SHARED
    + [
        "batch_size",
        "lr_schedule",
        "num_epochs",
        "max_length",
        "buffer_size",
        "max_prompts",
        "eval_every",
    ],
    "on_policy_distillation": SHARED
    + ON_POLICY
    + ["teacher_model", "teacher_checkpoint", "dataset", "groups_per_batch", "compute_post_kl"],
    "on_policy_multi_teacher": SHARED
    + ON_POLICY
    + [
        "deepmath_teacher_model",
        "deepmath_teacher_checkpoint",
        "tulu3_teacher_model",
        "tulu3_teacher_checkpoint",
        "deepmath_groups_per_batch",
        "tulu3_groups_per_batch",
        "compute_post_kl",
    ],
    "on_policy_distillation_harbor_multi_turn": SHARED
    + ON_POLICY
    + [
        "teacher_model",
        "teacher_checkpoint",
        "task_name",
        "max_turns",
        "sandbox_timeout",
        "command_timeout",
        "max_trajectory_tokens",
        "groups_per_batch",
    ],
}
OURS = ["seed", "backend"]


@pytest.mark.parametrize("recipe", sorted(COOKBOOK_FLAGS))
def test_help_lists_the_cookbook_flags(recipe):
    out = subprocess.run(
        [sys.executable, "-m", f"tinker_cookbook.recipes.distillation.{recipe}", "--help"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    listed = {line.split()[0] for line in out.stdout.splitlines() if line.startswith("  ")}
    missing = [f for f in COOKBOOK_FLAGS[recipe] + OURS if f not in listed]
    assert not missing, f"{recipe} --help lacks {missing}:\n{out.stdout}{out.stderr}"


@pytest.mark.parametrize("module", [off_policy, single, multi, harbor])
def test_recipes_expose_cli_main_and_main(module):
    assert callable(module.cli_main) and callable(module.main)


def test_new_flags_reach_the_loop_config():
    cli = chz.Blueprint(single.CLIConfig).make_from_argv(
        [
            "model_name=tiny-qwen3-1m",
            "loss_fn=dro",
            "loss_fn_config.beta=0.05",
            "num_substeps=2",
            "compute_post_kl=True",
        ]
    )
    config = single.build_config(cli)
    assert (config.loss_fn, config.loss_fn_config) == ("dro", {"beta": 0.05})
    assert config.num_substeps == 2 and config.compute_post_kl
    mt = multi.build_config(
        chz.Blueprint(multi.CLIConfig).make_from_argv(
            ["model_name=tiny-qwen3-1m", "deepmath_teacher_model=tiny-qwen3-4m", "num_substeps=3"]
        )
    )
    assert mt.dataset_configs[0].teacher_config.base_model == "tiny-qwen3-4m"
    assert mt.num_substeps == 3
    ot = off_policy.build_config(
        chz.Blueprint(off_policy.CLIConfig).make_from_argv(
            ["model_name=tiny-qwen3-1m", "buffer_size=64", "max_prompts=1280"]
        )
    )
    assert (ot.dataset_builder.shuffle_buffer, ot.dataset_builder.max_rows) == (64, 1280)
    h = harbor.build_config(
        chz.Blueprint(harbor.CLIConfig).make_from_argv(
            ["model_name=tiny-qwen3-1m", "test_size=2", "loss_fn=ppo", "num_substeps=2"]
        )
    )
    assert h.dataset_configs[0].dataset_builder.test_size == 2
    assert (h.loss_fn, h.num_substeps) == ("ppo", 2)


def test_a_bad_loss_fn_is_refused_at_parse_time():
    with pytest.raises(Exception, match="Could not cast 'sft' to Literal"):
        chz.Blueprint(single.CLIConfig).make_from_argv(["loss_fn=sft"])
