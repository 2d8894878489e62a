"""Per-step inputs of the loss that the learner derives from the batch: reward components,
mini-batch denominators and the loss's random seed."""

from __future__ import annotations

import torch
from torch import Tensor

from rlkit.algorithms import Denominators
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
