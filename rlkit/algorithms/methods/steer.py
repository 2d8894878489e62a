"""STEER: reweight each token's PPO loss by its estimated effect on the policy's entropy.

Hao et al., "Rethinking Entropy Interventions in RLVR: An Entropy Change Perspective",
arXiv 2510.10150; official `compute_token_weights` / `compute_policy_loss_with_entropy`
(ALGORITHMS.md §5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rlkit.algorithms.losses import POLICY_LOSSES, LossTerms, PolicyLossInputs, masked_extreme
from rlkit.algorithms.methods.grpo import GrpoLossOptions, ppo_clip_terms

OMEGA_FLOOR = 0.02  # exponential mode: k = −ln(λ_min) / max(max|Ω|, 0.02)


@dataclass(frozen=True)
class SteerOptions:
    """Hyperparameters of STEER; defaults from the official main script run/run_exp.sh."""

    token_weight_min: float = 0.8
    """λ_min (exponential) or the lowest weight (linear): run_exp.sh 0.8."""
    token_weight_max: float = 1.0
    """Highest weight in linear mode (run_linear.sh 1.2); exponential mode clamps at 1."""
    linear: bool = False
    """False: w = exp(−k|Ω|) (run_exp.sh, the paper's main method); True: linear map of |Ω| onto [max, min]
    (run_linear.sh)."""
    clip_ratio_low: float = 0.2
    """PPO ε_low (official scripts 0.2)."""
    clip_ratio_high: float = 0.28
    """PPO ε_high (official scripts 0.28)."""
    clip_ratio_c: float = 10.0
    """Dual-clip bound c (official scripts 10)."""

    def __post_init__(self) -> None:
        if not 0 < self.token_weight_min <= self.token_weight_max:
            raise ValueError(
                f"token_weight_min={self.token_weight_min}, token_weight_max={self.token_weight_max}: "
                "need 0 < min ≤ max"
            )
        GrpoLossOptions(self.clip_ratio_low, self.clip_ratio_high, self.clip_ratio_c)


@dataclass
class SteerDetails:
    omega: torch.Tensor  # [B, R], 0 at masked positions
    abs_omega_min: float
    abs_omega_max: float
    k: float | None  # exponential mode only
    weights: torch.Tensor  # [B, R], 0 at masked positions
    unweighted: LossTerms


def token_weights(inputs: PolicyLossInputs,
                  options: SteerOptions) -> tuple[torch.Tensor, torch.Tensor, float, float, float | None]:
    """(Ω, w, min|Ω|, max|Ω|, k) over this micro-batch's valid tokens, without gradient."""
    if inputs.old_entropy is None:
        raise ValueError("STEER needs the old policy's per-token entropy (PolicyLossInputs.old_entropy)")
    valid = inputs.valid
    with torch.no_grad():
        zeros = torch.zeros_like(inputs.log_prob)
        log_prob = torch.where(valid, inputs.log_prob.detach(), zeros)
        old_log_prob = torch.where(valid, inputs.old_log_prob, zeros)
        p = torch.clamp(torch.exp(log_prob), 1e-8, 1 - 1e-8)
        q = torch.clamp(torch.exp(old_log_prob), 1e-8, 1.0)
        entropy = torch.where(valid, inputs.old_entropy, zeros)
        advantages = torch.where(valid, inputs.advantages, zeros)
        omega = advantages / q * p * (1 - p) * (torch.log(p) + entropy)
        omega = torch.where(torch.isfinite(omega) & valid, omega, zeros)
        magnitude = omega.abs()
        if not valid.any():
            return omega, zeros, float("nan"), float("nan"), None
        low, high = float(magnitude[valid].min()), float(magnitude[valid].max())
        k = None
        if options.linear:
            if high > low:
                span = options.token_weight_max - options.token_weight_min
                weights = options.token_weight_max - (magnitude - low) * span / (high - low)
            else:
                weights = torch.full_like(magnitude, (options.token_weight_min + options.token_weight_max) / 2)
            weights = torch.clamp(weights, options.token_weight_min, options.token_weight_max)
        else:
            k = -math.log(options.token_weight_min) / max(high, OMEGA_FLOOR)
            weights = torch.clamp(torch.exp(-k * magnitude), options.token_weight_min, 1.0)
        weights = torch.where(valid, weights, zeros)
    return omega, weights, low, high, k


def steer_details(inputs: PolicyLossInputs, options: SteerOptions) -> SteerDetails:
    omega, weights, low, high, k = token_weights(inputs, options)
    base = ppo_clip_terms(inputs, GrpoLossOptions(options.clip_ratio_low, options.clip_ratio_high, options.clip_ratio_c))
    return SteerDetails(omega, low, high, k, weights, base)


@POLICY_LOSSES.add("steer", SteerOptions, needs={"old_entropy"}, micro_batch_statistics=True)
def steer_loss(inputs: PolicyLossInputs, options: SteerOptions) -> LossTerms:
    """verl's PPO-clip per token, times a constant weight w(|Ω|) ∈ [w_min, w_max]."""
    details = steer_details(inputs, options)
    base = details.unweighted
    return LossTerms(
        per_token=base.per_token * details.weights,
        diagnostics={**base.diagnostics, "steer/weight_mean": details.weights},
        stats={
            "steer/weight_min": masked_extreme(details.weights, inputs.valid, torch.min),
            "steer/abs_omega_max": details.abs_omega_max,
        },
    )
