"""The default job (`make demo`'s recipe) as shipped, cut to one step: SmolLM2-135M-Instruct from
its GGUF, the vLLM engine, a DeepSpeed rank, the math reward. It checks that the recipe the README
leads with still runs end to end, not what it learns (docs/results.md has that)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rlkit.tracking.metrics_log import read_metrics

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "smollm2_math_grpo.yaml"
pytestmark = pytest.mark.slow


def test_the_default_recipe_trains_one_real_step(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # Only what makes it short: one step, 4 held-out problems, no final model, plots or W&B.
    done = subprocess.run(
        [sys.executable, "-m", "rlkit.train", str(RECIPE), "run.steps=1", "eval.num_prompts=4",
         f"run.output_dir={run_dir}", "run.save_final_model=false", "logging.plots=false", "logging.wandb=false",
         "logging.progress_bar=false"],
        cwd=REPO, capture_output=True, text=True, timeout=800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"]["path"] == "smollm2-135m-instruct" and config["rollout"]["engine"] == "vllm"
    rows = read_metrics(run_dir / "metrics.jsonl")
    (step,) = [row for row in rows if "reward/mean" in row]
    assert step["step"] == 1 and step["rollout/samples"] == 32  # the recipe's 4 prompts × 8 samples
    assert 0.0 <= step["reward/mean"] <= 1.0
    for key in ("actor/loss", "actor/pg_loss", "actor/grad_norm", "actor/rollout_logprob_diff"):
        assert isinstance(step.get(key), float) and math.isfinite(step[key]), (key, step.get(key))
    assert step["actor/grad_norm"] >= 0.0 and step["actor/skipped_steps"] == 0
    assert step["actor/rollout_logprob_diff"] < 0.5  # the engine runs the learner's weights
    evals = [row for row in rows if "eval/accuracy" in row]
    assert [row["step"] for row in evals] == [0, 1] and all(row["eval/num_prompts"] == 4 for row in evals)
    assert all(math.isfinite(row["eval/accuracy_se"]) for row in evals)
