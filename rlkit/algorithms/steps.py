"""Steps (turns) inside a response, as per-token ids.

A multi-turn response interleaves the model's turns with tool or observation tokens (masked
out). EMPG weighs each step by its entropy and LLDS gates each action, so both need to know
where steps start and end. `step_ids` [B, R] holds, per token, the index of its step within
the response (0, 1, …) and −1 where the token does not count (mask 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def step_ids_from_mask(response_mask: torch.Tensor, turn_starts: Sequence[Sequence[int]] | None = None) -> torch.Tensor:
    """Per-token step index [B, R] (long), −1 at masked positions.

    A row with `turn_starts` (the token offsets where its turns start, as an environment
    records them) has one step per turn. A row without has one step per maximal run of valid
    tokens: the masked observation tokens between turns separate them, and a single-turn
    response is one step.
    """
    valid = response_mask > 0
    previous = torch.nn.functional.pad(valid[:, :-1], (1, 0), value=False)
    ids = ((valid & ~previous).long().cumsum(dim=1) - 1).clamp(min=0)
    for row, offsets in enumerate(turn_starts or ()):
        if len(offsets):  # this row recorded its turns: they define its steps
            starts = torch.zeros(valid.shape[1], dtype=torch.long, device=response_mask.device)
            for offset in offsets:
                if 0 < offset < valid.shape[1]:
                    starts[offset] = 1
            ids[row] = starts.cumsum(dim=0)
    return torch.where(valid, ids, torch.full_like(ids, -1))


def run_ids(flags: torch.Tensor, step_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """Batch-unique ids of maximal runs of consecutive True `flags` [B, R], split wherever the
    step id changes; −1 where the flag is False. Returns (ids, number of runs)."""
    flags = flags.bool()
    previous = torch.nn.functional.pad(flags[:, :-1], (1, 0), value=False)
    starts = flags & ~previous
    if step_ids is not None:
        previous_step = torch.nn.functional.pad(step_ids[:, :-1], (1, 0), value=-2)
        starts = starts | (flags & (step_ids != previous_step))
    ids = starts.flatten().long().cumsum(dim=0).view_as(flags) - 1
    count = int(starts.sum())
    return torch.where(flags, ids, torch.full_like(ids, -1)), count


def segment_sum(values: torch.Tensor, ids: torch.Tensor, count: int) -> torch.Tensor:
    """Sum of `values` over each id in [0, count) (positions with id −1 ignored)."""
    keep = ids >= 0
    out = torch.zeros(count, dtype=values.dtype, device=values.device)
    return out.index_add(0, ids[keep], values[keep])
