"""The `rollout` section of a recipe: which engine, how many samples, where the workers run."""

from __future__ import annotations

from dataclasses import dataclass, field

from rlkit.environment import EnvOptions
from rlkit.rollout.engine import EngineOptions, SamplingOptions


@dataclass
class RolloutConfig:
    """Generation: which engine, how many samples, how."""

    engine: str = "hf"
    """Generation engine: `vllm` (vLLM; its CPU build on CPU machines) or `hf` (transformers generate)."""
    num_workers: int = 1
    """RolloutWorker actors (engine replicas)."""
    n: int = 4
    """Samples per prompt: the group size of group-relative methods."""
    prompts_per_step: int = 8
    """Prompt groups in each training batch (batch = prompts_per_step × n samples)."""
    prompts_per_request: int = 8
    """Prompts a worker pulls from the store and generates in one engine call."""
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    """Sampling for training rollouts."""
    engine_options: EngineOptions = field(default_factory=EngineOptions)
    """Engine set-up (dtype, KV cache, threads)."""
    env: EnvOptions = field(default_factory=EnvOptions)
    """Multi-turn environment: the model and an environment take turns (tool use, search, multi-step tasks); name null =
    single-turn."""
    cpus_per_worker: float = 1.0
    """Ray CPUs reserved per rollout worker."""
    batch_timeout_s: float = 1800.0
    """Longest the learner waits for one batch of scored groups before the run fails with the store's state."""
    gpus_per_worker: float = 0.0
    """Ray GPUs per rollout worker (set 1 on GPU clusters)."""
    resources: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources per rollout worker, e.g. {rollout_node: 1} to run rollout on the nodes started with that
    resource (docs/multinode.md)."""
    cpu_cores: list[int] = field(default_factory=list)
    """CPU cores the rollout workers run on (os.sched_setaffinity), e.g. [0]; [] = the OS schedules them. Give rollout
    and learner separate cores for async runs on one machine."""
