"""Generation speed of the two rollout engines on SmolLM2-135M-Instruct: vLLM (CPU build, or
CUDA where present) against transformers `generate`.

    python benchmarks/engines.py [--quick] [--threads 2] [--out benchmarks/results/engines.json]

Each engine generates, with the same sampling settings as the default job (temperature 0.7,
32 new tokens, seed 0), 8 samples for each of 16 prompts of the shipped arithmetic task per
round, in calls of 4 prompts × 8 samples, as the default job's rollout worker does. One warm-up round, then 3 timed rounds.
Each engine runs in its own process with `--threads` torch threads. Reports generated tokens per
second (EOS counted, as the rollout metrics do). Headline: vLLM over transformers. `--quick`: the
tiny test model, 4 prompts × 2 samples of 8 tokens, one timed round (checks the script, not the
engines' speed).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from report import print_table, wait_for_result, write_results

REPO = Path(__file__).resolve().parents[1]
PROMPTS, SAMPLES, NEW_TOKENS, PER_CALL = 16, 8, 32, 4
SETTINGS = {  # model, prompts, samples per prompt, new tokens, timed rounds
    "full": ("smollm2-135m-instruct", PROMPTS, SAMPLES, NEW_TOKENS, 3),
    "quick": ("tiny", 4, 2, 8, 1),
}


def measure(engine_name: str, setting: str, threads: int, queue: Any) -> None:
    sys.path.insert(0, str(REPO))
    import os

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    from transformers import AutoTokenizer

    from rlkit.models import resolve_model
    from rlkit.rollout.engine import EngineOptions, SamplingOptions
    from rlkit.rollout.engines import build_engine

    model_name, prompt_count, samples, new_tokens, rounds = SETTINGS[setting]
    model = resolve_model(model_name)
    tokenizer = AutoTokenizer.from_pretrained(model)
    rows = [json.loads(line) for line in (REPO / "data" / "arithmetic" / "train.jsonl").read_text().splitlines()[:prompt_count]]
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": row["prompt"]}], add_generation_prompt=True,
                                           tokenize=False) for row in rows]
    prompts = [list(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]
    engine = build_engine(engine_name, model, EngineOptions(dtype="bfloat16", max_model_len=512, num_threads=threads))
    sampling = SamplingOptions(temperature=0.7, max_new_tokens=new_tokens, seed=0)
    calls = [prompts[i : i + PER_CALL] for i in range(0, len(prompts), PER_CALL)]
    engine.generate(calls[0], samples, sampling)  # warm-up: compilation, caches
    speeds = []
    for _ in range(rounds):
        started = time.perf_counter()
        outputs = [group for call in calls for group in engine.generate(call, samples, sampling)]
        seconds = time.perf_counter() - started
        tokens = sum(len(g.response_ids) for group in outputs for g in group)
        speeds.append({"seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds})
    engine.close()
    queue.put({"engine": engine_name, "rounds": speeds,
               "tokens_per_s": statistics.fmean(s["tokens_per_s"] for s in speeds)})


def run(engine: str, setting: str, threads: int) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=measure, args=(engine, setting, threads, queue))
    process.start()
    return wait_for_result(process, queue, 1200)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, 4 × 2 samples of 8 tokens, one timed round")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per engine")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "engines.json"))
    args = parser.parse_args()
    setting = "quick" if args.quick else "full"
    model_name, prompt_count, samples, new_tokens, _ = SETTINGS[setting]
    results = [run(name, setting, args.threads) for name in ("vllm", "hf")]
    print_table(
        f"{'engine':<6} {'rounds':>6} {'tokens/s':>9} {'s/round':>8}",
        [f"{r['engine']:<6} {len(r['rounds']):>6} {r['tokens_per_s']:>9.0f} "
         f"{statistics.fmean(x['seconds'] for x in r['rounds']):>8.2f}" for r in results],
    )
    ratio = results[0]["tokens_per_s"] / results[1]["tokens_per_s"]
    print(f"vLLM / transformers: {ratio:.2f}x")
    write_results(
        args.out,
        headline={"metric": f"vLLM tokens/s / transformers generate tokens/s ({model_name}, {PER_CALL} prompts x {samples} "
                            f"samples per call, {new_tokens} tokens)",
                  "value": ratio, "goal": "> 1"},
        setting={"model": model_name, "prompts": prompt_count, "samples": samples, "new_tokens": new_tokens,
                 "threads": args.threads, "dtype": "bfloat16"},
        results=results,
    )


if __name__ == "__main__":
    main()
