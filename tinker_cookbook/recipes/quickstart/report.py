"""The study's outputs: a table in the shape of the seed's "Expected results" and a PNG plot."""

from __future__ import annotations

from pathlib import Path

Row = tuple[str, str, str, str]  # method, dataset, held-out score, steps
Curve = list[tuple[int, float, float | None]]  # (step, pass@1, teacher_kl)


def results_table(rows: list[Row]) -> str:
    """A markdown table; the columns are sized so it also reads well in a terminal."""
    header = ("Method", "Dataset", "Held-out score", "Steps")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]

    def line(cells) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def plot_study(curves: dict[str, Curve], references: dict[str, float], path: str | Path) -> Path:
    """Held-out pass@1 (left) and teacher KL per token (right) against training steps, one line
    per arm; `references` are horizontal lines (teacher, base)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (acc_ax, kl_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for label, points in curves.items():
        steps = [p[0] for p in points]
        acc_ax.plot(steps, [p[1] for p in points], marker="o", label=label)
        kls = [(p[0], p[2]) for p in points if p[2] is not None]
        if kls:
            kl_ax.plot(*zip(*kls, strict=True), marker="o", label=label)
    for label, value in references.items():
        acc_ax.axhline(value, linestyle="--", linewidth=1, color="grey")
        acc_ax.text(0.01, value + 0.01, label, transform=acc_ax.get_yaxis_transform(), fontsize=8)
    acc_ax.set(xlabel="training step", ylabel="held-out pass@1", ylim=(-0.02, 1.02))
    kl_ax.set(xlabel="training step", ylabel="teacher KL per sampled token (nats)")
    kl_ax.set_yscale("log")
    for ax in (acc_ax, kl_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
