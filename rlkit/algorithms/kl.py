"""KL estimators between the current policy and a reference, per token (ALGORITHMS.md §1.3).

With d = log_prob − ref_log_prob. Every estimator is registered under its verl name and its
k-name; a '+' suffix gives the straight-through variant (the named estimator's value with the
k2 gradient), registered for each base estimator.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from rlkit.registry import Registry

Estimator = Callable[[torch.Tensor], torch.Tensor]
KL_ESTIMATORS: Registry[Estimator] = Registry("KL estimator")


def _k1(diff: torch.Tensor) -> torch.Tensor:
    return diff


def _abs(diff: torch.Tensor) -> torch.Tensor:
    return diff.abs()


def _k2(diff: torch.Tensor) -> torch.Tensor:
    return 0.5 * diff.square()


def _k3(diff: torch.Tensor) -> torch.Tensor:
    kappa = torch.clamp(-diff, -20.0, 20.0)
    return torch.clamp(torch.exp(kappa) - kappa - 1.0, -10.0, 10.0)


def _straight_through(value: Estimator) -> Estimator:
    def estimate(diff: torch.Tensor) -> torch.Tensor:
        k2 = _k2(diff)
        return k2 - k2.detach() + value(diff).detach()

    return estimate


for _names, _fn in ((("kl", "k1"), _k1), (("abs",), _abs), (("mse", "k2"), _k2), (("low_var_kl", "k3"), _k3)):
    for _name in _names:
        KL_ESTIMATORS.register(_name)(_fn)
        KL_ESTIMATORS.register(_name + "+")(_straight_through(_fn))



def kl_penalty(log_prob: torch.Tensor, ref_log_prob: torch.Tensor, kl_type: str) -> torch.Tensor:
    """Per-token KL estimate of type `kl_type` (any name in KL_ESTIMATORS)."""
    return KL_ESTIMATORS.get(kl_type)(log_prob - ref_log_prob)
