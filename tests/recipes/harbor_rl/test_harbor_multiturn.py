"""Multi-turn episodes on real Harbor tasks in real sandboxes: the loss mask token by token,
zero-reward distillation, and the recipes end to end on tiny models."""

import asyncio
import json

import chz
import pytest

from tinker_cookbook.local import get_tokenizer
from tinker_cookbook.recipes.distillation import on_policy_distillation_harbor_multi_turn as mt
from tinker_cookbook.recipes.distillation.harbor_multiturn import (
    HarborDistillationDatasetBuilder,
    zero_reward,
)
from tinker_cookbook.recipes.harbor_rl import train as harbor_train
from tinker_cookbook.recipes.harbor_rl.harbor_env import HarborDatasetBuilder
from tinker_cookbook.rl.data_processing import groups_to_data
from tinker_cookbook.rl.rollouts import do_group_rollout
from tinker_cookbook.rl.types import TokensWithLogprobs
from tinker_cookbook.sandbox import available_backends
from tinker_cookbook.utils.checkpoints import load_checkpoints
from tinker_cookbook.utils.ml_log import read_metrics

pytestmark = pytest.mark.skipif(not available_backends(), reason="no sandbox backend")
TOK = get_tokenizer("tiny-qwen3-1m")
IM_END = TOK.convert_tokens_to_ids("<|im_end|>")


def call(command: str) -> list[int]:
    payload = json.dumps({"name": "bash", "arguments": {"command": command}})
    return TOK.encode(f"<tool_call>\n{payload}\n</tool_call>") + [IM_END]


SCRIPT = [
    call("cat /app/numbers.txt"),
    call("awk '{s+=$1} END {print s}' /app/numbers.txt > /app/answer.txt && cat /app/answer.txt"),
    TOK.encode("The sum is in /app/answer.txt.") + [IM_END],
]


def scripted_policy(script=SCRIPT):
    replies = iter(script)

    async def policy(observation, stop):
        assert stop == [IM_END]
        tokens = next(replies)
        return TokensWithLogprobs(tokens, [-0.5] * len(tokens))

    return policy


def one_group(builder_class, environment="local", renderer_name=None, script=SCRIPT):
    builder = builder_class(
        model_name="tiny-qwen3-1m",
        task_name="sum-numbers",
        group_size=1,
        batch_size=1,
        environment=environment,
        renderer_name=renderer_name,
    )
    train, _ = asyncio.run(builder())
    return asyncio.run(do_group_rollout(train.get_batch(0)[0], scripted_policy(script)))


@pytest.mark.parametrize("environment", ["local", "podman"])
def test_mask_of_a_real_multi_turn_trajectory_token_by_token(environment, request):
    if environment == "podman":
        request.getfixturevalue("podman")
    group = one_group(HarborDatasetBuilder, environment)
    (trajectory,) = group.trajectories_G
    assert len(trajectory.transitions) == 3
    assert trajectory.transitions[-1].metrics["stop/completed"] == 1.0
    assert group.get_total_rewards() == [1.0]  # the task's own tests pass

    (datum,), _, dropped = groups_to_data([group])
    assert dropped == 0  # one sequence: every turn extended the previous one
    full = datum.model_input.to_ints() + [int(datum.loss_fn_inputs["target_tokens"].tolist()[-1])]
    mask = [0.0] + datum.loss_fn_inputs["mask"].tolist()  # mask of full[i]
    # Rebuild the expected mask from the observations and the scripted actions.
    expected, position, env_text = [], 0, []
    for transition, action in zip(trajectory.transitions, SCRIPT, strict=True):
        observation = transition.ob.to_ints()
        env_part = observation[position:]
        env_text.append(TOK.decode(env_part))
        expected += [0.0] * len(env_part) + [1.0] * len(action)
        position = len(observation) + len(action)
    assert mask == expected and len(full) == len(expected)
    assert (
        full[: len(trajectory.transitions[0].ob.to_ints())]
        == trajectory.transitions[0].ob.to_ints()
    )
    # Environment tokens: system prompt + instruction, then real tool output with headers.
    assert "<|im_start|>system" in env_text[0] and "/app/numbers.txt has one integer" in env_text[0]
    assert env_text[1].startswith("\n<|im_start|>user\n<tool_response>\n12\n-5\n40")
    assert env_text[2].startswith("\n<|im_start|>user\n<tool_response>\n360\n")
    assert all(t.endswith("<|im_start|>assistant\n") for t in env_text)
    sampled = [t for t, m in zip(full, mask, strict=True) if m]
    assert sampled == [t for action in SCRIPT for t in action]


def with_reasoning(reply: list[int]) -> list[int]:
    return TOK.encode("<think>\nworking it out\n</think>\n\n") + reply


