"""Held-out pass@1 of every study run under `out_dir`, per seed, with mean and range:

    python -m tinker_cookbook.recipes.quickstart seed=1   # (and seed=2, ...) first
    python -m tinker_cookbook.recipes.quickstart.spread [out_dir=/tmp/tinker-examples/quickstart]

Runs are grouped by their settings (the folder name after `seed<N>-`), so runs with different
settings are never mixed. The last column is the share of the SFT student's gap to the teacher
that on-policy distillation closed: (on_policy - sft) / (teacher - sft).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import chz

ARMS = ("teacher", "sft", "continued_sft", "on_policy")


def collect(out_dir: str | Path) -> dict[str, dict[int, dict[str, float]]]:
    """{settings tag: {seed: {arm: pass@1}}} for every finished study run."""
    found: dict[str, dict[int, dict[str, float]]] = defaultdict(dict)
    for results in sorted(Path(out_dir).glob("seed*-*/results.json")):
        match = re.fullmatch(r"seed(\d+)-(.+)", results.parent.name)
        if match is None:
            continue
        scores = json.loads(results.read_text())["scores"]
        found[match.group(2)][int(match.group(1))] = {a: scores[a]["pass@1"] for a in ARMS}
    return dict(found)


def gap_closed(scores: dict[str, float]) -> float | None:
    gap = scores["teacher"] - scores["sft"]
    return (scores["on_policy"] - scores["sft"]) / gap if gap > 0 else None


def spread_table(runs: dict[int, dict[str, float]]) -> str:
    header = "| seed | " + " | ".join(ARMS) + " | gap closed |"
    lines = [header, "|---" * (len(ARMS) + 2) + "|"]
    for seed in sorted(runs):
        cells = [f"{100 * runs[seed][a]:.1f}%" for a in ARMS] + [percent(gap_closed(runs[seed]))]
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    stats = []
    for arm in ARMS:
        values = [100 * runs[s][arm] for s in runs]
        mean = sum(values) / len(values)
        stats.append(f"{mean:.1f}% ({min(values):.1f}-{max(values):.1f})")
    means = {a: sum(runs[s][a] for s in runs) / len(runs) for a in ARMS}
    lines.append("| mean (range) | " + " | ".join(stats) + f" | {percent(gap_closed(means))} |")
    return "\n".join(lines)


def percent(value: float | None) -> str:
    """A share of the gap; beyond 100% means on-policy ended above the teacher."""
    if value is None:
        return "-"
    return ">100%" if value > 1 else f"{100 * value:.0f}%"


def main(out_dir: str = "/tmp/tinker-examples/quickstart") -> str:
    groups = collect(out_dir)
    if not groups:
        raise FileNotFoundError(f"no finished study runs (seed*/results.json) under {out_dir}")
    text = "\n\n".join(f"settings {tag}:\n{spread_table(runs)}" for tag, runs in groups.items())
    print(text)
    return text


if __name__ == "__main__":
    chz.entrypoint(main)
