"""Per-batch metrics of rollouts, overall (`env/all/...`) and per logging tag."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from tinker_cookbook.rl.types import Metrics, TrajectoryGroup


def trajectory_group_metrics(groups: list[TrajectoryGroup], prefix: str = "env") -> Metrics:
    by_tag: dict[str, list[TrajectoryGroup]] = defaultdict(list)
    for group in groups:
        by_tag["all"].append(group)
        for tag in group.tags:
            by_tag[tag].append(group)
    metrics: Metrics = {}
    for tag, tagged in by_tag.items():
        for key, value in _summarize(tagged).items():
            metrics[f"{prefix}/{tag}/{key}"] = value
    return metrics


def _summarize(groups: list[TrajectoryGroup]) -> Metrics:
    trajectories = [t for g in groups for t in g.trajectories_G]
    rewards = [r for g in groups for r in g.get_total_rewards()]
    turns = [len(t.transitions) for t in trajectories]
    ac_tokens = [len(tr.ac.tokens) for t in trajectories for tr in t.transitions]
    out: Metrics = {
        "reward/total": float(np.mean(rewards)),
        "turns_per_episode": float(np.mean(turns)),
        "ac_tokens_per_turn": float(np.mean(ac_tokens)) if ac_tokens else 0.0,
        "frac_truncated": float(
            np.mean([tr.ac.stop_reason == "length" for t in trajectories for tr in t.transitions])
        ),
        "num_trajectories": float(len(trajectories)),
    }
    step_metrics: dict[str, list[float]] = defaultdict(list)
    for t in trajectories:
        for tr in t.transitions:
            for key, value in tr.metrics.items():
                step_metrics[key].append(float(value))
    for g in groups:
        for m in g.metrics_G:
            for key, value in m.items():
                step_metrics[key].append(float(value))
    for key, values in step_metrics.items():
        out[key] = float(np.mean(values))
    return out