@pytest.mark.parametrize(
    ("renderer_name", "script", "sequences"),
    [
        # Qwen3 keeps the reasoning of the turn being produced: every prompt extends the last.
        ("qwen3", [with_reasoning(reply) for reply in SCRIPT], 1),
        # Its template drops the prefilled empty think block from earlier turns: each turn is
        # trained on the prompt it was sampled from, as its own sequence.
        ("qwen3_disable_thinking", SCRIPT, 3),
    ],
)
def test_thinking_formats_train_each_turn_on_the_prompt_it_was_sampled_from(
    renderer_name, script, sequences
):
    group = one_group(HarborDatasetBuilder, renderer_name=renderer_name, script=script)
    (trajectory,) = group.trajectories_G
    assert len(trajectory.transitions) == 3 and group.get_total_rewards() == [1.0]
    data, _, _ = groups_to_data([group])
    assert len(data) == sequences
    trained = []
    for datum in data:
        full = datum.model_input.to_ints() + datum.loss_fn_inputs["target_tokens"].tolist()[-1:]
        mask = [0.0] + datum.loss_fn_inputs["mask"].tolist()
        trained += [t for t, m in zip(full, mask, strict=True) if m]
    assert trained == [t for reply in script for t in reply]  # exactly what was sampled
    for transition in trajectory.transitions:  # and each prompt is the template's
        assert any(
            d.model_input.to_ints()[: transition.ob.length] == transition.ob.to_ints() for d in data
        )


def test_distillation_builder_gives_zero_reward_even_when_solved():
    assert asyncio.run(zero_reward([{"role": "user", "content": "x"}])) == (0.0, {})
    group = one_group(HarborDistillationDatasetBuilder)
    assert group.get_total_rewards() == [0.0]
    # no test ever ran
    assert "grading_error" not in group.trajectories_G[0].transitions[-1].metrics


@pytest.mark.parametrize("environment", ["local", "podman"])
def test_multi_turn_distillation_recipe_runs_on_tiny_models(tmp_path, environment, request):
    if environment == "podman":
        request.getfixturevalue("podman")
    cli = chz.Blueprint(mt.CLIConfig).make_from_argv(
        [
            f"environment={environment}",
            "model_name=tiny-qwen3-1m",
            "teacher_model=tiny-qwen3-4m",
            "max_turns=2",
            "group_size=2",
            "groups_per_batch=2",
            "learning_rate=1e-4",
            "lora_rank=8",
            "max_tokens=24",
            "max_trajectory_tokens=4096",
            "max_steps=2",
            "save_every=1",
            f"log_path={tmp_path}",
        ]  # fmt: skip
    )
    mt.main(cli)
    rows = [r for r in read_metrics(tmp_path) if "teacher_kl" in r]
    assert len(rows) == 2 and all(r["teacher_kl_tokens/harbor"] > 0 for r in rows)
    assert all(r["env/all/reward/total"] == 0.0 for r in rows)
    assert load_checkpoints(tmp_path)[-1]["name"] == "final"


def test_harbor_rl_recipe_runs_on_tiny_models(tmp_path):
    cli = chz.Blueprint(harbor_train.CLIConfig).make_from_argv(
        [
            "model_name=tiny-qwen3-1m",
            "group_size=2",
            "groups_per_batch=2",
            "max_turns=2",
            "max_tokens=16",
            "max_steps=1",
            "lora_rank=4",
            "environment=local",
            "test_size=2",
            "eval_every=1",
            f"log_path={tmp_path}",
        ]  # fmt: skip
    )
    harbor_train.main(cli)
    (row,) = [r for r in read_metrics(tmp_path) if "env/all/num_trajectories" in r]
    # Replies cut off at max_tokens=16 end their episode ungraded (context_overflow_reward).
    assert row["env/all/num_trajectories"] == 4 and row.get("env/all/grading_error", 0.0) == 0.0
    assert row["env/grading_error"] == 0 and row["test/env/all/num_trajectories"] == 4


def test_seed_command_parses_as_written():
    cli = chz.Blueprint(mt.CLIConfig).make_from_argv(
        [
            "model_name=moonshotai/Kimi-K2-Thinking",
            "teacher_model=moonshotai/Kimi-K2-Thinking",
            "max_turns=10",
            "group_size=4",
            "groups_per_batch=8",
            "learning_rate=1e-4",
            "lora_rank=8",
            "max_tokens=2048",
            "max_trajectory_tokens=24576",
        ]  # fmt: skip
    )
    config = mt.build_config(cli)
    (ds,) = config.dataset_configs
    builder = ds.dataset_builder
    assert isinstance(builder, HarborDistillationDatasetBuilder)
    assert (builder.max_turns, builder.group_size, builder.max_trajectory_tokens) == (10, 4, 24576)
    assert (
        ds.groups_per_batch == 8 and ds.teacher_config.base_model == "moonshotai/Kimi-K2-Thinking"
    )
    assert (config.max_tokens, config.lora_rank, config.learning_rate) == (2048, 8, 1e-4)
