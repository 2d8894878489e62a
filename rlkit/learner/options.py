"""The `learner` section of a recipe: ranks, ZeRO stage, precision, optimizer and batching."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DTYPES = ("float32", "bfloat16", "float16")
BACKENDS = ("auto", "gloo", "nccl")
ATTENTION = ("sdpa", "eager", "flash_attention_2", "flex_attention")


@dataclass
class LearnerOptions:
    """How the policy is trained: one DeepSpeed ZeRO rank per Ray actor."""

    num_ranks: int = 2
    """Data-parallel learner ranks (one Ray actor each; one GPU each on GPU machines)."""
    zero_stage: int = 2
    """DeepSpeed ZeRO stage: 0 = plain data parallel, 1 = shard optimizer state, 2 = + gradients, 3 = + weights."""
    dtype: str = "float32"
    """Training precision: float32 | bfloat16 (fp32 master weights kept by ZeRO) | float16 (GPU only)."""
    lr: float = 1e-5
    """AdamW learning rate (constant)."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay, applied to every parameter."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """AdamW (β1, β2)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value before each update; 0 turns clipping off."""
    micro_batch_size: int = 8
    """Samples per forward/backward on one rank; a memory knob: the loss does not depend on it, except for methods with
    micro-batch statistics (STEER, Clip-Cov, KL-Cov)."""
    mini_batches: int = 1
    """Optimizer updates per train step: the batch is split into this many mini-batches by whole rows."""
    ppo_epochs: int = 1
    """Passes over the batch per train step; >1 (or mini_batches > 1) computes old log-probs first."""
    logprob_chunk_size: int = 512
    """Tokens projected to the vocabulary at once for log-probs and entropy (bounds the fp32 logits held)."""
    gradient_checkpointing: bool = False
    """Recompute transformer activations in backward: less memory, ~30% more compute."""
    attn_implementation: str = "sdpa"
    """transformers attention kernel for training: sdpa | eager | flash_attention_2 | flex_attention.
    On CPU, eager trains short sequences (a few hundred tokens) 1.3× faster than sdpa, whose bf16
    backward is slow there; eager holds [heads, L, L] scores per layer, so keep sdpa for long ones."""
    num_threads: int = 1
    """torch threads per rank on CPU. In sync mode the rollout is idle while the learner trains, so one rank may use
    every core."""
    cpu_cores: list[int] = field(default_factory=list)
    """CPU cores the learner ranks run on (os.sched_setaffinity), e.g. [1]; [] = the OS schedules them."""
    cpus_per_rank: float = 1.0
    """Ray CPUs reserved per learner rank."""
    gpus_per_rank: float | None = None
    """Ray GPUs per learner rank; null = 1 when the cluster has GPUs, else 0."""
    resources: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources per rank, e.g. {learner_node: 1} to train on the nodes started with that resource."""
    backend: str = "auto"
    """torch.distributed backend: auto (nccl with CUDA, else gloo) | gloo | nccl."""
    seed: int = 0
    """Seed of torch on every rank."""
    deepspeed_overrides: dict[str, Any] = field(default_factory=dict)
    """Extra DeepSpeed config merged over the generated one (expert use), e.g.
    {zero_optimization: {stage3_param_persistence_threshold: 0}}."""

    def gpus_for(self, cluster_has_gpus: bool) -> float:
        """GPUs per rank: as set, else as the backend uses them (nccl needs one per rank, gloo
        none; auto follows the cluster). The one statement of this rule (config/resolve.py)."""
        if self.gpus_per_rank is not None:
            return float(self.gpus_per_rank)
        if self.backend != "auto":
            return 1.0 if self.backend == "nccl" else 0.0
        return 1.0 if cluster_has_gpus else 0.0

    def check(self) -> list[str]:
        """Problems with these options (empty list = valid). Device-dependent rules (fp16 needs a
        GPU) are checked when the ranks start, because the driver may run on a machine without one."""
        problems: list[str] = []
        if self.num_ranks < 1:
            problems.append(f"num_ranks={self.num_ranks}: need at least one learner rank")
        if self.zero_stage not in (0, 1, 2, 3):
            problems.append(f"zero_stage={self.zero_stage}: DeepSpeed ZeRO stages are 0, 1, 2 or 3")
        if self.dtype not in DTYPES:
            problems.append(f"dtype={self.dtype!r}: valid precisions are {', '.join(DTYPES)}")
        if self.num_threads < 1:
            problems.append(f"num_threads={self.num_threads}: need at least one thread per rank")
        if self.backend not in BACKENDS:
            problems.append(f"backend={self.backend!r}: valid backends are {', '.join(BACKENDS)}")
        if self.attn_implementation not in ATTENTION:
            problems.append(
                f"attn_implementation={self.attn_implementation!r}: valid kernels are {', '.join(ATTENTION)}"
            )
        if self.dtype == "float16" and self.backend == "gloo":
            problems.append(
                "dtype='float16' with backend='gloo': DeepSpeed refuses fp16 on CPU; use bfloat16 or float32"
            )
        if self.cpus_per_rank < 0 or (self.gpus_per_rank is not None and self.gpus_per_rank < 0):
            problems.append("cpus_per_rank and gpus_per_rank must be ≥ 0")
        if self.lr <= 0:
            problems.append(f"lr={self.lr}: the learning rate must be > 0")
        if self.weight_decay < 0:
            problems.append(f"weight_decay={self.weight_decay}: must be ≥ 0")
        if len(tuple(self.adam_betas)) != 2 or not all(0 <= beta < 1 for beta in self.adam_betas):
            problems.append(f"adam_betas={tuple(self.adam_betas)}: give two floats in [0, 1), e.g. [0.9, 0.999]")
        if self.grad_clip < 0:
            problems.append(f"grad_clip={self.grad_clip}: must be ≥ 0 (0 turns clipping off)")
        for name in ("micro_batch_size", "mini_batches", "ppo_epochs", "logprob_chunk_size"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)}: must be ≥ 1")
        return problems
