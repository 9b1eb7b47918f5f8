"""The OPD benchmark's own logic: the lockstep that keeps its comparison fair, and the numbers
it reports (the scaling fit, the memory verdict, the medians). Its children (this project's
loop, TRL) are exercised by running the benchmark itself, not here."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import textwrap
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "opd_step.py"


@pytest.fixture(scope="module")
def opd_step():
    spec = importlib.util.spec_from_file_location("opd_step", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules["opd_step"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    del sys.modules["opd_step"]


# A child that keeps the gate protocol of benchmarks/opd_child.py: "ready", wait for "go",
# step; it notes when each step ran, and fails at the step given (if any).
FAKE_CHILD = textwrap.dedent(
    """
    import json, sys, time
    name, steps, fail_at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    record = []
    def gate():
        print("ready", flush=True)
        assert sys.stdin.readline().strip() == "go"
    gate()
    for step in range(steps):
        if step == fail_at:
            print("step exploded", file=sys.stderr)
            sys.exit(3)
        start = time.monotonic()
        time.sleep(0.02)
        record.append([step, start, time.monotonic()])
        gate()
    print(json.dumps({"name": name, "steps": record}))
    """
)


def _runner(opd_step, tmp_path: Path, fail: dict[str, int] | None = None):
    script = tmp_path / "fake_child.py"
    script.write_text(FAKE_CHILD)
    args = argparse.Namespace(threads=1, max_tokens=8)
    runner = opd_step.Runner(args, meta={}, trl_path=tmp_path, work=tmp_path)

    def start(contestant, steps):
        name = contestant.name
        cmd = [sys.executable, str(script), name, str(steps), str((fail or {}).get(name, -1))]
        return opd_step.Child(cmd, env={}, log_file=tmp_path / f"{name}.log")

    runner._start = start
    return runner


def test_lockstep_runs_one_step_at_a_time_in_turn(opd_step, tmp_path):
    contestants = [opd_step.Contestant("ours", b) for b in (4, 8, 16)]
    outs = _runner(opd_step, tmp_path).lockstep(contestants, steps=3)
    assert [o["name"] for o in outs] == [c.name for c in contestants]
    spans = sorted((start, end, o["name"], step) for o in outs for step, start, end in o["steps"])
    assert len(spans) == 9
    for (_, end, *_), (start, *_) in zip(spans, spans[1:], strict=False):
        assert end <= start, "two children stepped at once"
    # Round-robin: every child takes its step k before any takes step k + 1.
    assert [step for *_, step in spans] == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_a_failing_child_fails_the_lockstep_with_its_log(opd_step, tmp_path):
    contestants = [opd_step.Contestant("ours", 4), opd_step.Contestant("ours", 8)]
    runner = _runner(opd_step, tmp_path, fail={"ours batch 8": 1})
    with pytest.raises(RuntimeError, match="step exploded"):
        runner.lockstep(contestants, steps=3)


def test_fit_line_recovers_a_line_and_flags_a_bent_one(opd_step):
    xs = [256.0, 512.0, 1024.0, 2048.0]
    line = opd_step.fit_line(xs, [0.5 + 0.002 * x for x in xs])
    assert line["slope_s_per_token"] == pytest.approx(0.002)
    assert line["intercept_s"] == pytest.approx(0.5)
    assert line["r2"] == pytest.approx(1.0)
    # Step time flat, then jumping: not linear in tokens.
    bent = opd_step.fit_line(xs, [1.0, 1.0, 1.0, 5.0])
    assert bent["r2"] < 0.95


def _memory_run(rss_mb: list[float]) -> dict:
    mb = 1024 * 1024
    return {"steps": [{"step": i, "rss": r * mb, "heap": None} for i, r in enumerate(rss_mb)]}


def test_memory_verdict_compares_the_end_with_after_warm_up(opd_step):
    warm_up_then_flat = [500.0] * 5 + [1000.0] * 95  # growth during warm-up is not counted
    flat = opd_step.memory_summary(_memory_run(warm_up_then_flat))
    assert flat["warmup_window"] == [10, 14] and flat["end_window"] == [95, 99]
    assert flat["ratio"] == 1.0 and flat["within_10pct"]
    leaking = [1000.0 + 3.0 * i for i in range(100)]  # +3 MB a step
    leak = opd_step.memory_summary(_memory_run(leaking))
    assert leak["ratio"] > 1.1 and not leak["within_10pct"]


def test_summaries_drop_warm_up_and_take_medians(opd_step):
    def step(total: float, tokens: int) -> dict:
        times = {"time/step": total, "time/rollouts": total / 2, "time/train": total / 2}
        return {"times": times, "between_s": total, "sampled_tokens": tokens}

    run = {"steps": [step(30.0, 512), step(1.0, 500), step(2.0, 512), step(9.0, 512)],
           "setup": {}}  # fmt: skip
    summary = opd_step.ours_summary(run, warmup=1)
    assert summary["s_per_step"] == 2.0  # the compile step dropped, median of the rest
    assert summary["split_s"]["sampling"] == 1.0
    rounds = [dict(summary, s_per_step=s) for s in (2.0, 4.0, 3.0)]
    over = opd_step.over_rounds(rounds)
    assert over["s_per_step"] == 3.0
    assert over["sampled_tok_per_s"] == pytest.approx(512 / 3.0)
    assert over["per_round_s_per_step"] == [2.0, 4.0, 3.0]
    json.dumps(over)  # the benchmark prints it as JSON
