"""On-policy distillation end to end on tiny models: KL falls, teachers are routed per
dataset, failures are named and resumable, bad configs are refused before any sampling."""

import asyncio

import chz
import numpy as np
import pytest

from tests.distillation.conftest import DEEPMATH, TULU3
from tinker_cookbook.distillation import train_on_policy
from tinker_cookbook.distillation.datasets import TeacherConfig
from tinker_cookbook.distillation.train_on_policy import TeacherError
from tinker_cookbook.recipes.distillation import on_policy_distillation as single
from tinker_cookbook.recipes.distillation import on_policy_multi_teacher as multi
from tinker_cookbook.utils.checkpoints import load_checkpoints
from tinker_cookbook.utils.ml_log import read_metrics

TINY = [
    "model_name=tiny-qwen3-1m",
    "group_size=2",
    "max_tokens=24",
    "lora_rank=8",
    "eval_every=0",
    "save_every=0",
]


def run_single(tmp_path, *args):
    cli = chz.Blueprint(single.CLIConfig).make_from_argv([*TINY, f"log_path={tmp_path}", *args])
    return single.main(cli)


def run_multi(tmp_path, *args):
    cli = chz.Blueprint(multi.CLIConfig).make_from_argv([*TINY, f"log_path={tmp_path}", *args])
    return multi.main(cli)


def steps(log_path, key):
    return [r[key] for r in read_metrics(log_path) if key in r]


def test_teacher_kl_falls_as_the_student_learns(tmp_path, trained_teacher):
    run_single(
        tmp_path, "teacher_model=tiny-qwen3-1m", f"teacher_checkpoint={trained_teacher}",
        f"dataset_path={DEEPMATH}", "groups_per_batch=4", "learning_rate=2e-3", "max_steps=20",
    )  # fmt: skip
    kl = steps(tmp_path, "teacher_kl")
    assert len(kl) == 20
    assert np.mean(kl[-3:]) < 0.7 * np.mean(kl[:3])
    assert steps(tmp_path, "env/all/reward/total") == [0.0] * 20  # no environment reward
    assert load_checkpoints(tmp_path)[-1]["name"] == "final"
    assert (tmp_path / "plots" / "teacher_kl.png").stat().st_size > 1000


@pytest.mark.parametrize("swap", [False, True])
def test_each_dataset_is_scored_by_its_own_teacher(tmp_path, trained_teacher, swap):
    """The untrained base as a teacher agrees with the (untrained) student: KL ~ 0. The trained
    teacher disagrees sharply. Swapping the teachers swaps which dataset shows the KL."""
    same, different = ("tiny-qwen3-1m", ""), ("tiny-qwen3-1m", trained_teacher)
    dm, tulu = (different, same) if swap else (same, different)
    run_multi(
        tmp_path, f"deepmath_dataset_path={DEEPMATH}", f"tulu3_dataset_path={TULU3}",
        "deepmath_groups_per_batch=3", "tulu3_groups_per_batch=2", "max_steps=1", "learning_rate=0",
        f"deepmath_teacher_model={dm[0]}", f"tulu3_teacher_model={tulu[0]}",
        *([f"deepmath_teacher_checkpoint={dm[1]}"] if dm[1] else []),
        *([f"tulu3_teacher_checkpoint={tulu[1]}"] if tulu[1] else []),
    )  # fmt: skip
    (m,) = [r for r in read_metrics(tmp_path) if "teacher_kl" in r]
    agree, disagree = (
        ("teacher_kl/tulu3", "teacher_kl/deepmath")
        if swap
        else ("teacher_kl/deepmath", "teacher_kl/tulu3")
    )
    assert abs(m[agree]) < 0.02
    assert m[disagree] > 1.0
    # Each dataset contributed its own number of groups (x group_size 2) to the batch.
    assert m["env/deepmath/num_trajectories"] == 6 and m["env/tulu3/num_trajectories"] == 4
    total = m["teacher_kl_tokens/deepmath"] + m["teacher_kl_tokens/tulu3"]
    assert m["teacher_kl"] == pytest.approx(
        m[disagree] * m[f"teacher_kl_tokens/{disagree.split('/')[1]}"] / total, abs=0.02
    )


def test_teacher_with_its_own_system_prompt_sees_a_different_context(tmp_path, trained_teacher):
    """Same seeded samples, same teacher weights: only the teacher's context differs, and so
    does its KL."""

    def teacher_kl(log_path, system_prompt):
        config = single.build_config(
            chz.Blueprint(single.CLIConfig).make_from_argv(
                [
                    *TINY,
                    f"log_path={log_path}",
                    "teacher_model=tiny-qwen3-1m",
                    f"dataset_path={DEEPMATH}",
                    "groups_per_batch=2",
                    "max_steps=1",
                    "learning_rate=0",
                ]  # fmt: skip
            )
        )
        teacher = TeacherConfig(
            base_model="tiny-qwen3-1m",
            load_checkpoint_path=trained_teacher,
            system_prompt=system_prompt,
        )
        datasets = [chz.replace(config.dataset_configs[0], teacher_config=teacher)]
        asyncio.run(train_on_policy.main(chz.replace(config, dataset_configs=datasets)))
        (m,) = [r for r in read_metrics(log_path) if "teacher_kl" in r]
        return m["teacher_kl/deepmath"], m["teacher_kl_tokens/deepmath"]

    plain, tokens = teacher_kl(tmp_path / "plain", None)
    prompted, tokens2 = teacher_kl(tmp_path / "prompted", "You are a careful mathematician.")
    assert tokens == tokens2 > 0  # the same student samples
    assert abs(prompted - plain) > 0.05


