"""Peak memory of the learner's chunked log-prob + entropy against the naive full-logits path.

    python benchmarks/logprob_memory.py [--quick] [--out benchmarks/results/logprob_memory.json]

Setting: vocabulary 32,000, a batch of 4 sequences of 16 prompt + 2,048 response tokens, a small
Llama-shaped model (hidden 256, 2 layers) so the vocabulary projection dominates, fp32 on CPU
(bf16/CUDA where a GPU is present). Each variant computes per-token log-probs and entropies of
the response tokens and backpropagates a loss through both, in a fresh process:

- `naive`: the model's full logits [4, 2064, 32000], log_softmax, gather, entropy;
- `chunked`: `rlkit.learner.logprobs.token_logprobs_and_entropy` (the body once, the LM head a
  chunk of tokens at a time under activation checkpointing), at chunk sizes 128, 512 (the default) and 2,048.

Peak memory is the process's peak RSS above what it held after building the model and inputs
(CPU), or `torch.cuda.max_memory_allocated` above the same baseline (GPU). Both paths' results are
compared (they must agree). `--quick`: 2 sequences of 16 + 512 tokens, chunk size 128 only
(seconds; its ratio is not the headline's). Headline: chunked peak over naive peak at the default
chunk size (goal ≤ 0.25).
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import time
from pathlib import Path
from typing import Any

from report import print_table, wait_for_result, write_results

REPO = Path(__file__).resolve().parents[1]
VOCAB, BATCH, PROMPT, RESPONSE = 32_000, 4, 16, 2048
DEFAULT_CHUNK = 512  # learner.logprob_chunk_size's default
QUICK = {"batch": 2, "response": 512, "chunks": [128]}


def measure(variant: str, chunk_size: int, batch: int, response: int, queue: Any) -> None:
    """Run one variant in this (fresh) process and report its peak memory above the baseline."""
    sys.path.insert(0, str(REPO))
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from rlkit.learner.logprobs import token_logprobs_and_entropy

    torch.manual_seed(0)
    cuda = torch.cuda.is_available()
    device, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=4096)
    model = LlamaForCausalLM(config).to(device=device, dtype=dtype)
    width = PROMPT + response
    input_ids = torch.randint(0, VOCAB, (batch, width), device=device)
    attention = torch.ones_like(input_ids)
    positions = torch.arange(width, device=device).expand(batch, width)
    if cuda:
        torch.cuda.synchronize()
        baseline = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        baseline = _rss_bytes()
    started = time.perf_counter()
    if variant == "naive":
        logits = model(input_ids=input_ids, attention_mask=attention, position_ids=positions).logits
        logits = logits[:, PROMPT - 1 : -1, :].float()
        log_probs = torch.log_softmax(logits, dim=-1)
        logprobs = log_probs.gather(-1, input_ids[:, PROMPT:, None]).squeeze(-1)
        entropies = -(log_probs.exp() * log_probs).sum(-1)
    else:
        logprobs, entropies = token_logprobs_and_entropy(
            model, input_ids, attention, positions, response, 1.0, chunk_size, with_entropy=True)
    (logprobs.sum() + 0.01 * entropies.sum()).backward()
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - baseline
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
    queue.put({
        "variant": variant, "chunk_size": chunk_size if variant == "chunked" else None, "device": device,
        "peak_mb": peak / 2**20, "seconds": time.perf_counter() - started,
        "logprob_sum": float(logprobs.detach().double().sum()), "entropy_sum": float(entropies.detach().double().sum()),
    })


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


def run(variant: str, chunk_size: int, batch: int, response: int) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=measure, args=(variant, chunk_size, batch, response, queue))
    process.start()
    return wait_for_result(process, queue, 900)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 x 512 response tokens, chunk size 128 only")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "logprob_memory.json"))
    args = parser.parse_args()
    batch, response, chunks = ((QUICK["batch"], QUICK["response"], QUICK["chunks"]) if args.quick
                               else (BATCH, RESPONSE, [128, DEFAULT_CHUNK, 2048]))
    results = [run("naive", 0, batch, response)] + [run("chunked", size, batch, response) for size in chunks]
    naive = results[0]
    for result in results:
        result["vs_naive"] = result["peak_mb"] / naive["peak_mb"]
        result["agrees"] = (abs(result["logprob_sum"] - naive["logprob_sum"]) <= 1e-3 * abs(naive["logprob_sum"])
                            and abs(result["entropy_sum"] - naive["entropy_sum"]) <= 1e-3 * abs(naive["entropy_sum"]))
    print_table(
        f"{'variant':<8} {'chunk':>6} {'device':>6} {'peak MB':>9} {'vs naive':>9} {'seconds':>8} {'agrees':>7}",
        [f"{r['variant']:<8} {r['chunk_size'] or '—':>6} {r['device']:>6} {r['peak_mb']:>9.0f} {r['vs_naive']:>9.3f} "
         f"{r['seconds']:>8.2f} {str(r['agrees']):>7}" for r in results],
    )
    headline_chunk = DEFAULT_CHUNK if DEFAULT_CHUNK in chunks else chunks[0]
    default = next(r for r in results if r["chunk_size"] == headline_chunk)
    write_results(
        args.out,
        headline={"metric": f"chunked (chunk {headline_chunk}) peak memory / naive peak memory, V=32k, "
                            f"{batch}x{response} tokens",
                  "value": default["vs_naive"], "goal": "<= 0.25"},
        setting={"vocab": VOCAB, "batch": batch, "prompt": PROMPT, "response": response},
        results=results,
    )


if __name__ == "__main__":
    main()
