"""One interface over the generation engines (vLLM and transformers).

The rollout worker only sees :class:`GenerationEngine`; `rlkit.rollout.engines.build_engine` picks
the adapter by name. This module holds the interface and the helpers the adapters share; it
imports no adapter (they import it), and no adapter imports vLLM until an engine starts.

Log-prob convention shared by every engine and the learner: the log-prob of a token is
``log_softmax(logits / temperature)`` at that token, from the model's raw logits. ``top_p`` shapes
which tokens can be sampled but never the reported log-prob, so with identical weights the engine's
numbers equal the learner's. Temperature 0 means greedy decoding; its log-probs are taken at
temperature 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from rlkit.registry import did_you_mean
from rlkit.types import Generation

DTYPES = ("float32", "bfloat16")


@dataclass
class SamplingOptions:
    """Sampling knobs for one `generate` call."""

    temperature: float = 1.0
    """Softmax temperature; 0 means greedy. Log-probs are reported at this temperature."""
    top_p: float = 1.0
    """Nucleus sampling mass in (0, 1]. Restricts sampling only; reported log-probs ignore it."""
    max_new_tokens: int = 64
    """Most tokens generated per response (an EOS token counts as one)."""
    seed: int | None = None
    """Base seed: same seed, prompts and weights give the same samples. None: nondeterministic."""

    def problems(self) -> list[str]:
        """Every invalid field, as messages that say how to fix them (empty when valid)."""
        found = []
        if not self.temperature >= 0:
            found.append(f"temperature={self.temperature} must be ≥ 0 (0 = greedy)")
        if not 0 < self.top_p <= 1:
            found.append(f"top_p={self.top_p} must be in (0, 1]; 1 disables nucleus sampling")
        if self.max_new_tokens < 1:
            found.append(f"max_new_tokens={self.max_new_tokens} must be ≥ 1")
        return found


@dataclass
class EngineOptions:
    """How an engine loads and runs its model."""

    dtype: str = "float32"
    """Weights and compute dtype: "float32" or "bfloat16"."""
    kv_cache_gib: float = 1.0
    """vLLM KV-cache size on CPU, in GiB (what VLLM_CPU_KVCACHE_SPACE sets)."""
    max_model_len: int = 1024
    """Longest prompt + response in tokens; longer requests are refused before generating."""
    gpu_memory_utilization: float = 0.5
    """Fraction of GPU memory vLLM may take (CUDA only; leaves room for a colocated learner)."""
    num_threads: int = 1
    """torch threads in the engine's process; 1 avoids oversubscribing shared CPU cores."""

    def problems(self) -> list[str]:
        """Every invalid field, as messages that say how to fix them (empty when valid)."""
        found = []
        if self.dtype not in DTYPES:
            found.append(f"dtype={self.dtype!r} is not supported; use one of {', '.join(DTYPES)}")
        if not self.kv_cache_gib > 0:
            found.append(f"kv_cache_gib={self.kv_cache_gib} must be > 0")
        if self.max_model_len < 2:
            found.append(f"max_model_len={self.max_model_len} must be ≥ 2")
        if not 0 < self.gpu_memory_utilization <= 1:
            found.append(f"gpu_memory_utilization={self.gpu_memory_utilization} must be in (0, 1]")
        if self.num_threads < 1:
            found.append(f"num_threads={self.num_threads} must be ≥ 1")
        return found


class GenerationEngine(Protocol):
    """What a rollout worker needs from an engine."""

    tokenizer: Any  # the model's HF tokenizer: decodes turns, encodes environment observations
    device: torch.device  # where the weights live (a weight broadcast receives onto it)

    def generate(
        self, prompt_ids: list[list[int]], n: int, sampling: SamplingOptions
    ) -> list[list[Generation]]:
        """`n` samples for each prompt, in prompt order. A response ends with its EOS token if
        one was generated (finish STOP), else it has `max_new_tokens` tokens (finish LENGTH)."""
        ...

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Replace weights in place, by HF state-dict name; any subset of names is accepted."""
        ...

    def token_logprobs(
        self, prompt_ids: list[int], response_ids: list[int], temperature: float = 1.0
    ) -> list[float]:
        """Log-prob of each response token under the current weights (checks weight sync)."""
        ...

    def close(self) -> None:
        """Free the model and engine resources; the engine is unusable afterwards."""
        ...


# Helpers shared by the adapters: request checks, the log-prob formula, weight-name checks.


def raise_problems(what: str, problems: list[str]) -> None:
    if problems:
        raise ValueError(f"invalid {what}: " + "; ".join(problems))


def check_request(
    prompt_ids: list[list[int]],
    n: int,
    sampling: SamplingOptions,
    max_model_len: int,
    vocab_size: int,
) -> None:
    """Refuse a request that would fail (or be silently cut short) inside an engine."""
    problems = sampling.problems()
    if n < 1:
        problems.append(f"n={n} must be ≥ 1")
    for index, ids in enumerate(prompt_ids):
        if not ids:
            problems.append(f"prompt {index} is empty; every prompt needs at least one token")
        elif len(ids) + sampling.max_new_tokens > max_model_len:
            problems.append(
                f"prompt {index} has {len(ids)} tokens, and with max_new_tokens="
                f"{sampling.max_new_tokens} it exceeds max_model_len={max_model_len}; shorten the "
                f"prompt, lower max_new_tokens or raise the engine's max_model_len"
            )
        elif min(ids) < 0 or max(ids) >= vocab_size:
            problems.append(
                f"prompt {index} holds token ids outside [0, {vocab_size}); tokenize it with "
                f"this model's tokenizer"
            )
    raise_problems("generation request", problems)


def logprob_temperature(temperature: float) -> float:
    """Temperature the log-probs are taken at: greedy decoding (0) reports temperature 1."""
    return temperature if temperature > 0 else 1.0


def scaled_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
    """log_softmax(logits / T) at `tokens`, in fp32. logits [..., V], tokens [...] → [...]."""
    scaled = logits.float() / logprob_temperature(temperature)
    return scaled.log_softmax(dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def check_weights(
    named_tensors: list[tuple[str, torch.Tensor]], expected: Mapping[str, torch.Size]
) -> None:
    """Refuse unknown names or wrong shapes before any weight is touched."""
    names = sorted(expected)
    problems = []
    for name, tensor in named_tensors:
        if name not in expected:
            problems.append(f"unknown parameter {name!r}{did_you_mean(name, names)}")
        elif tuple(tensor.shape) != tuple(expected[name]):
            problems.append(
                f"{name!r} has shape {tuple(tensor.shape)}, the model expects "
                f"{tuple(expected[name])}"
            )
    if problems:
        more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        shown = "; ".join(problems[:5]) + more
        raise ValueError(
            f"cannot load weights: {shown}. Weights must be named as in the HF model's "
            f"state_dict() (e.g. {names[0]!r}) and come from the same architecture; unwrap "
            f"DeepSpeed/DDP prefixes such as 'module.' before sending them."
        )


def eos_token_ids(model_path: Path, tokenizer) -> list[int]:
    """Every token that ends a response: the generation config's EOS ids and the tokenizer's."""
    from transformers import GenerationConfig

    ids: set[int] = set()
    if (model_path / "generation_config.json").is_file():
        configured = GenerationConfig.from_pretrained(model_path).eos_token_id
        if configured is not None:
            ids.update([configured] if isinstance(configured, int) else configured)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    if not ids:
        raise ValueError(
            f"model {model_path} defines no EOS token (neither generation_config.json nor the "
            f"tokenizer), so responses could never stop; set eos_token_id in one of them"
        )
    return sorted(ids)
