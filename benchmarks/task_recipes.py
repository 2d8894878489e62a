"""One short run per task recipe (environments, shaped and component rewards, RISE): reward and
its components over the steps, held-out reward before and after, environment health.

    python benchmarks/task_recipes.py [--quick] [--steps 12] [--eval-prompts 24] [--recipes multistep_gra,rise_math]
                                      [--runs-dir runs/task_recipes] [--reuse] [--out benchmarks/results/task_recipes.json]

Each recipe runs as `python -m rlkit.train recipes/<name>.yaml run.steps=N eval.num_prompts=M
run.output_dir=<runs-dir>/<name>` in its own process (SmolLM2-135M-Instruct, vLLM CPU engine,
one DeepSpeed rank, as the recipes set). `--reuse` summarises runs already in the runs folder
instead of training again. Prints, per recipe, the reward components averaged over the first and
the last third of the steps, and writes every step's values to the JSON file. `--quick`: 2 steps
of 2 prompts × 2 samples and 4 held-out prompts, of calculator_math only (unless --recipes names
others): a smoke test of the script, not a figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from report import print_table, write_results
from training_runs import train_recipe

REPO = Path(__file__).resolve().parents[1]
RECIPES = ("calculator_math", "multistep_gra", "multistep_dra", "protocols_thoth", "retrieval_qa_llds", "rise_math")
# Per-step values worth following besides reward/<component>/mean.
TRACKED = ("reward/mean", "response_length/mean", "entropy/mean", "rollout/turns_per_episode", "rollout/env_error",
           "rollout/env_timeout", "rise/verification_frac", "rise/verification_accuracy", "timing/step_s")


def train(recipe: str, steps: int, eval_prompts: int, run_dir: Path, extra: tuple[str, ...] = ()) -> float:
    """Run one recipe in its own process (`extra`: more overrides); its wall-clock seconds."""
    started = time.monotonic()
    train_recipe(f"recipes/{recipe}.yaml",
                 [f"run.steps={steps}", f"eval.num_prompts={eval_prompts}", "logging.progress_bar=false", *extra],
                 run_dir, run_dir.parent / f"{recipe}.log")
    return time.monotonic() - started


def summarise(recipe: str, run_dir: Path) -> dict[str, Any]:
    from rlkit.tracking.metrics_log import read_metrics

    rows = read_metrics(run_dir / "metrics.jsonl")
    steps = [_with_turns_per_sample(row) for row in rows if "reward/mean" in row]
    evals = [row for row in rows if "eval/accuracy" in row]
    if not steps:
        raise SystemExit(f"{run_dir}: no training steps in metrics.jsonl")
    components = sorted({key for row in steps for key in row if key.startswith("reward/") and key.endswith("/mean")
                         and key != "reward/mean"})
    tracked = [key for key in (*TRACKED, *components) if any(key in row for row in steps)]
    third = max(1, len(steps) // 3)

    def mean(rows_: list[dict[str, Any]], key: str) -> float | None:
        values = [row[key] for row in rows_ if isinstance(row.get(key), (int, float))]
        return statistics.fmean(values) if values else None

    return {
        "recipe": recipe,
        "steps": len(steps),
        "first_third": {key: mean(steps[:third], key) for key in tracked},
        "last_third": {key: mean(steps[-third:], key) for key in tracked},
        "per_step": {key: [row.get(key) for row in steps] for key in tracked},
        "eval_before": {k: v for k, v in evals[0].items() if k.startswith("eval/")} if evals else {},
        "eval_after": {k: v for k, v in evals[-1].items() if k.startswith("eval/")} if len(evals) > 1 else {},
    }


def _with_turns_per_sample(row: dict[str, Any]) -> dict[str, Any]:
    """Model turns per generated episode (the counters add up over a step)."""
    if row.get("rollout/generated_samples") and "rollout/env_turns" in row:
        return {**row, "rollout/turns_per_episode": row["rollout/env_turns"] / row["rollout/generated_samples"]}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="2 steps of calculator_math, 2 prompts × 2 samples each, and 4 held-out prompts")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--eval-prompts", type=int, default=24)
    parser.add_argument("--recipes", default=None, help="comma-separated recipe names (default: all)")
    parser.add_argument("--runs-dir", default=str(REPO / "runs" / "task_recipes"))
    parser.add_argument("--reuse", action="store_true", help="summarise existing runs, do not train")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "task_recipes.json"))
    args = parser.parse_args()
    args.out = str(Path(args.out).resolve())  # before the chdir below
    steps, eval_prompts = (2, 4) if args.quick else (args.steps, args.eval_prompts)
    recipes = args.recipes.split(",") if args.recipes else ["calculator_math"] if args.quick else list(RECIPES)
    runs_dir = Path(args.runs_dir).resolve()  # given from where the command ran; the runs go from the repository
    os.chdir(REPO)
    sys.path.insert(0, str(REPO))
    results = []
    for recipe in recipes:
        run_dir = runs_dir / recipe
        smaller = ("rollout.prompts_per_step=2", "rollout.n=2") if args.quick else ()  # a smoke test, not a figure
        seconds = None if args.reuse else train(recipe, steps, eval_prompts, run_dir, smaller)
        results.append({**summarise(recipe, run_dir), "wall_s": seconds})
    for result in results:
        before, after = result["eval_before"].get("eval/accuracy"), result["eval_after"].get("eval/accuracy")
        print(f"\n{result['recipe']}: {result['steps']} steps; held-out reward {_fmt(before)} → {_fmt(after)}")
        for key in sorted(k for k in result["eval_before"] if k.endswith("/mean")):
            print(f"  {key}: {_fmt(result['eval_before'][key])} → {_fmt(result['eval_after'].get(key))}")
        print_table(
            f"{'metric':<34} {'first third':>12} {'last third':>12}",
            [f"{key:<34} {_fmt(value):>12} {_fmt(result['last_third'][key]):>12}"
             for key, value in result["first_third"].items()],
        )
    write_results(args.out, steps=steps, eval_prompts=eval_prompts, results=results)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    main()
