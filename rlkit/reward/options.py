"""The `reward` section of a recipe: which functions score, how they are isolated, and what a
failed score means for the loss."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlkit.reward.loader import RewardFnSpec, WeightedRewardFn

ON_FAILURE = ("exclude", "minimum", "zero")


@dataclass
class RewardConfig:
    """Scoring: which function, and how it is isolated."""

    fn: RewardFnSpec = field(default_factory=lambda: RewardFnSpec(module="rewards.math_answer:score"))
    """The reward function: `{path: my_rewards.py, name: score}` or `{module: pkg.mod:fn}`."""
    fns: list[WeightedRewardFn] = field(default_factory=list)
    """Several reward functions instead of `fn`: [{label: correct, weight: 1.0, module: ...}, {label: fmt, weight: 0.1,
    path: ...}]; score = Σ weight·score."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Settings the reward function reads from `extra`, for every sample (a dataset column of the same name wins where
    it is not null), e.g. {gra_threshold: 0.5}."""
    timeout_s: float = 10.0
    """Per-sample time limit; a function still running is killed and the sample marked `timeout`."""
    processes_per_worker: int = 1
    """Scoring processes in each RewardWorker."""
    num_workers: int = 1
    """RewardWorker actors."""
    cpus_per_worker: float = 0.5
    """Ray CPUs reserved per reward worker."""
    resources: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources per reward worker, e.g. {rollout_node: 0.1} to score beside the engines."""
    cpu_cores: list[int] = field(default_factory=list)
    """CPU cores the reward workers and their scoring processes run on; [] = the OS schedules them."""
    on_failure: str = "exclude"
    """What a sample whose reward failed (status error, timeout or invalid) means for the loss: exclude (it leaves the
    group statistics and the loss, like a not_applicable one), minimum (it counts as the lowest score of its group)
    or zero (it counts as a score of 0; the behaviour before this option, which can rank a crashed scorer above a
    wrong answer)."""
