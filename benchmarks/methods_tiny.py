"""Every method's recipe block on the tiny recipe, with a dense toy reward: does it train, and
how fast.

    python benchmarks/methods_tiny.py [--quick] [--steps 20] [--methods grpo,steer] [--out benchmarks/results/methods_tiny.json]

Each method runs the tiny recipe (random 0.3M-parameter model, hf engine, 2 DeepSpeed ranks)
with its block from recipes/math_<method>.yaml and the reward rewards/char_fraction.py (share of
"7" characters), 8 samples per prompt, lr 3e-3. Prints a table (reward over the first and last
three steps, final entropy, NaN count, seconds per step) and writes JSON. `--quick`: 2 steps of
KL-Cov (two updates per batch), unless --methods names others.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
from pathlib import Path

from report import print_table, write_results

REPO = Path(__file__).resolve().parents[1]
# GRPO-λ trains on correctness, not on the score: here a response counts as correct when at least
# 5 % of it is "7" (one character in a 16-token answer), which the untrained model reaches at times.
EXTRA = {"grpo_lambda": ["algorithm.advantage_options.correct_threshold=0.05"]}


def run_one(method: str, steps: int, workdir: Path) -> dict:
    from rlkit.config import load_config
    from rlkit.config.methods import method_overrides
    from rlkit.controller import train
    from rlkit.tracking.metrics_log import read_metrics

    run_dir = workdir / method
    config = load_config(str(REPO / "recipes" / "tiny_cpu.yaml"), [
        *method_overrides(method), *EXTRA.get(method, []),
        f"run.steps={steps}", f"run.output_dir={run_dir}", "learner.lr=3e-3", "rollout.n=8",
        f"reward.fn.path={REPO / 'rewards' / 'char_fraction.py'}", "reward.fn.name=score", "data.eval_path=null",
        "logging.progress_bar=false", "logging.plots=false", "run.save_final_model=false", "logging.wandb=false",
    ])
    train(config)
    rows = [row for row in read_metrics(run_dir / "metrics.jsonl") if "reward/mean" in row]
    rewards = [row["reward/mean"] for row in rows]
    nan_values = sum(1 for row in rows for value in row.values() if isinstance(value, float) and math.isnan(value))
    method_keys = sorted({key for row in rows for key in row if key.count("/") >= 2 and key.startswith("actor/")})
    return {
        "method": method,
        "steps": len(rows),
        "reward_first3": statistics.fmean(rewards[:3]),
        "reward_last3": statistics.fmean(rewards[-3:]),
        "entropy_last": rows[-1]["entropy/mean"],
        "nan_values": nan_values,
        "skipped_updates": sum(row.get("actor/skipped_steps", 0.0) for row in rows),
        "step_s": statistics.fmean(row["timing/step_s"] for row in rows[1:]),
        "method_metrics_last": {key: rows[-1][key] for key in method_keys if key in rows[-1]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 steps of kl_cov (two updates per step)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--methods", default=None, help="comma-separated; default: every method with a recipe")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "methods_tiny.json"))
    args = parser.parse_args()
    args.out = str(Path(args.out).resolve())  # before the chdir below
    os.chdir(REPO)
    from rlkit.config.methods import method_names
    from rlkit.runtime import ray_session

    steps = 2 if args.quick else args.steps
    methods = args.methods.split(",") if args.methods else ["kl_cov"] if args.quick else method_names()
    results = []
    with tempfile.TemporaryDirectory() as workdir, ray_session(None, None):
        for method in methods:
            results.append(run_one(method, steps, Path(workdir)))
    print_table(
        f"{'method':<12} {'steps':>5} {'reward first3':>13} {'reward last3':>12} {'entropy':>8} {'NaN':>4} {'step s':>7}",
        [
            f"{r['method']:<12} {r['steps']:>5} {r['reward_first3']:>13.3f} {r['reward_last3']:>12.3f} "
            f"{r['entropy_last']:>8.3f} {r['nan_values']:>4} {r['step_s']:>7.2f}"
            for r in results
        ],
    )
    write_results(args.out, steps=steps, results=results)


if __name__ == "__main__":
    main()
