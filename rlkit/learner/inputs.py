"""Per-step inputs of the loss that the learner derives from the batch: reward components,
advantages over the samples a reward applies to, mini-batch denominators and the loss's seed."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import torch
from torch import Tensor

from rlkit.algorithms import AdvantageInputs, AdvantageResult, Denominators, compute_advantages
from rlkit.types import RewardStatus, ScoredSample, TrainBatch


def loss_seed(seed: int, step: int, rank: int, draw: int) -> int:
    """Seed of the loss's generator for one micro-batch: the same inputs give the same seed in
    every process (integer tuples hash deterministically), different inputs differ."""
    return hash((seed, step, rank, draw)) & (2**63 - 1)


def reward_components(scored: list[ScoredSample]) -> dict[str, Tensor]:
    """Named reward components [B]. A sample whose scoring failed has none: it gets 0, as its
    score does; a scored sample that lacks a name others return gets NaN (estimators refuse it)."""
    names = sorted({name for item in scored for name in item.reward.components})

    def value(item: ScoredSample, name: str) -> float:
        missing = 0.0 if item.reward.status != RewardStatus.OK else float("nan")
        return float(item.reward.components.get(name, missing))

    return {name: torch.tensor([value(item, name) for item in scored], dtype=torch.float64) for name in names}


def denominators_of(batch: TrainBatch, rows: Tensor, scale_factor: float | None = None) -> Denominators:
    """Whole-mini-batch statistics. seq-mean-token-sum-norm's constant is `scale_factor` (the
    response budget, set by the trainer); without one, the longest response among these rows."""
    mask = batch.response_mask[rows]
    if scale_factor is not None:
        return Denominators.of(mask, response_width=scale_factor)
    columns = batch.attention_mask[rows, batch.prompt_width :].any(dim=0).nonzero()
    return Denominators.of(mask, response_width=int(columns[-1]) + 1 if columns.numel() else 1)


def applicable_rows(scored: list[ScoredSample]) -> Tensor:
    """[B] bool: False where the reward function returned None ("does not apply")."""
    return torch.tensor([item.reward.status != RewardStatus.NOT_APPLICABLE for item in scored], dtype=torch.bool)


def advantages_of_applicable(
    name: str, inputs: AdvantageInputs, options: Mapping[str, Any] | None, applicable: Tensor
) -> AdvantageResult:
    """Advantages computed over the applicable rows only (group statistics exclude the others,
    and group ids are renumbered densely); the other rows get 0."""
    if bool(applicable.all()):
        return compute_advantages(name, inputs, options)
    advantages = torch.zeros_like(inputs.response_mask, dtype=torch.float32)
    if not bool(applicable.any()):
        return AdvantageResult(advantages, {})
    rows = applicable.nonzero().flatten()
    _, dense = torch.unique(inputs.group_index[rows], return_inverse=True)

    def pick(value: Any) -> Any:
        return value[rows] if isinstance(value, Tensor) else value

    subset = AdvantageInputs(
        scores=inputs.scores[rows],
        group_index=_first_appearance_order(dense),
        response_mask=inputs.response_mask[rows],
        components={key: value[rows] for key, value in inputs.components.items()},
        old_entropy=pick(inputs.old_entropy),
        step_ids=pick(inputs.step_ids),
    )
    result = compute_advantages(name, subset, options)
    advantages = advantages.to(result.advantages.dtype)
    advantages[rows] = result.advantages
    return dataclasses.replace(result, advantages=advantages)


def _first_appearance_order(ids: Tensor) -> Tensor:
    """Renumber ids so groups are numbered in order of first appearance (as collate does)."""
    order: dict[int, int] = {}
    return torch.tensor([order.setdefault(int(value), len(order)) for value in ids], dtype=torch.long)
