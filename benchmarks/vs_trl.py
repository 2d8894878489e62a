"""End-to-end training speed against TRL's GRPOTrainer on the same model, data and settings.

    python benchmarks/vs_trl.py [--quick] [--steps 8] [--out benchmarks/results/vs_trl.json]

Both train SmolLM2-135M-Instruct with GRPO on the shipped arithmetic task: 4 prompts × 8 samples
per step, 32 new tokens at temperature 0.7, lr 2e-5, no KL term, one update per batch, the same
reward (`rewards.math_answer.score`), bf16, on this machine's two cores, and the same learner
kernels (fused AdamW, eager attention: what rlkit's recipe sets).

- rlkit: `python -m rlkit.train recipes/smollm2_math_grpo.yaml` as shipped (vLLM CPU engine), in
  sync mode (k = 0) and async (k = 1, rollout and learner on one core each).
- TRL: `GRPOTrainer` (TRL 1.16.0, transformers generate: TRL's vLLM support stops at vLLM 0.31,
  below this project's vLLM), `use_cpu=True`, both cores.

TRL is installed for the benchmark only, without dependencies (every one it needs is already in
the project's environment at a version it accepts), into `bench-trl` under rlkit's cache
($RLKIT_CACHE, else ~/.cache/rlkit; see requirements/bench-trl.txt), outside the checkout.
Samples/s is steady state: steps 3..S over their wall time, for both. `--quick`: 3 steps of the
tiny test model on both sides (the default recipe with `model.path=tiny`), rlkit async only; it
checks the script, not the speeds. Headline: rlkit's best over TRL (goal ≥ 2).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from report import print_table, write_results
from training_runs import PLACEMENT, TRAINING_ONLY, steady_throughput, train_recipe

REPO = Path(__file__).resolve().parents[1]
TRL_VERSION = "1.16.0"
PROMPTS, GROUP, NEW_TOKENS, LR, TEMPERATURE = 4, 8, 32, 2e-5, 0.7

TRL_PROGRAM = r'''
import json, sys, time
sys.path.insert(0, sys.argv[1])  # the repository: rewards/, rlkit.models
import torch
from datasets import Dataset
from transformers import AutoTokenizer, TrainerCallback
from trl import GRPOConfig, GRPOTrainer
from rewards.math_answer import score
from rlkit.models import resolve_model

steps, prompts, group, new_tokens, lr, temperature, out, model_name = (int(sys.argv[2]), int(sys.argv[3]),
    int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7]), sys.argv[8], sys.argv[9])
torch.set_num_threads(2)
rows = [json.loads(line) for line in open(sys.argv[1] + "/data/arithmetic/train.jsonl")][: steps * prompts]
data = Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}], "answer": r["answer"]} for r in rows])
model = str(resolve_model(model_name))

def math_reward(completions, answer, **kwargs):
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [score(response=t, ground_truth=a)["score"] for t, a in zip(texts, answer)]

ends = []
class Clock(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        ends.append(time.monotonic())

config = GRPOConfig(
    output_dir=out, max_steps=steps, per_device_train_batch_size=prompts * group, num_generations=group,
    gradient_accumulation_steps=1, max_completion_length=new_tokens, temperature=temperature, learning_rate=lr,
    beta=0.0, num_iterations=1, use_cpu=True, bf16=True, logging_steps=1, save_strategy="no", report_to=[],
    seed=0, shuffle_dataset=False, dataloader_num_workers=0,
    # The learner kernels rlkit's recipe uses, so the comparison is of the frameworks, not of kernels.
    optim="adamw_torch_fused", model_init_kwargs={"attn_implementation": "eager"},
)
trainer = GRPOTrainer(model=model, reward_funcs=math_reward, args=config, train_dataset=data,
                      processing_class=AutoTokenizer.from_pretrained(model), callbacks=[Clock()])
started = time.monotonic()
trainer.train()
rewards = [entry["reward"] for entry in trainer.state.log_history if "reward" in entry]
json.dump({"step_ends": [t - started for t in ends], "rewards": rewards}, open(out + "/trl_result.json", "w"))
'''


def ensure_trl() -> Path:
    """TRL in a folder of its own, no dependencies pulled (it must not change the project's pins)."""
    sys.path.insert(0, str(REPO))
    from rlkit.models import cache_root

    trl_dir = cache_root() / "bench-trl"
    if not (trl_dir / "trl" / "__init__.py").is_file():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(trl_dir),
                        f"trl=={TRL_VERSION}"], check=True)
    return trl_dir


