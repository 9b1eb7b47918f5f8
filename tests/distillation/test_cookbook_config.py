"""The cookbook's distillation config (TeacherConfig + DistillationDatasetConfig +
PromptOnlyDatasetBuilder + train_on_policy.Config) trains on the tiny model, and loss_fn,
loss_fn_config, num_substeps and compute_post_kl each change what the loop does."""

import asyncio

import chz
import pytest

from tests.distillation.conftest import DEEPMATH
from tinker_cookbook.distillation import train_on_policy
from tinker_cookbook.distillation.datasets import (
    DistillationDatasetConfig,
    PromptOnlyDatasetBuilder,
    TeacherConfig,
)
from tinker_cookbook.local.training_client import TrainingClient
from tinker_cookbook.utils.checkpoints import load_checkpoints
from tinker_cookbook.utils.ml_log import read_metrics

MODEL = "tiny-qwen3-1m"


def cookbook_config(log_path, teacher_checkpoint=None, **overrides) -> train_on_policy.Config:
    builder = PromptOnlyDatasetBuilder(
        dataset_name="deepmath",
        groups_per_batch=2,
        group_size=2,
        model_name_for_tokenizer=MODEL,
        renderer_name="qwen3",
        dataset_path=str(DEEPMATH),
    )
    dataset = DistillationDatasetConfig(
        dataset_builder=builder,
        teacher_config=TeacherConfig(base_model=MODEL, load_checkpoint_path=teacher_checkpoint),
        groups_per_batch=2,
    )
    settings = dict(
        learning_rate=1e-4, dataset_configs=[dataset], model_name=MODEL,
        recipe_name="test_distillation", renderer_name="qwen3", max_tokens=16, lora_rank=8,
        log_path=str(log_path), max_steps=1, eval_every=0, save_every=0,
    )  # fmt: skip
    return train_on_policy.Config(**{**settings, **overrides})


@pytest.fixture
def calls(monkeypatch):
    """Every forward_backward (loss_fn, config, batch size) and optim_step the loop makes."""
    seen: list[tuple] = []
    fb, optim = TrainingClient.forward_backward, TrainingClient.optim_step

    def spy_fb(self, data, loss_fn, loss_fn_config=None):
        seen.append(("forward_backward", loss_fn, dict(loss_fn_config or {}), len(data)))
        return fb(self, data, loss_fn, loss_fn_config)

    def spy_optim(self, *args, **kwargs):
        seen.append(("optim_step",))
        return optim(self, *args, **kwargs)

    monkeypatch.setattr(TrainingClient, "forward_backward", spy_fb)
    monkeypatch.setattr(TrainingClient, "optim_step", spy_optim)
    return seen


def run(config) -> dict:
    asyncio.run(train_on_policy.main(config))
    (row,) = [r for r in read_metrics(config.log_path) if "teacher_kl" in r]
    return row


def test_cookbook_style_config_trains_one_step_and_records_the_renderer(tmp_path, calls):
    row = run(cookbook_config(tmp_path))
    assert row["teacher_kl"] == row["teacher_kl"] and row["optim/num_substeps"] == 1
    assert calls == [("forward_backward", "importance_sampling", {}, 4), ("optim_step",)]
    assert [(r["name"], r["renderer_name"]) for r in load_checkpoints(tmp_path)] == [
        ("final", "qwen3")
    ]


def test_loss_fn_and_its_config_reach_the_trainer(tmp_path, calls):
    ppo = run(cookbook_config(tmp_path / "ppo", loss_fn="ppo",
                              loss_fn_config={"clip_low_threshold": 0.9}))  # fmt: skip
    assert calls[0][1:3] == ("ppo", {"clip_low_threshold": 0.9})
    # cispo's loss is logp * advantage (not the ratio): another number on the same samples.
    cispo = run(cookbook_config(tmp_path / "cispo", loss_fn="cispo"))
    assert calls[2][1] == "cispo"
    # The same seeded samples: equal to float noise (the backend batches concurrent requests as
    # they arrive, so summation order may differ); other samples would give another number.
    assert cispo["teacher_kl"] == pytest.approx(ppo["teacher_kl"], rel=1e-2)
    assert cispo["teacher_kl_tokens/deepmath"] == ppo["teacher_kl_tokens/deepmath"]
    assert abs(cispo["optim/loss:sum"] - ppo["optim/loss:sum"]) > 1e-3
    with pytest.raises(Exception, match="loss_fn 'dro' needs loss_fn_config\\['beta'\\]"):
        run(cookbook_config(tmp_path / "dro", loss_fn="dro"))


def test_num_substeps_splits_the_batch_into_optimizer_steps(tmp_path, calls):
    row = run(cookbook_config(tmp_path, num_substeps=3))
    assert [c[0] for c in calls] == ["forward_backward", "optim_step"] * 3
    assert [c[3] for c in calls if c[0] == "forward_backward"] == [2, 1, 1]  # 4 datums
    assert row["optim/num_substeps"] == 3
    with pytest.raises(ValueError, match="num_substeps=0 must be >= 1"):
        asyncio.run(train_on_policy.main(cookbook_config(tmp_path / "zero", num_substeps=0)))


def test_compute_post_kl_measures_how_far_the_step_moved(tmp_path):
    assert "kl_pre_post_v1" not in run(cookbook_config(tmp_path / "off"))
    still = run(cookbook_config(tmp_path / "lr0", compute_post_kl=True, learning_rate=0.0))
    moved = run(cookbook_config(tmp_path / "lr", compute_post_kl=True, learning_rate=0.05))
    assert abs(still["kl_pre_post_v1"]) < 0.01 and still["kl_pre_post_v2"] < 1e-3
    assert moved["kl_pre_post_v2"] > 10 * max(still["kl_pre_post_v2"], 1e-4)


def test_a_teacher_checkpoint_trained_with_another_renderer_scores_in_its_own(
    tmp_path, role_colon_checkpoint, capsys
):
    """The teacher was trained with role_colon (its checkpoint record says so); the student
    renders qwen3. The teacher re-renders each prompt in role_colon, and the run says so."""
    config = cookbook_config(tmp_path, teacher_checkpoint=role_colon_checkpoint["sampler_path"])
    row = run(config)
    out = capsys.readouterr().out
    assert "renderer role_colon (recorded with its checkpoint; the student uses qwen3)" in out
    assert row["teacher_kl_tokens/deepmath"] > 0
    explicit = chz.replace(
        config.dataset_configs[0].teacher_config, renderer_name="qwen3"
    )  # an explicit renderer_name wins over the record
    assert train_on_policy.with_checkpoint_renderer(explicit, "qwen3") is explicit
