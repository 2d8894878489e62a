"""GRPO: group-normalised outcome advantages and verl's PPO-clip loss with dual clip.

ALGORITHMS.md §1 (verl `compute_grpo_outcome_advantage`, `compute_policy_loss_vanilla`).
Other methods reuse `ppo_clip_terms` and the GRPO normaliser.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlkit.algorithms.advantages import ADVANTAGES, AdvantageInputs, AdvantageResult, broadcast, group_normalise
from rlkit.algorithms.losses import POLICY_LOSSES, LossTerms, PolicyLossInputs, masked_log_ratio


@dataclass(frozen=True)
class GrpoAdvantageOptions:
    """GRPO outcome advantage (ALGORITHMS.md §1.1)."""

    norm_adv_by_std: bool = True
    """Divide by the group's unbiased std (verl `norm_adv_by_std_in_grpo`, default True); False gives Dr.GRPO."""
    epsilon: float = 1e-6
    """Added to the std so all-equal groups give 0, not 0/0 (verl core_algos.py, 1e-6)."""


@ADVANTAGES.add("grpo", GrpoAdvantageOptions)
def grpo_advantage(inputs: AdvantageInputs, options: GrpoAdvantageOptions) -> AdvantageResult:
    """(score − group mean) / (group std + ε), broadcast over the response tokens."""
    advantage = group_normalise(inputs.scores, inputs.group_index, options.norm_adv_by_std, options.epsilon)
    return AdvantageResult(broadcast(advantage, inputs.response_mask))


@dataclass(frozen=True)
class GrpoLossOptions:
    """PPO-clip with dual clip, as GRPO uses it (ALGORITHMS.md §1.2)."""

    clip_ratio_low: float = 0.2
    """ε_low: the ratio is clipped below at 1 − ε_low (verl actor.yaml, 0.2)."""
    clip_ratio_high: float = 0.2
    """ε_high: the ratio is clipped above at 1 + ε_high (verl actor.yaml 0.2; DAPO's clip-higher uses 0.28)."""
    clip_ratio_c: float = 3.0
    """Dual-clip bound c (> 1): for A < 0 the loss is capped at −A·c (verl actor.yaml, 3.0)."""

    def __post_init__(self) -> None:
        if not self.clip_ratio_c > 1.0:
            raise ValueError(f"clip_ratio_c must be > 1 (got {self.clip_ratio_c}): dual clip caps −A·ρ at −A·c")
        if self.clip_ratio_low < 0 or self.clip_ratio_high < 0:
            raise ValueError("clip_ratio_low and clip_ratio_high must be ≥ 0")


def ppo_clip_terms(inputs: PolicyLossInputs, options: GrpoLossOptions) -> LossTerms:
    """Per-token clipped surrogate (log-ratio clamped to ±20, dual clip for A < 0)."""
    delta = masked_log_ratio(inputs)
    ratio = torch.exp(torch.clamp(delta, -20.0, 20.0))
    advantages = torch.where(inputs.valid, inputs.advantages, torch.zeros_like(inputs.advantages))
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - options.clip_ratio_low, 1.0 + options.clip_ratio_high)
    band = torch.maximum(unclipped, clipped)
    dual = -advantages * options.clip_ratio_c
    per_token = torch.where(advantages < 0, torch.minimum(dual, band), band)
    return LossTerms(
        per_token=per_token,
        diagnostics={
            "pg_clipfrac": (clipped > unclipped).float(),
            "pg_clipfrac_lower": ((band > dual) & (advantages < 0)).float(),
            "ppo_kl": -delta.detach(),
        },
    )


POLICY_LOSSES.add("grpo", GrpoLossOptions)(ppo_clip_terms)
