"""Policy losses, add-on regularisers, and the total actor loss.

A policy loss maps per-token inputs to a per-token loss plus diagnostics; aggregation
(token-mean etc.), the entropy bonus, the KL-to-reference term and any registered regularisers
are applied once, here, so every loss gets them the same way. The learner never asks which
method is active. Losses and regularisers live in `rlkit/algorithms/methods/`, one file each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from collections.abc import Callable

import torch

from rlkit.algorithms.aggregation import Denominators, aggregate
from rlkit.algorithms.components import ComponentRegistry
from rlkit.algorithms.kl import kl_penalty
from rlkit.algorithms.options import AlgorithmOptions


@dataclass(frozen=True)
class PolicyLossInputs:
    """Per-token tensors of one micro-batch, all [B, R]. Masked positions may hold anything."""

    log_prob: torch.Tensor  # current policy; carries the gradient
    old_log_prob: torch.Tensor  # policy that the ratio is taken against (constant)
    advantages: torch.Tensor  # constant
    response_mask: torch.Tensor  # 1 = token counts
    entropy: torch.Tensor | None = None  # full-vocabulary entropy of the current logits
    ref_log_prob: torch.Tensor | None = None  # frozen reference policy (KL term)
    old_entropy: torch.Tensor | None = None  # entropy of the old policy (STEER), constant
    step_ids: torch.Tensor | None = None  # long, step index within the response, −1 masked (LLDS)
    answer_mask: torch.Tensor | None = None  # 0 = non-answer token (LLDS mask_answer)
    generator: torch.Generator | None = None  # randomness of the loss (Clip-Cov's token choice)
    rollout_log_prob: torch.Tensor | None = None  # the engine's, as sampled (rollout correction)

    @property
    def valid(self) -> torch.Tensor:
        """Boolean mask of the tokens that count."""
        return self.response_mask > 0


@dataclass
class LossTerms:
    """What a policy loss or regulariser returns for one micro-batch."""

    per_token: torch.Tensor  # [B, R]; aggregated by the caller
    diagnostics: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> [B, R], logged as a token-mean
    stats: dict[str, float] = field(default_factory=dict)  # scalars; *_min / *_max merge by min / max, others add


POLICY_LOSSES = ComponentRegistry("policy loss")
REGULARIZERS = ComponentRegistry("regularizer")


def masked_log_ratio(inputs: PolicyLossInputs) -> torch.Tensor:
    """ℓ − ℓ_old on valid tokens and 0 elsewhere, so junk at masked positions cannot reach
    an exp() or a gradient."""
    difference = inputs.log_prob - inputs.old_log_prob
    return torch.where(inputs.valid, difference, torch.zeros_like(difference))


def masked_mean(values: torch.Tensor, valid: torch.Tensor, epsilon: float = 0.0) -> torch.Tensor:
    """Mean of `values` over the valid positions of this micro-batch (0 if there are none)."""
    weights = valid.to(values.dtype)
    total = torch.where(valid, values, torch.zeros_like(values)).sum()
    count = weights.sum()
    if epsilon:
        return total / (count + epsilon)
    return total / count if count > 0 else total * 0.0


def truncated_is_weight(inputs: PolicyLossInputs, cap: float) -> LossTerms:
    """min(π_old/π_rollout, cap) per valid token (1 elsewhere), constant, with its statistics.

    It makes the loss of samples drawn by an older rollout policy (async training, or an engine
    whose numerics differ from the learner's) an estimate for the policy the ratio is taken
    against; truncation bounds its variance (Yao et al. 2025, "truncated importance sampling")."""
    if inputs.rollout_log_prob is None:
        raise ValueError("rollout_correction=tis needs the rollout log-probs (PolicyLossInputs.rollout_log_prob)")
    valid = inputs.valid
    difference = torch.where(valid, inputs.old_log_prob - inputs.rollout_log_prob, torch.zeros_like(inputs.old_log_prob))
    raw = torch.exp(difference.clamp(max=math.log(cap) + 1.0)).detach()  # past the cap it is cut anyway
    weight = raw.clamp(max=cap)
    return LossTerms(
        per_token=weight,
        diagnostics={"mean": weight, "clipfrac": (raw > cap).to(weight.dtype)},
        stats={"weight_min": masked_extreme(weight, valid, torch.min), "weight_max": masked_extreme(weight, valid, torch.max)},
    )


def masked_extreme(values: torch.Tensor, valid: torch.Tensor, reduce: Callable[[torch.Tensor], torch.Tensor]) -> float:
    """min or max of `values` over valid positions; NaN when there are none (merged as unknown)."""
    chosen = values[valid]
    return float(reduce(chosen)) if chosen.numel() else float("nan")


def actor_loss(
    inputs: PolicyLossInputs, config: AlgorithmOptions, denominators: Denominators
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss of one micro-batch: pg − entropy_coeff·H + kl_coef·KL + Σ regularisers.

    The loss and every additive metric are this micro-batch's contribution to the mini-batch
    value (see `aggregate`): summing them over micro-batches and ranks gives the mini-batch
    number. Metrics ending in _min / _max are extremes of this micro-batch.
    """
    loss = POLICY_LOSSES.get(config.loss)
    terms = loss.fn(inputs, loss.build_options(config.loss_options))
    mask, mode = inputs.response_mask, config.loss_agg_mode
    correction = None
    if config.rollout_correction == "tis":  # off-policy correction of whichever loss is active
        correction = truncated_is_weight(inputs, config.rollout_is_cap)
        terms.per_token = terms.per_token * correction.per_token
    pg_loss = aggregate(terms.per_token, mask, mode, denominators)
    total = pg_loss
    metrics = {"pg_loss": float(pg_loss.detach())}
    metrics.update(_term_metrics(terms, mask, denominators, prefix=""))
    if correction is not None:
        metrics.update(_term_metrics(correction, mask, denominators, prefix="rollout_is/"))
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
    for name, values in (config.regularizers or {}).items():
        regularizer = REGULARIZERS.get(name)
        extra = regularizer.fn(inputs, regularizer.build_options(values))
        value = aggregate(extra.per_token, mask, "token-mean", denominators)
        total = total + value
        metrics[f"{name}/loss"] = float(value.detach())
        metrics.update(_term_metrics(extra, mask, denominators, prefix=f"{name}/"))
    metrics["loss"] = float(total.detach())
    return total, metrics


def _term_metrics(terms: LossTerms, mask: torch.Tensor, denominators: Denominators, prefix: str) -> dict[str, float]:
    metrics = {
        prefix + name: float(aggregate(values.detach().to(mask.dtype), mask, "token-mean", denominators))
        for name, values in terms.diagnostics.items()
    }
    metrics.update({prefix + name: float(value) for name, value in terms.stats.items()})
    return metrics


def merge_metric(name: str, left: float, right: float) -> float:
    """Combine one metric of two micro-batches or ranks: extremes by min/max (ignoring NaN =
    no valid token), everything else by addition (they are contributions)."""
    if name.endswith("_min") or name.endswith("_max"):
        values = [value for value in (left, right) if value == value]
        if not values:
            return float("nan")
        return min(values) if name.endswith("_min") else max(values)
    return left + right
