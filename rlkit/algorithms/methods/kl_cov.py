"""KL-Cov: a |log-ratio| penalty on the top-k tokens by covariance of log-prob and advantage.

Cui et al., "The Entropy Mechanism of Reinforcement Learning for Reasoning Language Models",
arXiv 2505.22617; official `compute_policy_loss_kl_cov` (ALGORITHMS.md §4.1, 4.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlkit.algorithms.losses import POLICY_LOSSES, LossTerms, PolicyLossInputs, masked_extreme, masked_log_ratio, masked_mean


@dataclass(frozen=True)
class KlCovOptions:
    """Hyperparameters of KL-Cov; defaults from the official 7B recipes (ALGORITHMS.md §4.3)."""

    kl_cov_ratio: float = 2e-3
    """Fraction (not percent) of the micro-batch's valid tokens to penalise, at least one (0 = none): 0.002 in the 7B
    recipes (EMR k_percent=0.2 %, verl-old recipe/entropy kl_cov_ratio=0.002)."""
    ppo_kl_coef: float = 1.0
    """κ, the weight of |ℓ − ℓ_old| on the selected tokens: 1.0 in every official recipe and the code fallback (verl
    actor.yaml says 0.1)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.kl_cov_ratio <= 1.0:
            raise ValueError(f"kl_cov_ratio={self.kl_cov_ratio}: a fraction of tokens in [0, 1] (0.002 = 0.2 %)")
        if self.ppo_kl_coef < 0:
            raise ValueError(f"ppo_kl_coef={self.ppo_kl_coef}: must be ≥ 0")


@dataclass
class KlCovDetails:
    ratio: torch.Tensor
    cov: torch.Tensor  # 0 at masked positions
    k: int
    selected: torch.Tensor  # [B, R] bool
    terms: LossTerms


def kl_cov_details(inputs: PolicyLossInputs, options: KlCovOptions) -> KlCovDetails:
    valid = inputs.valid
    delta = masked_log_ratio(inputs)
    ratio = torch.exp(delta)  # no clamp, no PPO clip in kl_cov
    advantages = torch.where(valid, inputs.advantages, torch.zeros_like(inputs.advantages))
    with torch.no_grad():
        log_prob = inputs.log_prob.detach()
        cov = (advantages - masked_mean(advantages, valid)) * (log_prob - masked_mean(log_prob, valid))
        cov = torch.where(valid, cov, torch.zeros_like(cov))
        count = int(valid.sum())
        # At least one token, as the official code; a ratio of 0 turns the penalty off, as there.
        k = max(1, int(count * options.kl_cov_ratio)) if options.kl_cov_ratio > 0 else 0
        selected = torch.zeros_like(valid)
        if count and k:
            ranked = torch.where(valid, cov, torch.full_like(cov, -torch.inf)).flatten()
            top = torch.topk(ranked, min(k, count)).indices
            selected.view(-1)[top] = True
    per_token = -advantages * ratio + torch.where(selected, options.ppo_kl_coef * delta.abs(), torch.zeros_like(delta))
    terms = LossTerms(
        per_token=per_token,
        diagnostics={
            "ppo_kl": -delta.detach(),
            "kl_cov/ppo_kl_abs": delta.detach().abs(),
            "kl_cov/selected_frac": selected.to(ratio.dtype),
            "kl_cov/cov_mean": cov,
        },
        stats={"kl_cov/selected_tokens": float(selected.sum()), "kl_cov/cov_max": masked_extreme(cov, valid, torch.max)},
    )
    return KlCovDetails(ratio, cov, k, selected, terms)


@POLICY_LOSSES.add("kl_cov", KlCovOptions, needs={"off_policy"}, micro_batch_statistics=True)
def kl_cov_loss(inputs: PolicyLossInputs, options: KlCovOptions) -> LossTerms:
    """−Aρ, plus κ·|ℓ − ℓ_old| on the top-k covariance tokens (k = max(1, ⌊N·ratio⌋))."""
    return kl_cov_details(inputs, options).terms
