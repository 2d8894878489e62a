"""Policy losses and the total actor loss.

A policy loss maps per-token inputs to a per-token loss plus per-token diagnostics; the
aggregation (token-mean etc.) and the shared KL / entropy terms are applied once, here, so
every registered loss gets them the same way. The learner never asks which loss is active.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

from rlkit.algorithms.aggregation import Denominators, aggregate
from rlkit.algorithms.kl import kl_penalty
from rlkit.algorithms.options import AlgorithmOptions
from rlkit.registry import Registry


@dataclass(frozen=True)
class PolicyLossInputs:
    """Per-token tensors of one micro-batch, all [B, R]."""

    log_prob: torch.Tensor  # current policy; carries the gradient
    old_log_prob: torch.Tensor  # policy that the ratio is taken against (constant)
    advantages: torch.Tensor  # constant
    response_mask: torch.Tensor  # 1 = token counts
    entropy: torch.Tensor | None = None  # full-vocabulary entropy of the current logits
    ref_log_prob: torch.Tensor | None = None  # frozen reference policy (KL term)


@dataclass
class LossTerms:
    """What a policy loss returns: the per-token loss and per-token diagnostics (0/1 or values)."""

    per_token: torch.Tensor  # [B, R]
    diagnostics: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> [B, R], token-mean'd


@dataclass(frozen=True)
class PolicyLoss:
    """A registered loss: its hyperparameter dataclass and the function."""

    options: type
    fn: Callable[[PolicyLossInputs, Any], LossTerms]


POLICY_LOSSES: Registry[PolicyLoss] = Registry("policy loss")


def register_loss(name: str, options: type):
    """Decorator: `@register_loss("grpo", GrpoLossOptions)` on fn(inputs, options) -> LossTerms."""

    def add(fn):
        POLICY_LOSSES.register(name)(PolicyLoss(options=options, fn=fn))
        return fn

    return add


def loss_options(name: str, values: Mapping[str, Any] | None) -> Any:
    """Build a loss's options dataclass from recipe values (unknown keys raise TypeError)."""
    return POLICY_LOSSES.get(name).options(**dict(values or {}))


@dataclass(frozen=True)
class GrpoLossOptions:
    """PPO-clip with dual clip, as GRPO uses it (ALGORITHMS.md §1.2)."""

    clip_ratio_low: float = 0.2
    """ε_low: the ratio is clipped below at 1 − ε_low."""
    clip_ratio_high: float = 0.2
    """ε_high: the ratio is clipped above at 1 + ε_high (DAPO's clip-higher uses 0.28)."""
    clip_ratio_c: float = 3.0
    """Dual-clip bound c (> 1): for A < 0 the loss is capped at −A·c."""

    def __post_init__(self) -> None:
        if not self.clip_ratio_c > 1.0:
            raise ValueError(f"clip_ratio_c must be > 1 (got {self.clip_ratio_c}): dual clip caps −A·ρ at −A·c")
        if self.clip_ratio_low < 0 or self.clip_ratio_high < 0:
            raise ValueError("clip_ratio_low and clip_ratio_high must be ≥ 0")


def ppo_clip_terms(inputs: PolicyLossInputs, options: GrpoLossOptions) -> LossTerms:
    """Per-token clipped surrogate; reused by losses that reweight or regularise it."""
    delta = torch.clamp(inputs.log_prob - inputs.old_log_prob, -20.0, 20.0)
    ratio = torch.exp(delta)
    advantages = inputs.advantages
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
            "ppo_kl": (inputs.old_log_prob - inputs.log_prob).detach(),
        },
    )


register_loss("grpo", GrpoLossOptions)(ppo_clip_terms)


def actor_loss(
    inputs: PolicyLossInputs, config: AlgorithmOptions, denominators: Denominators
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss of one micro-batch: pg − entropy_coeff·H + kl_coef·KL, each aggregated alike.

    The loss and every metric are this micro-batch's contribution to the mini-batch value
    (see `aggregate`): summing them over micro-batches and ranks gives the mini-batch number.
    """
    loss = POLICY_LOSSES.get(config.loss)
    terms = loss.fn(inputs, loss.options(**dict(config.loss_options or {})))
    mask, mode = inputs.response_mask, config.loss_agg_mode
    pg_loss = aggregate(terms.per_token, mask, mode, denominators)
    total = pg_loss
    metrics = {"pg_loss": float(pg_loss.detach())}
    for name, values in terms.diagnostics.items():
        metrics[name] = float(aggregate(values.detach().float(), mask, "token-mean", denominators))
    if inputs.entropy is not None:
        entropy = aggregate(inputs.entropy, mask, mode, denominators)
        metrics["entropy"] = float(aggregate(inputs.entropy.detach(), mask, "token-mean", denominators))
        if config.entropy_coeff != 0.0:
            total = total - config.entropy_coeff * entropy
    if config.kl_coef != 0.0:
        if inputs.ref_log_prob is None:
            raise ValueError("kl_coef > 0 needs ref_log_prob: the learner must keep a reference model")
        kl = aggregate(kl_penalty(inputs.log_prob, inputs.ref_log_prob, config.kl_type), mask, mode, denominators)
        total = total + config.kl_coef * kl
        metrics["kl_loss"] = float(kl.detach())
    metrics["loss"] = float(total.detach())
    return total, metrics
