"""`rlkit compare RUN_DIR...`: runs side by side, offline, from their run folders alone.

Runs are grouped by label: the method a sweep gave them (its manifest, or the run's first W&B
tag), else the run name. Each group's curves are the mean over its runs with a band from the
lowest to the highest run (the spread over seeds), against step and against wall time. The
PNG has one row per x-axis and one column per quantity: training reward, held-out accuracy,
entropy and response length. The markdown table gives each group's figures as mean ± standard
deviation over runs, and beside the held-out accuracies their binomial standard error (the noise
of one evaluation on n problems), so a spread over seeds can be told from evaluation noise.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlkit.sweep import MANIFEST, read_manifest
from rlkit.tracking.metrics_log import read_metrics

PANELS = (
    ("reward/mean", "training reward"),
    ("eval/accuracy", "held-out accuracy"),
    ("entropy/mean", "entropy (nats)"),
    ("response_length/mean", "response length (tokens)"),
)
WALL = "throughput/elapsed_s"
LAST = 10  # steps averaged for the "end of training" columns


@dataclass
class Run:
    label: str
    run_dir: Path
    rows: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)

    def series(self, key: str, x: str = "step") -> list[tuple[float, float]]:
        """(x, value) points of `key`; wall time for an eval row is the last training row's."""
        points, wall = [], 0.0
        for row in self.rows:
            wall = row.get(WALL, wall)
            if row.get(key) is None:
                continue
            points.append((row["step"] if x == "step" else wall, float(row[key])))
        return points


def find_runs(paths: list[str]) -> list[Run]:
    """The runs behind `paths`: run folders (holding metrics.jsonl) or sweep folders (holding
    sweep.json, expanded to their finished runs)."""
    runs: list[Run] = []
    for raw in paths:
        path = Path(raw)
        if (path / MANIFEST).is_file():
            for entry in read_manifest(path)["runs"]:
                if entry["status"] == "ok":
                    runs.append(load_run(Path(entry["run_dir"]), entry["method"]))
        elif (path / "metrics.jsonl").is_file():
            runs.append(load_run(path))
        else:
            raise FileNotFoundError(
                f"{path}: neither a run folder (no metrics.jsonl) nor a sweep folder (no {MANIFEST}); "
                "give the folders `rlkit train` or `rlkit sweep` wrote"
            )
    if not runs:
        raise ValueError(f"no finished runs under {', '.join(paths)}")
    return runs


def load_run(run_dir: Path, label: str | None = None) -> Run:
    rows = read_metrics(run_dir / "metrics.jsonl")
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    if label is None:
        config_path = run_dir / "config.yaml"
        config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
        tags = (config.get("logging") or {}).get("wandb_tags") or []
        label = tags[0] if tags else (config.get("run") or {}).get("name") or run_dir.name
    return Run(label=label, run_dir=run_dir, rows=rows, summary=summary)


def group_runs(runs: list[Run]) -> dict[str, list[Run]]:
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.label, []).append(run)
    return dict(sorted(groups.items()))


def smoothed(points: list[tuple[float, float]], window: int) -> list[tuple[float, float]]:
    """Trailing mean over `window` points (1 = as logged): per-step RL curves are noisy."""
    if window <= 1:
        return points
    values = [v for _, v in points]
    return [(x, sum(values[max(0, i - window + 1): i + 1]) / (i + 1 - max(0, i - window + 1)))
            for i, (x, _) in enumerate(points)]


def band(runs: list[Run], key: str, x: str, window: int = 1) -> tuple[list[float], list[float], list[float], list[float]]:
    """Mean, min and max over runs on a common x grid, each run's curve smoothed over `window`
    points first. Steps line up as they are; wall times are interpolated onto the grid of the
    first run, within the span every run covers."""
    import numpy as np

    series = [smoothed(run.series(key, x), window) for run in runs]
    series = [points for points in series if points]
    if not series:
        return [], [], [], []
    if x == "step":
        common = sorted(set.intersection(*(set(p for p, _ in points) for points in series)))
        values = np.array([[dict(points)[p] for p in common] for points in series])
        grid = np.array(common, dtype=float)
    else:  # every run's own times, within the span all of them cover
        start, end = max(points[0][0] for points in series), min(points[-1][0] for points in series)
        grid = np.array(sorted({p for points in series for p, _ in points if start <= p <= end}), dtype=float)
        values = np.array([np.interp(grid, [p for p, _ in points], [v for _, v in points]) for points in series])
    if grid.size == 0:
        return [], [], [], []
    return grid.tolist(), values.mean(0).tolist(), values.min(0).tolist(), values.max(0).tolist()


