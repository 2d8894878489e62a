"""Loss aggregation over tokens and sequences (ALGORITHMS.md §0.3).

Denominators are taken over the whole mini-batch, not the micro-batch, so the loss (and its
gradient) does not depend on how the mini-batch is split across ranks and micro-batches:
each micro-batch returns its *contribution*, and the contributions add up to the mini-batch loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")


@dataclass(frozen=True)
class Denominators:
    """Mini-batch statistics that every micro-batch divides by."""

    tokens: float  # Σ response_mask over the whole mini-batch
    sequences: float  # rows with at least one valid token in the whole mini-batch
    response_width: float  # T, padded response length (seq-mean-token-sum-norm's constant)

    @staticmethod
    def of(response_mask: torch.Tensor, response_width: float | None = None) -> Denominators:
        """Statistics of a whole mini-batch mask [B, R]."""
        return Denominators(
            tokens=float(response_mask.sum()),
            sequences=float((response_mask.sum(dim=-1) > 0).sum()),
            response_width=float(response_width if response_width is not None else response_mask.shape[-1]),
        )


def aggregate(values: torch.Tensor, mask: torch.Tensor, mode: str, denominators: Denominators) -> torch.Tensor:
    """This micro-batch's contribution to the mini-batch mean of per-token `values` [B, R].

    Masked positions never contribute, whatever they hold. An empty mini-batch (no valid
    tokens) gives 0 rather than 0/0.
    """
    mask = mask.to(values.dtype)
    masked = torch.where(mask > 0, values, torch.zeros_like(values))
    if mode == "token-mean":
        return masked.sum() / max(denominators.tokens, 1.0)
    if mode == "seq-mean-token-sum":
        return masked.sum() / max(denominators.sequences, 1.0)
    if mode == "seq-mean-token-mean":
        per_sequence = masked.sum(dim=-1) / (mask.sum(dim=-1) + 1e-8)
        return per_sequence.sum() / max(denominators.sequences, 1.0)
    if mode == "seq-mean-token-sum-norm":
        return masked.sum() / float(denominators.response_width)
    raise ValueError(f"unknown loss_agg_mode {mode!r}; valid: {', '.join(AGG_MODES)}")