def run_trl(steps: int, out_dir: Path, model: str) -> dict[str, Any]:
    trl_dir = ensure_trl()
    out = out_dir / "trl"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(trl_dir), str(REPO)]), "WANDB_DISABLED": "true",
           "OMP_NUM_THREADS": "2", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-c", TRL_PROGRAM, str(REPO), str(steps), str(PROMPTS), str(GROUP), str(NEW_TOKENS),
               str(LR), str(TEMPERATURE), str(out), model]
    with open(out_dir / "trl.log", "w", encoding="utf-8") as log:
        done = subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"TRL failed (exit {done.returncode}); see {out_dir / 'trl.log'}")
    result = json.loads((out / "trl_result.json").read_text())
    ends = result["step_ends"]
    seconds = ends[-1] - ends[1]
    return {"system": "trl", "mode": f"GRPOTrainer {TRL_VERSION}", "steps": len(ends),
            "samples_per_s": (len(ends) - 2) * PROMPTS * GROUP / seconds,
            "step_s": seconds / (len(ends) - 2), "rewards": result["rewards"]}


def run_rlkit(k: int, steps: int, out_dir: Path, model: str) -> dict[str, Any]:
    overrides = [f"sync.max_staleness={k}", f"run.steps={steps}", f"rollout.n={GROUP}", f"rollout.prompts_per_step={PROMPTS}",
                 f"model.path={model}", *TRAINING_ONLY, *(PLACEMENT if k else [])]
    rows = train_recipe("recipes/smollm2_math_grpo.yaml", overrides, out_dir / f"rlkit_k{k}", out_dir / f"rlkit_k{k}.log")
    samples_per_s, step_s = steady_throughput(rows)
    return {"system": "rlkit", "mode": f"k={k}" + (" pinned" if k else ""), "steps": len(rows),
            "samples_per_s": samples_per_s, "step_s": step_s, "rewards": [row["reward/mean"] for row in rows]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 steps of the tiny model, rlkit async only")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--runs-dir", default=str(REPO / "runs" / "vs_trl"))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "vs_trl.json"))
    args = parser.parse_args()
    steps, model = (3, "tiny") if args.quick else (args.steps, "smollm2-135m-instruct")
    out_dir = Path(args.runs_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results = [run_trl(steps, out_dir, model)]
    results += [run_rlkit(k, steps, out_dir, model) for k in ([1] if args.quick else [0, 1])]
    trl = results[0]["samples_per_s"]
    for result in results:
        result["vs_trl"] = result["samples_per_s"] / trl
    print_table(
        f"{'system':<6} {'mode':<20} {'steps':>5} {'samples/s':>10} {'s/step':>7} {'vs TRL':>7}",
        [f"{r['system']:<6} {r['mode']:<20} {r['steps']:>5} {r['samples_per_s']:>10.2f} {r['step_s']:>7.1f} {r['vs_trl']:>7.2f}"
         for r in results],
    )
    best = max(results[1:], key=lambda r: r["samples_per_s"])
    write_results(
        args.out,
        headline={"metric": f"rlkit ({best['mode']}) samples/s / TRL GRPOTrainer samples/s", "value": best["vs_trl"],
                  "goal": ">= 2"},
        setting={"model": model, "prompts": PROMPTS, "group": GROUP, "new_tokens": NEW_TOKENS,
                 "lr": LR, "temperature": TEMPERATURE, "steps": steps},
        wall_s=time.monotonic() - started, results=results,
    )


if __name__ == "__main__":
    main()
