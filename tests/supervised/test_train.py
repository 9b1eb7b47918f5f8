"""The SFT loop: learning, logging, checkpoints, resume after a hard kill."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tinker_cookbook.recipes.distillation import off_policy_reasoning as recipe
from tinker_cookbook.utils.checkpoints import load_checkpoints
from tinker_cookbook.utils.lr_schedule import lr_multiplier
from tinker_cookbook.utils.ml_log import read_metrics

FIXTURE = Path(__file__).parents[1] / "fixtures" / "openthoughts3_sample.jsonl"
ARGS = [
    "model_name=tiny-qwen3-1m",
    f"dataset_path={FIXTURE}",
    "batch_size=4",
    "learning_rate=3e-3",
    "lora_rank=8",
    "test_size=8",
]


def run_recipe(log_path, *extra):
    import chz

    cli = chz.Blueprint(recipe.CLIConfig).make_from_argv([*ARGS, f"log_path={log_path}", *extra])
    return recipe.main(cli)


def test_fixture_run_learns_and_writes_its_logs(tmp_path):
    final = run_recipe(tmp_path, "max_steps=12", "eval_every=6", "save_every=6")
    rows = read_metrics(tmp_path)
    train = [r["train_mean_nll"] for r in rows if "train_mean_nll" in r]
    test = [r["test/nll"] for r in rows if "test/nll" in r]
    assert [r["step"] for r in rows if "train_mean_nll" in r] == list(range(12))
    assert train[-1] < train[0] - 1.0 and test[-1] < test[0]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["learning_rate"] == 3e-3 and config["dataset_builder"]["file_path"] == str(
        FIXTURE
    )
    records = load_checkpoints(tmp_path)
    assert [r["name"] for r in records] == ["000006", "final"]
    assert final["sampler_path"] and Path(final["state_path"]).is_relative_to(tmp_path)
    assert (tmp_path / "plots" / "train_mean_nll.png").stat().st_size > 1000
    assert "train_mean_nll" in (tmp_path / "log.txt").read_text()
    # Rerunning a finished command does nothing and returns the same final checkpoint.
    assert run_recipe(tmp_path, "max_steps=12", "eval_every=6", "save_every=6") == final


def test_existing_log_dir_can_be_refused(tmp_path):
    run_recipe(tmp_path, "max_steps=1")
    with pytest.raises(FileExistsError, match="behavior_if_log_dir_exists=raise"):
        run_recipe(tmp_path, "max_steps=1", "behavior_if_log_dir_exists=raise")


def _final_adapter(log_path) -> dict:
    final = [r for r in load_checkpoints(log_path) if r["name"] == "final"][-1]
    return load_file(str(Path(final["state_path"]) / "adapter_model.safetensors"))


def test_sigkill_mid_run_then_rerun_finishes_like_an_uninterrupted_run(tmp_path):
    steps = ["max_steps=30", "save_every=5", "eval_every=0", "lr_schedule=cosine"]
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "tinker_cookbook.recipes.distillation.off_policy_reasoning", *ARGS,
           f"log_path={killed}", *steps]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy()
    )
    deadline = time.monotonic() + 120
    while len(read_metrics(killed)) < 13 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(read_metrics(killed))
    assert 13 <= done_before < 30, "the run should have been killed mid-way"

    run_recipe(killed, *steps)  # the same command again: resumes
    steps_logged = [r["step"] for r in read_metrics(killed) if "train_mean_nll" in r]
    assert steps_logged == list(range(30))  # no step lost, none done twice

    straight = tmp_path / "straight"
    run_recipe(straight, *steps)
    resumed, reference = _final_adapter(killed), _final_adapter(straight)
    assert resumed.keys() == reference.keys()
    for key in reference:
        torch.testing.assert_close(resumed[key], reference[key], rtol=1e-4, atol=1e-6)


def test_lr_schedules():
    assert [lr_multiplier("constant", s, 10) for s in (0, 5, 10)] == [1.0, 1.0, 1.0]
    assert [lr_multiplier("linear", s, 10) for s in (0, 5, 10)] == [1.0, 0.5, 0.0]
    assert lr_multiplier("cosine", 5, 10) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="'step' is not one of"):
        lr_multiplier("step", 0, 10)


def test_lr_warmup_ramps_then_follows_the_schedule():
    ramp = [lr_multiplier("constant", s, 10, warmup_steps=4) for s in range(6)]
    assert ramp == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert lr_multiplier("linear", 1, 10, warmup_steps=4) == pytest.approx(0.5 * 0.9)
    with pytest.raises(ValueError, match="lr_warmup_steps=-1"):
        lr_multiplier("constant", 0, 10, warmup_steps=-1)


def test_warmup_reaches_the_optimizer(tmp_path):
    run_recipe(tmp_path / "w", "max_steps=4", "eval_every=0", "lr_warmup_steps=4",
               "lr_schedule=constant", "learning_rate=1e-3")  # fmt: skip
    rates = [m["learning_rate"] for m in read_metrics(tmp_path / "w") if "learning_rate" in m]
    assert rates == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])


def test_load_checkpoint_path_starts_from_those_weights(tmp_path):
    first = run_recipe(tmp_path / "a", "max_steps=10", "eval_every=0")
    start_a = read_metrics(tmp_path / "a")[0]["train_mean_nll"]
    end_a = read_metrics(tmp_path / "a")[9]["train_mean_nll"]
    run_recipe(
        tmp_path / "b", "max_steps=1", "eval_every=0", f"load_checkpoint_path={first['state_path']}"
    )
    start_b = read_metrics(tmp_path / "b")[0]["train_mean_nll"]
    assert start_b < start_a - 1.0 and abs(start_b - end_a) < 0.5


def test_load_optimizer_state_continues_the_moments(tmp_path):
    first = run_recipe(tmp_path / "a", "max_steps=4", "eval_every=0")
    run_recipe(
        tmp_path / "b",
        "max_steps=1",
        "eval_every=0",
        f"load_checkpoint_path={first['state_path']}",
        "load_optimizer_state=True",
    )
    assert len(read_metrics(tmp_path / "b")) >= 1
    from tinker_cookbook.local import LocalBackendError

    with pytest.raises(LocalBackendError, match="no optimizer state"):
        run_recipe(
            tmp_path / "c",
            "max_steps=1",
            f"load_checkpoint_path={first['sampler_path']}",
            "load_optimizer_state=True",
        )


def test_rerun_with_more_steps_continues_from_the_final_checkpoint(tmp_path, capsys):
    first = run_recipe(tmp_path, "max_steps=3", "save_every=0", "eval_every=0")
    assert [r["step"] for r in read_metrics(tmp_path) if "test/nll" in r] == [2]
    capsys.readouterr()
    more = run_recipe(tmp_path, "max_steps=5", "save_every=0", "eval_every=0")
    out = capsys.readouterr().out
    assert "finished at step 3; continuing from its final checkpoint to step 5" in out
    assert more["step"] == 5 and more["state_path"] != first["state_path"]
    steps = [r["step"] for r in read_metrics(tmp_path) if "train_mean_nll" in r]
    assert steps == [0, 1, 2, 3, 4]  # the new steps only, none redone
    # Each run's end-of-run evaluation is kept, at the step whose weights it measured.
    assert [r["step"] for r in read_metrics(tmp_path) if "test/nll" in r] == [2, 4]
    changed = load_file(str(Path(more["state_path"]) / "adapter_model.safetensors"))
    before = load_file(str(Path(first["state_path"]) / "adapter_model.safetensors"))
    assert any(not torch.equal(changed[k], before[k]) for k in before)
    # The same command again, and one asking for fewer steps: nothing to do, and it says so.
    for max_steps in (5, 4):
        assert run_recipe(tmp_path, f"max_steps={max_steps}", "save_every=0") == more
        assert "already finished at step 5" in capsys.readouterr().out
