"""Advantage estimators: pure functions over a batch of complete groups.

An estimator runs on the whole batch, not per group, because some (BNPO's Beta fit, GRPO-λ's
top-λ selection, EMPG's min-max over steps) need batch-level statistics. Estimators live in
`rlkit/algorithms/methods/`, one file each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from collections.abc import Mapping

import torch

from rlkit.algorithms.components import ComponentRegistry


@dataclass(frozen=True)
class AdvantageInputs:
    """What an estimator may read. Optional fields are filled when a registered estimator
    declares the matching need (see `rlkit.algorithms.components.NEEDS`)."""

    scores: torch.Tensor  # [B] sequence reward
    group_index: torch.Tensor  # [B] long, dense group id (0..G-1), in order of first appearance
    response_mask: torch.Tensor  # [B, R] 1 = token counts
    components: Mapping[str, torch.Tensor] = field(default_factory=dict)  # reward components, [B] each
    old_entropy: torch.Tensor | None = None  # [B, R] entropy of the old (rollout) policy
    step_ids: torch.Tensor | None = None  # [B, R] long, step index within the response, −1 masked

    @property
    def response_lengths(self) -> torch.Tensor:
        """[B] number of tokens that count, per response."""
        return self.response_mask.sum(dim=-1)


@dataclass
class AdvantageResult:
    """Token-level advantages and the estimator's own statistics (logged under actor/)."""

    advantages: torch.Tensor  # [B, R], 0 at masked positions
    metrics: dict[str, float] = field(default_factory=dict)


ADVANTAGES = ComponentRegistry("advantage estimator")


def compute_advantages(name: str, inputs: AdvantageInputs, options: Mapping[str, Any] | None = None) -> AdvantageResult:
    """Run estimator `name` without gradient; the advantages have the mask's dtype."""
    estimator = ADVANTAGES.get(name)
    with torch.no_grad():
        result = estimator.fn(inputs, estimator.build_options(options))
    mask = inputs.response_mask
    dtype = mask.dtype if mask.is_floating_point() else torch.float32
    result.advantages = torch.where(mask > 0, result.advantages.to(dtype), torch.zeros((), dtype=dtype))
    return result


def broadcast(per_sequence: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """[B] → [B, R]: each response's value on its valid tokens, 0 elsewhere."""
    dtype = response_mask.dtype if response_mask.is_floating_point() else torch.float32
    return per_sequence.to(dtype)[:, None] * (response_mask > 0).to(dtype)


def group_count(group_index: torch.Tensor) -> int:
    return int(group_index.max()) + 1 if group_index.numel() else 0


def group_sum(values: torch.Tensor, group_index: torch.Tensor) -> torch.Tensor:
    """[G] sums of per-row `values` [B] by group (float64)."""
    out = torch.zeros(group_count(group_index), dtype=torch.float64)
    return out.index_add(0, group_index, values.to(torch.float64))


def group_mean_std(scores: torch.Tensor, group_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-row group mean, unbiased std and size (float64). A singleton group gets mean 0 and std 1."""
    size = group_sum(torch.ones_like(scores, dtype=torch.float64), group_index)
    mean = group_sum(scores, group_index) / size
    squared = group_sum((scores.to(torch.float64) - mean[group_index]) ** 2, group_index)
    std = torch.sqrt(squared / torch.clamp(size - 1, min=1))
    singleton = size == 1
    mean = torch.where(singleton, torch.zeros_like(mean), mean)
    std = torch.where(singleton, torch.ones_like(std), std)
    return mean[group_index], std[group_index], size[group_index]


def group_normalise(scores: torch.Tensor, group_index: torch.Tensor, by_std: bool, epsilon: float) -> torch.Tensor:
    """GRPO's per-sequence advantage [B] (float64): (s − mean_g)/(std_g + ε), or s − mean_g."""
    mean, std, _ = group_mean_std(scores, group_index)
    centred = scores.to(torch.float64) - mean
    return centred / (std + epsilon) if by_std else centred
