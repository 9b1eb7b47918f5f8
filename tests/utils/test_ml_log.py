"""Metrics files, resume truncation, wandb offline, plots."""

import subprocess
import sys

from tinker_cookbook.utils.ml_log import MetricsLogger, read_metrics


def test_metrics_jsonl_and_resume_truncation(tmp_path, capsys):
    log = MetricsLogger(tmp_path, config={"lr": 1e-3})
    for step in range(5):
        log.log_metrics({"loss": 1.0 / (step + 1)}, step)
    log.close()
    assert "loss  0.2" in capsys.readouterr().out  # the console table of step 4
    resumed = MetricsLogger(tmp_path, start_step=3)  # steps 3 and 4 will be redone
    resumed.log_metrics({"loss": 0.1}, 3)
    assert [r["step"] for r in read_metrics(tmp_path)] == [0, 1, 2, 3]
    assert read_metrics(tmp_path)[-1]["loss"] == 0.1


def test_wandb_offline_needs_no_account(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc credentials
    monkeypatch.setenv("WANDB_SILENT", "true")
    log = MetricsLogger(tmp_path / "run", config={"lr": 1e-3}, wandb_project="cookbook_test")
    log.log_metrics({"loss": 1.0}, 0)
    log.close()
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))


def test_plot_command_writes_pngs(tmp_path):
    log = MetricsLogger(tmp_path)
    for step in range(10):
        log.log_metrics({"train_mean_nll": 3 - 0.2 * step, "teacher_kl": 1.0 / (step + 1)}, step)
    out = subprocess.run(
        [sys.executable, "-m", "tinker_cookbook.plot", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    paths = out.stdout.split()
    assert sorted(p.rsplit("/", 1)[-1] for p in paths) == ["teacher_kl.png", "train_mean_nll.png"]
    assert all(
        (tmp_path / "plots" / name).read_bytes()[:4] == b"\x89PNG" for name in ("teacher_kl.png",)
    )


def test_a_line_cut_by_a_crash_does_not_swallow_the_next_record(tmp_path):
    from tinker_cookbook.utils.checkpoints import append_jsonl, load_checkpoints

    path = tmp_path / "checkpoints.jsonl"
    path.write_text('{"name": "000010", "step": 10}\n{"name": "0000')  # killed mid-write
    append_jsonl(path, {"name": "000020", "step": 20, "state_path": "/x"})
    assert [r["step"] for r in load_checkpoints(tmp_path)] == [10, 20]
