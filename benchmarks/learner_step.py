"""One learner step in isolation: seconds per step of a recipe's learner settings, and where they go.

    python benchmarks/learner_step.py [--quick] [--recipe recipes/smollm2_math_grpo.yaml]
                                      [--set learner.KEY=VALUE ...] [--threads 1] [--profile]
                                      [--out benchmarks/results/learner_step.json]

A single DeepSpeed rank in this process (gloo on loopback) trains the recipe's model on batches
shaped like the default job's: 4 groups × 8 samples, 60 prompt tokens, 16–32 response tokens,
random token ids and 0/1 rewards (the cost of a step depends on shapes, not on the text).
`--set` changes learner options, e.g. `learner.zero_stage=2 learner.micro_batch_size=8
learner.attn_implementation=sdpa`. The first step (allocations, first touches) is left out.
`--profile` profiles one more step with torch.profiler and reports the matmul share and the
top operators. `--quick`: 2 timed steps on recipes/tiny_cpu.yaml's model and learner settings
(one rank), unless --recipe names another. Headline: mean seconds per step.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from report import print_table, write_results

REPO = Path(__file__).resolve().parents[1]
GROUPS, GROUP_SIZE, PROMPT_TOKENS, RESPONSE_TOKENS = 4, 8, 60, (16, 32)


def scored_batch(seed: int, vocab_size: int) -> list[Any]:
    """Random token ids in [1000, 20000), or in the upper half of a smaller vocabulary."""
    from rlkit.types import FinishReason, Prompt, Reward, RewardStatus, Sample, ScoredSample

    rng = random.Random(seed)
    low, high = min(1000, vocab_size // 2), min(20000, vocab_size)
    items = []
    for group in range(GROUPS):
        prompt = Prompt(uid=f"p{group}", text="", prompt_ids=[rng.randrange(low, high) for _ in range(PROMPT_TOKENS)],
                        ground_truth=None)
        for index in range(GROUP_SIZE):
            response = [rng.randrange(low, high) for _ in range(rng.randint(*RESPONSE_TOKENS))]
            sample = Sample(
                group_uid=f"s{seed}-g{group}", index_in_group=index, group_size=GROUP_SIZE, prompt=prompt,
                response_ids=response, response_mask=[1] * len(response), rollout_logprobs=[-1.0] * len(response),
                policy_version=0, finish=FinishReason.STOP, response_text="",
            )
            items.append(ScoredSample(sample=sample, reward=Reward(score=float(index % 2), status=RewardStatus.OK)))
    return items


def profile_step(worker: Any, batch: list[Any]) -> dict[str, Any]:
    """Self CPU seconds of the matmuls, of everything, and the ten costliest operators."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        worker.train_step(batch)
    events = sorted(prof.key_averages(), key=lambda event: event.self_cpu_time_total, reverse=True)
    total = sum(event.self_cpu_time_total for event in events) / 1e6
    matmul = sum(event.self_cpu_time_total for event in events if event.key in ("aten::mm", "aten::bmm", "aten::addmm")) / 1e6
    top = [{"op": event.key, "self_s": event.self_cpu_time_total / 1e6, "calls": event.count} for event in events[:10]]
    return {"total_s": total, "matmul_s": matmul, "top": top}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 timed steps of the tiny recipe's learner")
    parser.add_argument("--steps", type=int, default=4, help="timed steps (after one warm-up step)")
    parser.add_argument("--recipe", default=None, help="default: recipes/smollm2_math_grpo.yaml (--quick: tiny_cpu.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="learner.KEY=VALUE")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the async benchmark's learner has 1)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "learner_step.json"))
    args = parser.parse_args()
    args.out = str(Path(args.out).resolve())
    os.chdir(REPO)  # recipes name their data relative to the working directory
    sys.path.insert(0, str(REPO))
    from dataclasses import replace

    from rlkit.config.load import load_config
    from rlkit.config.resolve import resolve_config
    from rlkit.learner.group import free_port
    from rlkit.learner.worker import LearnerWorker
    from rlkit.models import resolve_model

    recipe = args.recipe or f"recipes/{'tiny_cpu' if args.quick else 'smollm2_math_grpo'}.yaml"
    config = resolve_config(load_config(recipe, args.set), cluster_has_gpus=False)  # the values a run uses
    options = replace(config.learner, num_ranks=1, num_threads=args.threads, cpu_cores=[])
    model = resolve_model(config.model.path)
    vocab_size = json.loads((model / "config.json").read_text())["vocab_size"]
    worker = LearnerWorker(0, 1, "127.0.0.1", free_port(), str(model), options,
                           config.algorithm, config.rollout.sampling.temperature)
    worker.setup()
    worker.train_step(scored_batch(0, vocab_size))
    steps = 2 if args.quick else args.steps
    seconds = []
    for step in range(steps):
        started = time.perf_counter()
        worker.train_step(scored_batch(step + 1, vocab_size))
        seconds.append(time.perf_counter() - started)
    profiled = profile_step(worker, scored_batch(steps + 1, vocab_size)) if args.profile else None
    settings = {name: getattr(options, name) for name in
                ("zero_stage", "micro_batch_size", "attn_implementation", "dtype", "logprob_chunk_size", "num_threads")}
    print(f"learner settings: {settings}")
    rows = [f"{'step ' + str(index + 2):<14} {value:>8.2f}" for index, value in enumerate(seconds)]
    rows.append(f"{'mean':<14} {statistics.fmean(seconds):>8.2f}")
    if profiled:
        rows.append(f"{'matmul (prof)':<14} {profiled['matmul_s']:>8.2f}")
        rows.append(f"{'all ops (prof)':<14} {profiled['total_s']:>8.2f}")
    print_table(f"{'':<14} {'seconds':>8}", rows)
    if profiled:
        print_table(f"{'operator':<40} {'self s':>7} {'calls':>6}",
                    [f"{row['op'][:40]:<40} {row['self_s']:>7.2f} {row['calls']:>6}" for row in profiled["top"]])
    write_results(
        args.out,
        headline={"metric": f"seconds per learner step ({recipe} {' '.join(args.set)}, {args.threads} thread(s))",
                  "value": statistics.fmean(seconds), "goal": "as low as the matmuls allow"},
        recipe=recipe, overrides=args.set, settings=settings,
        batch={"groups": GROUPS, "group_size": GROUP_SIZE, "prompt_tokens": PROMPT_TOKENS, "response_tokens": RESPONSE_TOKENS},
        seconds=seconds, profile=profiled,
    )


if __name__ == "__main__":
    main()
