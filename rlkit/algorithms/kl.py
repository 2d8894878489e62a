"""KL estimators between the current policy and a reference, per token (ALGORITHMS.md §1.3)."""

from __future__ import annotations

import torch

KL_TYPES = ("kl", "k1", "abs", "mse", "k2", "low_var_kl", "k3", "k1+", "k2+", "k3+", "low_var_kl+")


def kl_penalty(log_prob: torch.Tensor, ref_log_prob: torch.Tensor, kl_type: str) -> torch.Tensor:
    """Per-token KL estimate with d = log_prob − ref_log_prob. A '+' suffix is straight-through:
    the named estimator's value with the k2 gradient."""
    if kl_type.endswith("+"):
        value = kl_penalty(log_prob, ref_log_prob, kl_type[:-1])
        k2 = kl_penalty(log_prob, ref_log_prob, "k2")
        return k2 - k2.detach() + value.detach()
    diff = log_prob - ref_log_prob
    if kl_type in ("kl", "k1"):
        return diff
    if kl_type == "abs":
        return diff.abs()
    if kl_type in ("mse", "k2"):
        return 0.5 * diff.square()
    if kl_type in ("low_var_kl", "k3"):
        kappa = torch.clamp(-diff, -20.0, 20.0)
        return torch.clamp(torch.exp(kappa) - kappa - 1.0, -10.0, 10.0)
    raise ValueError(f"unknown kl_type {kl_type!r}; valid: {', '.join(KL_TYPES)}")
