"""Clip-Cov: detach the gradient of a few random tokens whose covariance of log-prob and
advantage is high, instead of (or on top of) PPO's ratio clip.

Cui et al., "The Entropy Mechanism of Reinforcement Learning for Reasoning Language Models",
arXiv 2505.22617; official `compute_policy_loss_clip_cov` (ALGORITHMS.md §4.1–4.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable

import torch

from rlkit.algorithms.losses import POLICY_LOSSES, LossTerms, PolicyLossInputs, masked_extreme, masked_log_ratio, masked_mean

Permutation = Callable[[int], torch.Tensor]


@dataclass(frozen=True)
class ClipCovOptions:
    """Hyperparameters of Clip-Cov; defaults from the official recipes (EMR recipe/dapo/7b_clip_cov.sh)."""

    clip_cov_ratio: float = 2e-4
    """Fraction of the micro-batch's valid tokens to detach (at least one), verl actor.yaml 2e-4."""
    clip_cov_lb: float = 1.0
    """Only tokens with covariance strictly above this are candidates (verl 1.0)."""
    clip_cov_ub: float = 5.0
    """... and strictly below this (verl 5.0)."""
    clip_ratio_low: float = 1.0
    """PPO band ε_low; the official recipes open the band (1.0), leaving Clip-Cov as the only clip."""
    clip_ratio_high: float = 1.0
    """PPO band ε_high (official recipes 1.0)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.clip_cov_ratio <= 1.0:
            raise ValueError(f"clip_cov_ratio={self.clip_cov_ratio}: a fraction of tokens in [0, 1]")
        if not self.clip_cov_lb < self.clip_cov_ub:
            raise ValueError(f"clip_cov_lb={self.clip_cov_lb} must be < clip_cov_ub={self.clip_cov_ub}")


@dataclass
class ClipCovDetails:
    ratio: torch.Tensor  # [B, R]
    cov: torch.Tensor  # [B, R], covariance before exclusions (0 at masked positions)
    clip_by_origin: torch.Tensor  # [B, R] bool, clipped by the PPO band
    clip_num: int
    candidates: torch.Tensor  # [C, 2] (row, col) in row-major order
    permutation: torch.Tensor  # [C] the order candidates were drawn in
    selected: torch.Tensor  # [S, 2]
    corr: torch.Tensor  # [B, R] 0 for selected tokens, else 1
    terms: LossTerms


def clip_cov_details(inputs: PolicyLossInputs, options: ClipCovOptions, permutation: Permutation) -> ClipCovDetails:
    """The loss and every intermediate; `permutation(n)` orders the n candidates (random in training)."""
    valid = inputs.valid
    delta = masked_log_ratio(inputs)
    ratio = torch.exp(delta)  # no log-ratio clamp in clip_cov
    advantages = torch.where(valid, inputs.advantages, torch.zeros_like(inputs.advantages))
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - options.clip_ratio_low, 1.0 + options.clip_ratio_high)
    clip_by_origin = (clipped > unclipped) & valid
    with torch.no_grad():
        log_prob = inputs.log_prob.detach()
        cov = (advantages - masked_mean(advantages, valid, 1e-8)) * (log_prob - masked_mean(log_prob, valid, 1e-8))
        cov = torch.where(valid, cov, torch.zeros_like(cov))
        eligible = valid & ~clip_by_origin & (cov > options.clip_cov_lb) & (cov < options.clip_cov_ub)
        candidates = eligible.nonzero()
        clip_num = max(int(options.clip_cov_ratio * int(valid.sum())), 1)
        order = torch.arange(len(candidates), device=candidates.device)
        if len(candidates) > clip_num:
            order = permutation(len(candidates)).to(device=candidates.device, dtype=torch.long)
        selected = candidates[order[:clip_num]]
        corr = torch.ones_like(ratio)
        corr[selected[:, 0], selected[:, 1]] = 0.0
    per_token = torch.maximum(unclipped, clipped) * corr
    chosen = (corr == 0).to(ratio.dtype)
    terms = LossTerms(
        per_token=per_token,
        diagnostics={
            "pg_clipfrac": chosen,  # the official metric: the fraction of detached tokens
            "clip_cov/band_clipfrac": clip_by_origin.to(ratio.dtype),
            "ppo_kl": -delta.detach(),
            "clip_cov/cov_mean": cov,
        },
        stats={
            "clip_cov/selected_tokens": float(len(selected)),
            "clip_cov/candidate_tokens": float(len(candidates)),
            "clip_cov/cov_max": masked_extreme(cov, valid, torch.max),
        },
    )
    return ClipCovDetails(ratio, cov, clip_by_origin, clip_num, candidates, order, selected, corr, terms)


@POLICY_LOSSES.add("clip_cov", ClipCovOptions, micro_batch_statistics=True)
def clip_cov_loss(inputs: PolicyLossInputs, options: ClipCovOptions) -> LossTerms:
    """max(−Aρ, −A·clip(ρ)) with the chosen high-covariance tokens' value and gradient zeroed
    (they still count in the denominator). Randomness comes from `inputs.generator`."""

    def permutation(n: int) -> torch.Tensor:
        return torch.randperm(n, generator=inputs.generator)

    return clip_cov_details(inputs, options, permutation).terms