def plot_comparison(groups: dict[str, list[Run]], path: Path, title: str, window: int = 1) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, len(PANELS), figsize=(4.4 * len(PANELS), 7.0), squeeze=False)
    for row, (x, xlabel) in enumerate((("step", "step"), ("wall", "wall time (s)"))):
        for column, (key, label) in enumerate(PANELS):
            axis = axes[row][column]
            for name, runs in groups.items():
                # Held-out points are few and already averages: never smoothed.
                grid, mean, low, high = band(runs, key, x, 1 if key.startswith("eval/") else window)
                if not grid:
                    continue
                marker = "o" if key.startswith("eval/") else None
                line, = axis.plot(grid, mean, marker=marker, markersize=3, label=f"{name} (n={len(runs)})")
                if len(runs) > 1:
                    axis.fill_between(grid, low, high, color=line.get_color(), alpha=0.18, linewidth=0)
            axis.set_title(label)
            axis.set_xlabel(xlabel)
            axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    smoothing = f", training curves: trailing mean of {window} steps" if window > 1 else ""
    figure.suptitle(f"{title}: mean over seeds, band = min–max{smoothing}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _mean_sd(values: list[float], digits: int = 3) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _tail_mean(run: Run, key: str) -> float | None:
    points = run.series(key)[-LAST:]
    return statistics.fmean(v for _, v in points) if points else None


def _eval(run: Run, when: str, key: str = "eval/accuracy") -> float | None:
    return (run.summary.get(f"eval_{when}") or {}).get(key)


def _eval_se(runs: list[Run]) -> str:
    """The after-training accuracy's standard error, mean over runs, with the problems behind it:
    `0.028 (n=300)`. Runs written before the error was logged show —."""
    errors = [se for se in (_eval(run, "after", "eval/accuracy_se") for run in runs) if se is not None]
    if not errors:
        return "—"
    counts = sorted({int(n) for n in (_eval(run, "after", "eval/num_prompts") for run in runs) if n is not None})
    return f"{statistics.fmean(errors):.3f}" + (f" (n={'/'.join(map(str, counts))})" if counts else "")


def summary_table(groups: dict[str, list[Run]]) -> str:
    header = (f"| method | runs | reward, last {LAST} steps | held-out before | held-out after | held-out SE | "
              f"entropy, last {LAST} | response length, last {LAST} | s/step | wall time s |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for name, runs in groups.items():
        step_s = [statistics.fmean(r["timing/step_s"] for r in run.rows if "timing/step_s" in r) for run in runs
                  if any("timing/step_s" in r for r in run.rows)]
        wall = [max((r.get(WALL, 0.0) for r in run.rows), default=None) for run in runs]
        lines.append(
            f"| {name} | {len(runs)} | {_mean_sd([_tail_mean(run, 'reward/mean') for run in runs])} "
            f"| {_mean_sd([_eval(run, 'before') for run in runs], 2)} | {_mean_sd([_eval(run, 'after') for run in runs], 2)} "
            f"| {_eval_se(runs)} "
            f"| {_mean_sd([_tail_mean(run, 'entropy/mean') for run in runs])} "
            f"| {_mean_sd([_tail_mean(run, 'response_length/mean') for run in runs], 1)} "
            f"| {_mean_sd(step_s, 1)} | {_mean_sd(wall, 0)} |"
        )
    return "\n".join(lines) + "\n"


def compare(paths: list[str], out: str, title: str | None = None, window: int = 1) -> tuple[Path, Path]:
    """Write compare.png and compare.md to `out`; returns their paths."""
    groups = group_runs(find_runs(paths))
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    title = title or " vs ".join(groups)
    figure = plot_comparison(groups, out_dir / "compare.png", title, window)
    runs_list = "\n".join(f"- {name}: " + ", ".join(str(run.run_dir) for run in runs) for name, runs in groups.items())
    table = summary_table(groups)
    text = (f"# {title}\n\n![comparison](compare.png)\n\n{table}\n"
            f"Mean ± standard deviation over runs; held-out accuracy is greedy, from each run's summary.json. "
            f"Held-out SE: the binomial standard error sqrt(p(1−p)/n) of one run's after-training accuracy "
            f"(mean over runs), n problems.\n\n"
            f"Runs:\n{runs_list}\n")
    (out_dir / "compare.md").write_text(text)
    return figure, out_dir / "compare.md"
