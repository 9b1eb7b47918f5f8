"""PNG curves of a run's metrics: `python -m tinker_cookbook.plot LOG_PATH [metric ...]`.

Writes `LOG_PATH/plots/<metric>.png` for every numeric metric (or the ones named) and prints
the paths.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

from tinker_cookbook.utils.ml_log import read_metrics

logger = logging.getLogger(__name__)


def plot_metrics(log_path: str | Path, metrics: list[str] | None = None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(log_path)
    if not rows:
        raise FileNotFoundError(f"{log_path} has no metrics.jsonl entries to plot")
    names = metrics or sorted(
        {
            k
            for r in rows
            for k, v in r.items()
            if k != "step" and isinstance(v, int | float) and not isinstance(v, bool)
        }
    )
    out_dir = Path(log_path) / "plots"
    out_dir.mkdir(exist_ok=True)
    written = []
    for name in names:
        points = [(r["step"], r[name]) for r in rows if isinstance(r.get(name), int | float)]
        if not points:
            raise KeyError(f"metric {name!r} is not in {log_path}/metrics.jsonl")
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(*zip(*points, strict=True), marker="." if len(points) < 50 else None)
        ax.set_xlabel("step")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def write_run_plots(log_path: str | Path, preferred: list[str]) -> list[Path]:
    """End-of-run plots: the `preferred` metrics the run logged, plus every eval pass@1."""
    logged = {k for r in read_metrics(log_path) for k in r}
    names = [m for m in preferred if m in logged] + sorted(
        k for k in logged if k.endswith("/pass@1")
    )
    paths = plot_metrics(log_path, names) if names else []
    logger.info("plots: %s", ", ".join(str(p) for p in paths))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description="Plot a run's metrics as PNG files.")
    parser.add_argument("log_path")
    parser.add_argument("metrics", nargs="*", help="metric names (default: all numeric ones)")
    args = parser.parse_args()
    for path in plot_metrics(args.log_path, args.metrics or None):
        print(path)


if __name__ == "__main__":
    main()
