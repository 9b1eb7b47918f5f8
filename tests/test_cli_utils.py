"""check_log_dir: resume (the project's default, and it says so), delete, raise, ask."""

import io

import pytest

from tinker_cookbook.cli_utils import check_log_dir, model_name_from_argv, prepare_log_dir
from tinker_cookbook.utils.checkpoints import append_jsonl


def a_run(path, *records):
    path.mkdir(parents=True, exist_ok=True)
    (path / "metrics.jsonl").write_text('{"step": 0}\n')
    for record in records:
        append_jsonl(path / "checkpoints.jsonl", record)
    return path


def test_a_missing_or_empty_dir_is_left_alone(tmp_path):
    check_log_dir(str(tmp_path / "new"), "raise")
    assert not (tmp_path / "new").exists()
    check_log_dir(str(tmp_path), "raise")  # exists but empty


def test_resume_keeps_the_run_and_says_from_where(tmp_path, capsys):
    run = a_run(tmp_path / "run", {"name": "000020", "step": 20, "state_path": "/x"})
    check_log_dir(str(run), "resume")
    assert (run / "metrics.jsonl").exists()
    out = capsys.readouterr().out
    assert f"{run}: resuming the earlier run from its checkpoint '000020' at step 20" in out
    a_run(tmp_path / "empty")
    check_log_dir(str(tmp_path / "empty"), "resume")
    assert "without a checkpoint; starting from step 0" in capsys.readouterr().out
    done = a_run(tmp_path / "done", {"name": "final", "step": 40, "state_path": "/y"})
    check_log_dir(str(done), "resume")
    assert "found the earlier run, finished at step 40" in capsys.readouterr().out


def test_delete_starts_over(tmp_path, capsys):
    run = a_run(tmp_path / "run")
    check_log_dir(str(run), "delete")
    assert not run.exists()
    assert "deleting the earlier run" in capsys.readouterr().out


def test_raise_names_the_dir_and_the_way_out(tmp_path):
    run = a_run(tmp_path / "run")
    with pytest.raises(FileExistsError) as err:
        check_log_dir(str(run), "raise")
    assert str(run) in str(err.value) and "behavior_if_log_dir_exists=resume" in str(err.value)


def test_ask_asks_on_a_terminal_and_refuses_without_one(tmp_path, monkeypatch, capsys):
    run = a_run(tmp_path / "run")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(FileExistsError, match="no terminal to ask"):
        check_log_dir(str(run), "ask")
    answers = iter(["maybe", "delete"])
    monkeypatch.setattr("sys.stdin.isatty", lambda: True, raising=False)
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    check_log_dir(str(run), "ask")
    assert not run.exists() and "Invalid input 'maybe'" in capsys.readouterr().out
    a_run(run)
    monkeypatch.setattr("builtins.input", lambda prompt: "exit")
    with pytest.raises(SystemExit):
        check_log_dir(str(run), "ask")


def test_unknown_behavior_is_named():
    with pytest.raises(ValueError, match="behavior_if_log_dir_exists='overwrite' is not one of"):
        check_log_dir("/tmp", "overwrite")  # type: ignore[arg-type]


def test_training_loops_resume_through_check_log_dir(tmp_path, capsys):
    run = a_run(tmp_path / "run", {"name": "000002", "step": 2, "state_path": "/x"})
    assert prepare_log_dir(run, "resume") is True
    assert "at step 2" in capsys.readouterr().out
    assert prepare_log_dir(run, "delete") is False and run.is_dir()
    assert prepare_log_dir(tmp_path / "fresh", "raise") is False


def test_model_name_from_argv_takes_the_last():
    argv = ["model_name=a", "lora_rank=8", "model_name=b"]
    assert model_name_from_argv(argv, "default") == "b"
    assert model_name_from_argv([], "default") == "default"
