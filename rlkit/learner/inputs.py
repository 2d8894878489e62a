"""Per-step inputs of the loss that the learner derives from the batch: the row order,
reward components, advantages over the rows that train (rlkit.learner.failures), mini-batch
denominators and the loss's seed."""

from __future__ import annotations

import dataclasses
import random
from typing import Any
from collections.abc import Mapping

import torch
from torch import Tensor

from rlkit.algorithms import AdvantageInputs, AdvantageResult, Denominators, compute_advantages
from rlkit.learner.failures import TrainableRows
from rlkit.types import ScoredSample, TrainBatch


def loss_seed(seed: int, step: int, rank: int, draw: int) -> int:
    """Seed of the loss's generator for one micro-batch: the same inputs give the same seed in
    every process (integer tuples hash deterministically), different inputs differ."""
    return hash((seed, step, rank, draw)) & (2**63 - 1)


def denominators_of(batch: TrainBatch, rows: Tensor, scale_factor: float | None = None) -> Denominators:
    """Whole-mini-batch statistics. seq-mean-token-sum-norm's constant is `scale_factor` (the
    response budget, set by the trainer); without one, the longest response among these rows."""
    mask = batch.response_mask[rows]
    if scale_factor is not None:
        return Denominators.of(mask, response_width=scale_factor)
    columns = batch.attention_mask[rows, batch.prompt_width :].any(dim=0).nonzero()
    return Denominators.of(mask, response_width=int(columns[-1]) + 1 if columns.numel() else 1)


def interleave_sources(scored: list[ScoredSample], seed: int, step: int) -> list[ScoredSample]:
    """The batch in an order where every contiguous slice (a mini-batch) holds each data source's
    groups in proportion; unchanged when all groups share one source.

    Batches that mix kinds arrive concatenated (RISE appends its verification groups after the
    solutions), so contiguous mini-batches would make whole updates of one kind. Groups are
    shuffled within their source and spread evenly over the batch, a group's rows staying
    together and in order. The shuffle is seeded by (seed, step): every rank computes the same
    order, and a rerun the same one."""
    groups: dict[str, list[ScoredSample]] = {}
    for item in scored:
        groups.setdefault(item.sample.group_uid, []).append(item)
    by_source: dict[str, list[str]] = {}
    for uid, rows in groups.items():
        by_source.setdefault(rows[0].sample.prompt.data_source, []).append(uid)
    if len(by_source) < 2:
        return scored
    rng = random.Random(f"rlkit-interleave:{seed}:{step}")  # str seeds are hashed stably, unlike hash()
    slots = []
    for uids in by_source.values():
        rng.shuffle(uids)
        # Group k of n sits at a random point of the k-th n-th of the batch: stratified positions.
        slots += [((k + rng.random()) / len(uids), uid) for k, uid in enumerate(uids)]
    return [item for _, uid in sorted(slots) for item in groups[uid]]


def fill_advantages(
    batch: TrainBatch,
    rows: TrainableRows,
    estimator: str,
    options: Mapping[str, Any] | None,
    old_entropy: Tensor | None = None,
) -> AdvantageResult:
    """Set `batch`'s scores and advantages from the rows that train, and take the other rows'
    tokens out of the loss and its denominators (their response mask becomes 0). Group
    statistics are those of the kept rows only."""
    batch.scores = rows.scores
    result = advantages_of_applicable(
        estimator,
        AdvantageInputs(
            scores=rows.scores,
            group_index=batch.group_index,
            response_mask=batch.response_mask,
            components=rows.components,
            old_entropy=old_entropy,
            step_ids=batch.step_ids,
        ),
        options,
        rows.kept,
    )
    batch.advantages = result.advantages
    batch.response_mask = batch.response_mask * rows.kept[:, None].to(batch.response_mask.dtype)
    return result


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