def test_recompute_student_logprobs_reports_agreement(tmp_path):
    run_single(
        tmp_path, "teacher_model=tiny-qwen3-4m", f"dataset_path={DEEPMATH}", "groups_per_batch=2",
        "max_steps=2", "recompute_student_logprobs=True", "max_steps_off_policy=1",
    )  # fmt: skip
    disagreement = steps(tmp_path, "student_logprob_disagreement/deepmath")
    assert len(disagreement) == 2 and 0 <= disagreement[0] < 0.02  # same weights, bf16 noise only


def test_a_teacher_failing_mid_run_is_named_and_the_run_resumes(tmp_path, monkeypatch):
    args = [
        "teacher_model=tiny-qwen3-4m",
        f"dataset_path={DEEPMATH}",
        "groups_per_batch=2",
        "max_steps=4",
        "save_every=2",
    ]
    calls = {"n": 0}
    original = train_on_policy.TeacherScorer._teacher_logprobs

    async def flaky(self, datum, builder):
        calls["n"] += 1
        if calls["n"] > 4 * 2:  # steps 0-1 succeed (4 datums each), step 2 fails
            raise ConnectionError("teacher server went away")
        return await original(self, datum, builder)

    monkeypatch.setattr(train_on_policy.TeacherScorer, "_teacher_logprobs", flaky)
    with pytest.raises(
        TeacherError,
        match=r"teacher tiny-qwen3-4m of dataset 'deepmath' failed while scoring: ConnectionError: teacher server went away",
    ):
        run_single(tmp_path, *args)
    assert [r["name"] for r in load_checkpoints(tmp_path)] == ["000002"]
    monkeypatch.setattr(train_on_policy.TeacherScorer, "_teacher_logprobs", original)
    run_single(tmp_path, *args)  # the same command resumes from step 2
    assert steps(tmp_path, "progress/step") == [0, 1, 2, 3]
    assert load_checkpoints(tmp_path)[-1]["name"] == "final"


def test_bad_configs_fail_before_sampling(tmp_path):
    config = single.build_config(
        chz.Blueprint(single.CLIConfig).make_from_argv(
            [
                *TINY,
                f"log_path={tmp_path}",
                "teacher_model=tiny-qwen3-4m",
                f"dataset_path={DEEPMATH}",
            ]
        )
    )
    no_teacher = chz.replace(
        config, dataset_configs=[chz.replace(config.dataset_configs[0], teacher_config=None)]
    )
    with pytest.raises(
        ValueError, match=r"dataset_configs\[0\] \(deepmath\) has no teacher_config"
    ):
        asyncio.run(train_on_policy.main(no_teacher))
    other_vocab = chz.replace(
        config,
        dataset_configs=[
            chz.replace(
                config.dataset_configs[0], teacher_config=TeacherConfig(base_model="Qwen/Qwen3-8B")
            )
        ],
    )
    with pytest.raises(
        ValueError, match="'Qwen/Qwen3-8B' and student 'tiny-qwen3-1m' have different tokenizers"
    ):
        asyncio.run(train_on_policy.main(other_vocab))
    assert not (tmp_path / "metrics.jsonl").exists()


def test_empty_prompt_rows_are_named(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        DEEPMATH.read_text().splitlines()[0] + '\n{"question": "  ", "final_answer": "1"}\n'
    )
    with pytest.raises(
        ValueError, match=r"bad.jsonl row 1 \(line 2\): field 'question' is missing or empty"
    ):
        run_single(
            tmp_path / "run", "teacher_model=tiny-qwen3-4m", f"dataset_path={bad}", "max_steps=1"
        )


SEED_SINGLE = [
    "model_name=Qwen/Qwen3-8B-Base",
    "load_checkpoint_path=tinker://4a1939e6-04be-5a77-9e4e-910ccff9f27e:train:0/weights/final",
    "dataset=deepmath", "learning_rate=1e-4", "groups_per_batch=512", "lora_rank=128",
    "wandb_project=cookbook_distillation",
]  # fmt: skip


def test_seed_commands_parse_as_written():
    cfg = single.build_config(chz.Blueprint(single.CLIConfig).make_from_argv(SEED_SINGLE))
    (ds,) = cfg.dataset_configs
    assert (
        cfg.load_checkpoint_path.startswith("tinker://")
        and cfg.learning_rate == 1e-4
        and cfg.lora_rank == 128
    )
    assert ds.groups_per_batch == 512 and ds.dataset_builder.dataset_name == "deepmath"
    assert ds.teacher_config.base_model == "Qwen/Qwen3-8B" and cfg.loss_fn == "importance_sampling"
    assert cfg.evaluator_builders  # held-out DeepMath pass@1

    tulu = chz.Blueprint(single.CLIConfig).make_from_argv(
        [
            "model_name=Qwen/Qwen3-8B-Base",
            "dataset=tulu3",
            "learning_rate=1e-4",
            "groups_per_batch=64",
            "lora_rank=128",
            "wandb_project=cookbook_distillation",
        ]  # fmt: skip
    )
    assert single.build_config(tulu).dataset_configs[0].dataset_builder.dataset_name == "tulu3"

    mt = multi.build_config(
        chz.Blueprint(multi.CLIConfig).make_from_argv(
            [
                "learning_rate=1e-4",
                "deepmath_groups_per_batch=256",
                "tulu3_groups_per_batch=256",
                "lora_rank=128",
                "wandb_project=cookbook_distillation",
            ]  # fmt: skip
        )
    )
    assert [(d.dataset_builder.dataset_name, d.groups_per_batch) for d in mt.dataset_configs] == [
        ("deepmath", 256),
        ("tulu3", 256),
    ]
    assert mt.wandb_project == "cookbook_distillation"
