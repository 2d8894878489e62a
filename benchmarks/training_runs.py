"""Training runs launched by the benchmarks: one `python -m rlkit.train` process per run, and the
steady-state throughput read from its metrics."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# One core each for rollout and learner (the 2-core machine's async setting).
PLACEMENT = ["rollout.cpu_cores=[0]", "learner.cpu_cores=[1]", "rollout.engine_options.num_threads=1",
             "learner.num_threads=1"]
# Nothing but training: no evaluation, plots, W&B or final model.
TRAINING_ONLY = ["eval.before=false", "data.eval_path=null", "logging.progress_bar=false", "logging.plots=false",
                 "logging.wandb=false", "run.save_final_model=false"]


def train_recipe(recipe: str, overrides: list[str], run_dir: Path, log: Path) -> list[dict[str, Any]]:
    """Train `recipe` into a fresh `run_dir` (metrics.jsonl appends, so an old one is removed),
    output to `log`; the rows of its training steps."""
    sys.path.insert(0, str(REPO))
    from rlkit.tracking.metrics_log import read_metrics

    run_dir = run_dir.resolve()  # the process runs in the repository
    shutil.rmtree(run_dir, ignore_errors=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "rlkit.train", recipe, f"run.output_dir={run_dir}", *overrides]
    with open(log, "w", encoding="utf-8") as handle:
        done = subprocess.run(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"{recipe} {' '.join(overrides)} failed (exit {done.returncode}); see {log}")
    return [row for row in read_metrics(run_dir / "metrics.jsonl") if "reward/mean" in row]


def steady_throughput(rows: list[dict[str, Any]]) -> tuple[float, float]:
    """(samples/s, s/step) over steps 3..S: start-up, first weight loads and the pipeline filling
    are left out."""
    seconds = rows[-1]["throughput/elapsed_s"] - rows[1]["throughput/elapsed_s"]
    return sum(row["rollout/samples"] for row in rows[2:]) / seconds, seconds / (len(rows) - 2)
