"""The configuration schema: every field defined once, here or in its component, with a docstring.

Sections owned by a component (sampling and engine options, learner options, the algorithm
and reward-function spec) are imported from that component, so a knob lives next to the code
that reads it. Recipes in recipes/ only override these defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rlkit.algorithms.options import AlgorithmOptions
from rlkit.learner.options import LearnerOptions
from rlkit.reward.options import RewardConfig
from rlkit.rise import RiseConfig
from rlkit.rollout.options import RolloutConfig


@dataclass
class RunConfig:
    """Identity of the run and where it writes."""

    name: str = "rlkit"
    """Run name: the W&B run name and the default output folder name."""
    output_dir: str = "runs/${run.name}"
    """Folder for the resolved config, metrics.jsonl, checkpoints, plots and the final model."""
    seed: int = 0
    """Seed for data order, sampling and initialisation."""
    steps: int = 10
    """Number of learner steps (each one batch of `rollout.prompts_per_step` prompt groups)."""
    max_consecutive_skips: int = 3
    """Stop the run once this many steps in a row had an update skipped for a non-finite loss or gradient; 0 = never
    stop."""
    save_final_model: bool = True
    """Write the trained model with save_pretrained (safetensors) to `<output_dir>/final/`."""


@dataclass
class CheckpointConfig:
    """Resumable, crash-consistent checkpoints in `<output_dir>/checkpoints/` (docs/reliability.md)."""

    every: int = 0
    """Save a checkpoint every this many steps; 0 = only at the end."""
    keep: int = 2
    """How many of the newest verified checkpoints to keep (at least 2)."""
    resume: bool | str = True
    """true: continue from the newest valid checkpoint in run.output_dir, refusing one whose training config differs
    (listing each changed key); false: start afresh, refusing a folder that has checkpoints; force: continue even
    though the config changed (the change is printed and written to config_changes.jsonl)."""


@dataclass
class ModelConfig:
    """The policy model: every stage loads the same folder."""

    path: str = "tiny"
    """A folder saved with save_pretrained, or a built-in name: `tiny` (test model built from a config) or
    `smollm2-135m-instruct`."""


@dataclass
class DataConfig:
    """Prompts and their ground truth, from local jsonl or parquet files."""

    train_path: str = "data/arithmetic/train.jsonl"
    """Training prompts (.jsonl, .json or .parquet), relative to the working directory."""
    eval_path: str | None = "data/arithmetic/test.jsonl"
    """Held-out prompts for greedy evaluation; null disables evaluation."""
    prompt_key: str = "prompt"
    """Column with the user message (a string) or a chat (a list of {role, content})."""
    answer_key: str | None = "answer"
    """Column with the ground truth passed to the reward function; null if the task has none."""
    data_source_key: str | None = None
    """Column naming each row's task, passed to the reward function as `data_source`."""
    system_prompt: str | None = None
    """System message put before every prompt; null for none."""
    max_prompt_tokens: int = 256
    """Longest prompt allowed after the chat template; a longer row is an error naming the row."""
    shuffle: bool = True
    """Shuffle training prompts each epoch (seeded by run.seed)."""


@dataclass
class SyncConfig:
    """Weight flow from learner to rollout, and how stale samples may be."""

    max_staleness: int = 0
    """k: every sample in a step comes from weights at most k versions old; 0 = on-policy (sync mode)."""
    timeout_s: float = 300.0
    """Longest a weight sync may take before the run fails loudly."""
    dtype: str = "auto"
    """Dtype the weights travel in: auto (the engine's dtype), float32 or bfloat16."""
    transport: str = "auto"
    """How weights reach the engines: object_store (through Ray's object store), nccl (learner rank 0 broadcasts GPU to
    GPU; every rollout worker and learner rank needs a whole GPU), gloo (the same broadcast over TCP), or auto (nccl
    when every rollout worker and learner rank holds a whole GPU, else object_store)."""
    bucket_mb: float = 256.0
    """nccl / gloo: weights travel in buckets of at most this many MiB, one broadcast each."""


@dataclass
class EvalConfig:
    """Greedy held-out accuracy, before and after training (and every `every` steps)."""

    num_prompts: int = 100
    """Held-out prompts to evaluate (the first N rows of data.eval_path)."""
    every: int = 0
    """Evaluate every this many steps; 0 = only before and after training."""
    before: bool = True
    """Evaluate the initial model before the first step."""
    max_new_tokens: int = 0
    """Token budget for eval answers; 0 = rollout.sampling.max_new_tokens. With an environment, episodes keep
    rollout.env's limits."""


@dataclass
class LoggingConfig:
    """What people watch: progress bar, W&B, plots."""

    wandb: bool = True
    """Log to Weights & Biases: online with WANDB_API_KEY, else offline (sync later with `wandb sync`)."""
    wandb_project: str = "rlkit"
    """W&B project."""
    wandb_group: str | None = None
    """W&B group, to compare runs (e.g. loss variants) side by side."""
    wandb_tags: list[str] = field(default_factory=list)
    """W&B tags."""
    progress_bar: bool = True
    """Show a progress bar with step, reward, samples/s and ETA."""
    plots: bool = True
    """Write plots.png (reward, response length, entropy curves) to the run folder at the end."""


@dataclass
class RayConfig:
    """Where the actors run."""

    address: str | None = None
    """Cluster to join (`auto` inside `ray job submit`); null starts a private local one."""
    num_cpus: int | None = None
    """CPUs for a private local cluster; null = what the machine has (at least 4 logical)."""


@dataclass
class PlacementConfig:
    """How the stages' actors are laid out on the cluster: one Ray placement group per stage."""

    strategy: str = "PACK"
    """Placement-group strategy per stage: PACK (as few nodes as possible), SPREAD, STRICT_PACK (one node),
    STRICT_SPREAD (one node per actor)."""
    timeout_s: float = 120.0
    """Longest to wait for the stages' resources to be free before failing (another job may hold them)."""


@dataclass
class TrainConfig:
    """A whole training run."""

    run: RunConfig = field(default_factory=RunConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    algorithm: AlgorithmOptions = field(default_factory=AlgorithmOptions)
    learner: LearnerOptions = field(default_factory=LearnerOptions)
    sync: SyncConfig = field(default_factory=SyncConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    placement: PlacementConfig = field(default_factory=PlacementConfig)
    rise: RiseConfig = field(default_factory=RiseConfig)
