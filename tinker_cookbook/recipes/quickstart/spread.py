"""Held-out pass@1 of every study run under `out_dir`, per seed, with mean and range:

    python -m tinker_cookbook.recipes.quickstart seed=1   # (and seed=2, ...) first
    python -m tinker_cookbook.recipes.quickstart.spread [out_dir=/tmp/tinker-examples/quickstart]

Runs are grouped by their settings (the folder name after `seed<N>-`), so runs with different
settings are never mixed.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import chz

ARMS = ("sft", "continued_sft", "on_policy")


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


def spread_table(runs: dict[int, dict[str, float]]) -> str:
    lines = ["| seed | " + " | ".join(ARMS) + " |", "|---" * (len(ARMS) + 1) + "|"]
    for seed in sorted(runs):
        lines.append(
            f"| {seed} | " + " | ".join(f"{100 * runs[seed][a]:.1f}%" for a in ARMS) + " |"
        )
    stats = []
    for arm in ARMS:
        values = [100 * runs[s][arm] for s in runs]
        mean = sum(values) / len(values)
        stats.append(f"{mean:.1f}% ({min(values):.1f}-{max(values):.1f})")
    lines.append("| mean (range) | " + " | ".join(stats) + " |")
    return "\n".join(lines)


def main(out_dir: str = "/tmp/tinker-examples/quickstart") -> str:
    groups = collect(out_dir)
    if not groups:
        raise FileNotFoundError(f"no finished study runs (seed*/results.json) under {out_dir}")
    text = "\n\n".join(f"settings {tag}:\n{spread_table(runs)}" for tag, runs in groups.items())
    print(text)
    return text


if __name__ == "__main__":
    chz.entrypoint(main)
