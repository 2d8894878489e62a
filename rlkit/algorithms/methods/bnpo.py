"""BNPO: rewards normalised by an adaptive Beta law fitted to the batch's group success rates.

Xiao, Zhang, Cao, "BNPO: Beta Normalization Policy Optimization", arXiv 2506.02864;
official `recipe/bnpo/src/bnpo_ray_trainer.py::compute_bnpo_outcome_advantage` (ALGORITHMS.md §3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from rlkit.algorithms.advantages import ADVANTAGES, AdvantageInputs, AdvantageResult, broadcast, group_sum

MAX_WEIGHT = 1e6  # official clamp of 1 / Beta_pdf
SCALE_TOLERANCE = 1e-6  # float32 rewards at the bounds scale to 1 ± 1e-7
SINGLETON_RULES = ("exclude", "official")


@dataclass(frozen=True)
class BnpoOptions:
    """Hyperparameters of BNPO (ALGORITHMS.md §3)."""

    min_value: float = 0.0
    """Lowest possible reward; rewards are scaled to [0, 1] by (r − min)/(max − min) (official default 0)."""
    max_value: float = 1.0
    """Highest possible reward (official default 1)."""
    decompose: list[str] = field(default_factory=list)
    """Reward components (names the reward function returns) to normalise separately and average, as the official
    `use_advantage_decomposition` does for acc + format; empty = the total score."""
    singleton_groups: str = "exclude"
    """'exclude': a group of one sample gets advantage 0 and stays out of the Beta fit (spec register #7); 'official':
    its success rate is set to 0 and enters the fit, as the official code does."""

    def __post_init__(self) -> None:
        if not self.max_value > self.min_value:
            raise ValueError(f"max_value={self.max_value} must be > min_value={self.min_value}")
        if self.singleton_groups not in SINGLETON_RULES:
            raise ValueError(f"singleton_groups={self.singleton_groups!r}: valid are {', '.join(SINGLETON_RULES)}")


@dataclass
class BetaFit:
    """One normalisation: the scaled rewards, group rates, Beta fit, weights and advantages."""

    scaled: torch.Tensor  # [B]
    group_p: torch.Tensor  # [G]
    p_mean: float
    p_var: float
    a: float
    b: float
    alpha: float
    beta: float
    fallback: bool  # the fit was degenerate (v = 0, one group): α = β = 1
    weight: torch.Tensor  # [B]
    advantage: torch.Tensor  # [B]
    informative: torch.Tensor  # [B] bool, rows of groups with 0 < p < 1 that are normalised


def beta_pdf(p: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """Beta density with 0·log 0 = 0, so Beta_pdf(0; 1, β) = β and Beta_pdf(0; α>1, β) = 0."""
    log_norm = math.lgamma(alpha) + math.lgamma(beta) - math.lgamma(alpha + beta)
    log_pdf = torch.xlogy(torch.tensor(alpha - 1.0, dtype=p.dtype), p) + torch.xlogy(
        torch.tensor(beta - 1.0, dtype=p.dtype), 1.0 - p
    )
    return torch.exp(log_pdf - log_norm)


def fit(rewards: torch.Tensor, group_index: torch.Tensor, options: BnpoOptions) -> BetaFit:
    """BNPO advantage of one reward tensor [B] (float64)."""
    scaled = (rewards.to(torch.float64) - options.min_value) / (options.max_value - options.min_value)
    if not bool(torch.isfinite(scaled).all()):
        raise ValueError(
            "BNPO got a missing or non-finite reward (a reward component absent from some samples?); "
            "every sample needs a finite value for each normalised reward"
        )
    if bool(((scaled < -SCALE_TOLERANCE) | (scaled > 1 + SCALE_TOLERANCE)).any()):
        raise ValueError(
            f"BNPO needs rewards in [min_value, max_value] = [{options.min_value}, {options.max_value}]; got "
            f"{float(rewards.min())}..{float(rewards.max())}. Set algorithm.advantage_options.min_value/max_value"
        )
    scaled = scaled.clamp(0.0, 1.0)  # rounding of float32 rewards must not reach log(negative)
    size = group_sum(torch.ones_like(scaled), group_index)
    group_p = group_sum(scaled, group_index) / size
    singleton = size == 1
    group_p = torch.where(singleton, torch.zeros_like(group_p), group_p)  # official: a lone sample has p = 0
    fitted = group_p if options.singleton_groups == "official" else group_p[~singleton]
    if fitted.numel() > 1:
        m, v = float(fitted.mean()), float(fitted.var(unbiased=True))
    else:
        m, v = 0.0, 1.0  # official: one group
    a = b = float("nan")
    if v > 0 and math.isfinite(v):
        k = m * (1 - m) / v - 1
        a, b = k * m, k * (1 - m)
    fallback = fitted.numel() <= 1 or not (math.isfinite(a) and math.isfinite(b))
    # One group: the official m = 0, v = 1 also gives α = β = 1.
    alpha, beta = (1.0, 1.0) if fallback else (max(1 + a / 3, 1.0), max(1 + b / 3, 1.0))
    row_p = group_p[group_index]
    weight = torch.clamp(1.0 / beta_pdf(row_p, alpha, beta), 0.0, MAX_WEIGHT)
    advantage = weight * (scaled - row_p)
    informative = (row_p > 0) & (row_p < 1)
    if options.singleton_groups == "exclude":
        advantage = torch.where(singleton[group_index], torch.zeros_like(advantage), advantage)
        informative &= ~singleton[group_index]
    return BetaFit(scaled, group_p, m, v, a, b, alpha, beta, fallback, weight, advantage, informative)


@ADVANTAGES.add("bnpo", BnpoOptions)
def bnpo_advantage(inputs: AdvantageInputs, options: BnpoOptions) -> AdvantageResult:
    """w_g·(s − p_g) with w_g = 1/Beta_pdf(p_g; α, β) from the batch's group rates; with
    `decompose`, one fit per reward component and the mean of their advantages."""
    if options.decompose:
        missing = [name for name in options.decompose if name not in inputs.components]
        if missing:
            raise ValueError(
                f"BNPO decompose names reward components {missing} that the reward function did not return "
                f"(it returned: {sorted(inputs.components) or 'none'}); return them in its dict or drop them from decompose"
            )
        fits = {name: fit(inputs.components[name], inputs.group_index, options) for name in options.decompose}
    else:
        fits = {"score": fit(inputs.scores, inputs.group_index, options)}
    advantage = torch.stack([f.advantage for f in fits.values()]).mean(dim=0)
    metrics: dict[str, float] = {}
    for name, result in fits.items():
        prefix = "bnpo/" if len(fits) == 1 else f"bnpo/{name}/"
        metrics.update(
            {
                prefix + "alpha": result.alpha,
                prefix + "beta": result.beta,
                prefix + "fallback": float(result.fallback),
            }
        )
        if result.informative.any():  # all-equal groups get the 1e6 clamp but advantage 0: leave them out
            metrics[prefix + "weight_mean"] = float(result.weight[result.informative].mean())
    return AdvantageResult(broadcast(advantage, inputs.response_mask), metrics)
