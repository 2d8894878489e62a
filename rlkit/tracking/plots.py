"""The end-of-run picture: reward, response length and entropy against step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CURVES = (("reward/mean", "reward"), ("response_length/mean", "response length (tokens)"), ("entropy/mean", "entropy (nats)"))


def plot_curves(history: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Write a PNG with one panel per curve; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(CURVES), figsize=(4.2 * len(CURVES), 3.4))
    for axis, (key, label) in zip(axes, CURVES):
        points = [(row["step"], row[key]) for row in history if row.get(key) is not None]
        if points:
            steps, values = zip(*points)
            axis.plot(steps, values, marker="o", markersize=3)
        axis.set_title(label)
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
