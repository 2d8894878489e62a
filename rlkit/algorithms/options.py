"""The `algorithm` section of a recipe: which estimator and loss, and the shared loss terms."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class AlgorithmOptions:
    """Advantage estimator, policy loss and the regularisers added to it."""

    advantage: str = "grpo"
    """Advantage estimator name (registry `advantages`; see docs/algorithms.md)."""
    advantage_options: dict[str, Any] = field(default_factory=dict)
    """Hyperparameters of the advantage estimator; each estimator declares its own (see docs/algorithms.md)."""
    loss: str = "grpo"
    """Policy loss name (registry `losses`; see docs/algorithms.md)."""
    loss_options: dict[str, Any] = field(default_factory=dict)
    """Hyperparameters of the policy loss; each loss declares its own (e.g. grpo: clip_ratio_low/high, clip_ratio_c)."""
    loss_agg_mode: str = "token-mean"
    """How per-token losses become one number: token-mean | seq-mean-token-sum | seq-mean-token-mean |
    seq-mean-token-sum-norm (Dr.GRPO)."""
    loss_scale_factor: float | None = None
    """The constant seq-mean-token-sum-norm divides by; None = the response budget rollout.sampling.max_new_tokens
    (verl: the padded response length)."""
    entropy_coeff: float = 0.0
    """Weight of the entropy bonus (subtracted from the loss); 0 turns it off."""
    kl_coef: float = 0.0
    """Weight of the KL-to-reference loss; 0 turns it off and no reference model is kept."""
    kl_type: str = "low_var_kl"
    """KL estimator: k1 | k2 | low_var_kl (k3) | abs, with a '+' suffix for straight-through (k2 gradient)."""
    regularizers: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Add-on loss terms by name with their options, e.g. {llds: {no_reduce_lambda: 0.2}}; each is a token-mean added to
    the loss."""
    seed: int = 0
    """Seed of the loss's own randomness (Clip-Cov's token choice), combined with the step and rank."""
    rollout_correction: str = "auto"
    """Importance weight against the rollout policy: tis (truncated: each token's loss × min(π_old/π_rollout,
    rollout_is_cap), constant) | none | auto (the trainer picks tis when sync.max_staleness ≥ 1, else none; outside a
    trainer auto is none)."""
    rollout_is_cap: float = 2.0
    """Upper bound C of the truncated importance weight (Yao et al. 2025 use 2)."""


ROLLOUT_CORRECTIONS = ("auto", "none", "tis")


def resolve_rollout_correction(options: AlgorithmOptions, max_staleness: int) -> AlgorithmOptions:
    """`auto` made concrete: correct stale samples (k ≥ 1), leave on-policy training as it is."""
    if options.rollout_correction != "auto":
        return options
    return dataclasses.replace(options, rollout_correction="tis" if max_staleness >= 1 else "none")
