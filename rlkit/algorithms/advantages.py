"""Advantage estimators: pure functions over a batch of complete groups.

An estimator runs on the whole batch, not per group, because some (BNPO's Beta fit,
GRPO-λ's top-λ selection) need batch-level statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from rlkit.registry import Registry


@dataclass(frozen=True)
class AdvantageInputs:
    """What every estimator may read."""

    scores: torch.Tensor  # [B] sequence reward
    group_index: torch.Tensor  # [B] long, dense group id (0..G-1)
    response_mask: torch.Tensor  # [B, R] 1 = token counts


@dataclass(frozen=True)
class AdvantageEstimator:
    """A registered estimator: its hyperparameter dataclass and the function."""

    options: type
    fn: Callable[[AdvantageInputs, Any], torch.Tensor]  # -> [B, R]


ADVANTAGES: Registry[AdvantageEstimator] = Registry("advantage estimator")


def register_advantage(name: str, options: type):
    """Decorator: `@register_advantage("grpo", GrpoAdvantageOptions)` on fn(inputs, options)."""

    def add(fn):
        ADVANTAGES.register(name)(AdvantageEstimator(options=options, fn=fn))
        return fn

    return add


def compute_advantages(name: str, inputs: AdvantageInputs, options: Mapping[str, Any] | None = None) -> torch.Tensor:
    """Token-level advantages [B, R] (0 at masked positions), computed without gradient."""
    estimator = ADVANTAGES.get(name)
    with torch.no_grad():
        return estimator.fn(inputs, estimator.options(**dict(options or {})))


def group_mean_std(scores: torch.Tensor, group_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-row group mean, unbiased std and size. A singleton group gets mean 0 and std 1."""
    num_groups = int(group_index.max()) + 1 if group_index.numel() else 0
    scores = scores.to(torch.float64)
    size = torch.zeros(num_groups, dtype=torch.float64).index_add_(0, group_index, torch.ones_like(scores))
    total = torch.zeros(num_groups, dtype=torch.float64).index_add_(0, group_index, scores)
    mean = total / size
    squared = torch.zeros(num_groups, dtype=torch.float64).index_add_(0, group_index, (scores - mean[group_index]) ** 2)
    std = torch.sqrt(squared / torch.clamp(size - 1, min=1))
    singleton = size == 1
    mean = torch.where(singleton, torch.zeros_like(mean), mean)
    std = torch.where(singleton, torch.ones_like(std), std)
    return mean[group_index], std[group_index], size[group_index]


@dataclass(frozen=True)
class GrpoAdvantageOptions:
    """GRPO outcome advantage (ALGORITHMS.md §1.1)."""

    norm_adv_by_std: bool = True
    """Divide by the group's std; False gives Dr.GRPO's mean-centred advantage."""
    epsilon: float = 1e-6
    """Added to the std so all-equal groups give 0, not 0/0."""


@register_advantage("grpo", GrpoAdvantageOptions)
def grpo_advantage(inputs: AdvantageInputs, options: GrpoAdvantageOptions) -> torch.Tensor:
    """(score − group mean) / (group std + ε), broadcast over the response tokens."""
    mean, std, _ = group_mean_std(inputs.scores, inputs.group_index)
    centred = inputs.scores.to(torch.float64) - mean
    advantage = centred / (std + options.epsilon) if options.norm_adv_by_std else centred
    mask = inputs.response_mask
    return advantage.to(mask.dtype if mask.is_floating_point() else torch.float32)[:, None] * mask
