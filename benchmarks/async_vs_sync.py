"""Asynchronous against synchronous training: the same recipe and seed at max_staleness k = 0, 1, 2.

    python benchmarks/async_vs_sync.py [--quick] [--steps 10] [--recipe recipes/smollm2_math_grpo.yaml]
                                       [--set KEY=VALUE ...] [--out benchmarks/results/async_vs_sync.json]

Each k runs the recipe in its own process (`python -m rlkit.train`) with rollout pinned to core
0 and the learner to core 1 (one torch thread each; reward unpinned), no evaluation, and the
same seed; `--set` adds recipe overrides to every run. Throughput is steady-state samples/s: the
samples of steps 3..S over the wall time
from the end of step 2 to the end of step S (start-up, the first weight loads and the pipeline
filling are left out). Learning is compared at equal samples: the mean training reward of the
last third of the steps. `--quick` runs k = 0 and 1 for 3 steps (the fewest the steady state
needs) on recipes/tiny_cpu.yaml, unless --recipe names another. Headline: the best k ≥ 1 over
k = 0 (goal ≥ 1.7 on the 2-core machine, on the default recipe).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

from report import print_table, write_results
from training_runs import PLACEMENT, TRAINING_ONLY, steady_throughput, train_recipe

REPO = Path(__file__).resolve().parents[1]


def run(recipe: str, k: int, steps: int, out_dir: Path, extra: list[str]) -> dict[str, Any]:
    started = time.monotonic()
    rows = train_recipe(recipe, [f"sync.max_staleness={k}", f"run.steps={steps}", *TRAINING_ONLY, *PLACEMENT, *extra],
                        out_dir / f"k{k}", out_dir / f"k{k}.log")
    steady = rows[2:]
    samples_per_s, _ = steady_throughput(rows)
    third = max(1, len(rows) // 3)
    return {
        "k": k, "steps": len(rows), "wall_s": time.monotonic() - started,
        "samples_per_s": samples_per_s,
        "step_s": statistics.fmean(row["timing/step_s"] for row in steady),
        "train_s": statistics.fmean(row["timing/train_s"] for row in steady),
        "wait_batch_s": statistics.fmean(row["timing/wait_batch_s"] for row in steady),
        "sync_s": statistics.fmean(row["timing/sync_s"] for row in steady),
        "generate_s": statistics.fmean(row.get("timing/rollout_generate_s", 0.0) for row in steady),
        "staleness_mean": statistics.fmean(row.get("rollout/staleness/mean", 0.0) for row in rows),
        "staleness_max": max(row.get("rollout/staleness/max", 0.0) for row in rows),
        "reward_last_third": statistics.fmean(row["reward/mean"] for row in rows[-third:]),
        "reward_per_step": [row["reward/mean"] for row in rows],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="k = 0 and 1, 3 steps each, tiny recipe")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--recipe", default=None, help="default: recipes/smollm2_math_grpo.yaml (--quick: tiny_cpu.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="recipe override for every run, e.g. rollout.sampling.max_new_tokens=128")
    parser.add_argument("--runs-dir", default=str(REPO / "runs" / "async_vs_sync"))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "async_vs_sync.json"))
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("needs two CPU cores (rollout on one, learner on the other)")
    ks, steps = ([0, 1], 3) if args.quick else ([0, 1, 2], args.steps)
    args.recipe = args.recipe or ("recipes/tiny_cpu.yaml" if args.quick else "recipes/smollm2_math_grpo.yaml")
    out_dir = Path(args.runs_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = [run(args.recipe, k, steps, out_dir, args.set) for k in ks]
    base = results[0]["samples_per_s"]
    for result in results:
        result["speedup"] = result["samples_per_s"] / base
    print_table(
        f"{'k':>2} {'steps':>5} {'samples/s':>10} {'speed-up':>9} {'step s':>7} {'train s':>8} {'gen s':>6} {'wait s':>7} "
        f"{'sync s':>7} {'stale mean/max':>15} {'reward (last 1/3)':>18}",
        [f"{r['k']:>2} {r['steps']:>5} {r['samples_per_s']:>10.2f} {r['speedup']:>9.2f} {r['step_s']:>7.1f} "
         f"{r['train_s']:>8.1f} {r['generate_s']:>6.1f} {r['wait_batch_s']:>7.1f} {r['sync_s']:>7.2f} "
         f"{r['staleness_mean']:>7.2f}/{r['staleness_max']:<7.0f} {r['reward_last_third']:>18.3f}" for r in results],
    )
    best = max(results[1:], key=lambda r: r["speedup"])
    write_results(
        args.out,
        headline={"metric": f"samples/s at k={best['k']} / samples/s at k=0 ({' '.join([args.recipe, *args.set])}, "
                            "rollout and learner on one core each)",
                  "value": best["speedup"], "goal": ">= 1.7"},
        recipe=args.recipe, overrides=args.set, steps=steps, placement=PLACEMENT, results=results,
    )


if __name__ == "__main__":
    main()
