import json

import pytest

from tinker_cookbook.recipes.quickstart.study import (
    StudentSettings,
    Study,
    StudyConfig,
    TeacherSettings,
    check_unfinished,
    run_study,
)


def tiny_study(tmp_path, **kw) -> StudyConfig:
    return StudyConfig(
        out_dir=str(tmp_path / "study"),
        teacher=TeacherSettings(train_problems=256, steps=40, batch_size=16, learning_rate=1e-2),
        student=StudentSettings(
            teacher_samples=12, sft_steps=6, sft_batch_size=4, extra_steps=2,
            opd_groups_per_batch=4, opd_group_size=2, opd_prompts=24, curve_points=3,
        ),
        # The 40-step teacher rambles: at 80 tokens a third of its answers were cut off, more
        # than the study accepts (check_unfinished); 200 leaves none cut off.
        eval_problems=6, eval_samples=1, max_tokens=200, multi_teacher_steps=1,
        notes_teacher_steps=2, multi_turn=False, **kw,
    )  # fmt: skip


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("quickstart")
    config = tiny_study(tmp_path)
    return config, run_study(config), Study(config)


def test_study_writes_the_table_and_plot(finished, capsys):
    config, result, study = finished
    table = (study.run_dir / "results.md").read_text()
    for method in ("Teacher", "Off-policy SFT", "+ continued SFT", "+ on-policy distillation",
                   "+ multi-teacher on-policy distillation"):  # fmt: skip
        assert f"| {method}" in table
    assert "| 6+2 " in table  # SFT steps + the extra steps both arms ran
    assert (study.run_dir / "study.png").stat().st_size > 10_000
    saved = json.loads((study.run_dir / "results.json").read_text())
    scores = saved["scores"]
    assert set(scores) >= {"base", "teacher", "sft", "continued_sft", "on_policy"}
    # Each score is pass@1 over every held-out problem's samples, and the table shows it.
    samples = config.eval_problems * config.eval_samples
    assert {score["num_samples"] for score in scores.values()} == {samples}
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    shown = {row[0]: row[2] for row in cells}
    for method, key in (("Teacher (SFT on correct solutions)", "teacher"),
                        ("+ on-policy distillation", "on_policy")):  # fmt: skip
        assert shown[method] == f"{100 * scores[key]['pass@1']:.1f}% pass@1"
    # Teacher KL is measured on the evaluated model's own samples: ~0 for the teacher itself.
    assert scores["teacher"]["teacher_kl"] == pytest.approx(0.0, abs=1e-3)
    assert scores["sft"]["teacher_kl"] > 0.1


def test_curves_start_where_sft_ends(finished):
    _, result, _ = finished
    sft, opd, cont = (
        result["curves"][k] for k in ("off-policy SFT", "on-policy distillation", "continued SFT")
    )
    assert [p[0] for p in sft] == [0, 2, 4, 6]  # the base model, then SFT checkpoints
    assert opd[0] == sft[-1] == cont[0] and opd[-1][0] == cont[-1][0] == 8


def test_held_out_questions_never_reach_training(finished):
    _, _, study = finished
    held = {q for q, _ in study.held_out()}
    answers = [json.loads(line) for line in (study.run_dir / "teacher_answers.jsonl").open()]
    prompts = [json.loads(line) for line in (study.data / "opd_prompts.jsonl").open()]
    assert answers and prompts
    assert held.isdisjoint(r["conversations"][0]["value"] for r in answers)
    assert held.isdisjoint(r["question"] for r in prompts)


def test_rerun_reuses_every_stage_and_evaluation(finished):
    config, result, study = finished
    evals_before = study.evals_path.read_text()
    again = run_study(config)
    assert study.evals_path.read_text() == evals_before
    assert again["scores"] == result["scores"]


def test_spread_summarises_every_seed_of_the_same_settings(tmp_path):
    from tinker_cookbook.recipes.quickstart.spread import collect, main, percent

    for seed, opd in ((0, 0.5), (1, 0.7)):
        run = tmp_path / f"seed{seed}-abc"
        run.mkdir()
        scores = {
            "teacher": {"pass@1": 0.9},
            "sft": {"pass@1": 0.4},
            "continued_sft": {"pass@1": 0.45},
            "on_policy": {"pass@1": opd},
        }
        (run / "results.json").write_text(json.dumps({"scores": scores}))
    assert collect(tmp_path)["abc"][1]["on_policy"] == 0.7
    table = main(str(tmp_path))
    assert "| 1 | 90.0% | 40.0% | 45.0% | 70.0% | 60% |" in table  # (70-40)/(90-40)
    assert (
        "| mean (range) | 90.0% (90.0-90.0) | 40.0% (40.0-40.0) | 45.0% (45.0-45.0) "
        "| 60.0% (50.0-70.0) | 40% |" in table
    )
    assert (percent(1.3), percent(None)) == (">100%", "-")
    with pytest.raises(FileNotFoundError, match="no finished study runs"):
        main(str(tmp_path / "empty"))


def test_cut_off_teacher_answers_are_reported_and_too_many_stop_the_study(caplog):
    check_unfinished(0, 100, 80)
    assert not caplog.records
    check_unfinished(5, 100, 80)
    assert "5 of 100 teacher answers did not finish within max_tokens=80" in caplog.text
    with pytest.raises(ValueError, match="59 of 100 .* max_tokens=64.*raise max_tokens"):
        check_unfinished(59, 100, 64)
