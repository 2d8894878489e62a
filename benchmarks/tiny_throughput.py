"""Samples/s of the tiny recipe end to end, once per engine.

    python benchmarks/tiny_throughput.py [--quick] [--steps 6] [--out benchmarks/results/tiny_throughput.json]

Runs the full system (Ray actors for rollout, reward and 2 DeepSpeed ranks, weight sync every
step) and reports steady-state figures: the first step (engine warm-up, JIT builds) is excluded.
`--quick`: 2 steps per engine (one measured). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from report import print_table, write_results

REPO = Path(__file__).resolve().parents[1]


def run_one(engine: str, steps: int, workdir: Path) -> dict:
    from rlkit.config import load_config
    from rlkit.controller import train
    from rlkit.tracking.metrics_log import read_metrics

    run_dir = workdir / engine
    config = load_config(str(REPO / "recipes" / "tiny_cpu.yaml"), [
        f"rollout.engine={engine}", f"run.steps={steps}", f"run.output_dir={run_dir}",
        "eval.before=false", "logging.progress_bar=false", "logging.plots=false", "run.save_final_model=false",
    ])
    train(config)
    rows = [row for row in read_metrics(run_dir / "metrics.jsonl") if "reward/mean" in row][1:]
    return {
        "engine": engine,
        "steps_measured": len(rows),
        "samples_per_step": rows[0]["rollout/samples"],
        "samples_per_s": statistics.fmean(row["throughput/samples_per_s"] for row in rows),
        "step_s": statistics.fmean(row["timing/step_s"] for row in rows),
        "train_s": statistics.fmean(row["timing/train_s"] for row in rows),
        "sync_s": statistics.fmean(row["timing/sync_s"] for row in rows),
        "generate_tokens_per_s": statistics.fmean(row.get("throughput/generate_tokens_per_s", 0.0) for row in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 steps per engine, the second measured")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--engines", default="hf,vllm")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "tiny_throughput.json"))
    args = parser.parse_args()
    args.out = str(Path(args.out).resolve())  # before the chdir below
    steps = 2 if args.quick else args.steps
    os.chdir(REPO)
    import ray

    from rlkit.runtime import ray_session

    results = []
    with tempfile.TemporaryDirectory() as workdir, ray_session(None, None):
        for engine in args.engines.split(","):
            results.append(run_one(engine, steps, Path(workdir)))
        assert ray.is_initialized()
    print_table(
        f"{'engine':<7} {'samples/s':>10} {'step s':>8} {'train s':>8} {'sync s':>7} {'gen tok/s':>10}",
        [
            f"{r['engine']:<7} {r['samples_per_s']:>10.2f} {r['step_s']:>8.2f} {r['train_s']:>8.2f} "
            f"{r['sync_s']:>7.2f} {r['generate_tokens_per_s']:>10.0f}"
            for r in results
        ],
    )
    write_results(args.out, steps=steps, results=results)


if __name__ == "__main__":
    main()
