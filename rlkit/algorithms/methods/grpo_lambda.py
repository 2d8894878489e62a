"""GRPO-λ: a length reward only for the batch's most accurate groups, then GRPO advantages.

Dai, Liu, Si, "Stable Reinforcement Learning for Efficient Reasoning", arXiv 2505.18086;
ALGORITHMS.md §2 (no official code; the rules below are the spec's resolved choices).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from rlkit.algorithms.advantages import (
    ADVANTAGES,
    AdvantageInputs,
    AdvantageResult,
    broadcast,
    group_count,
    group_normalise,
    group_sum,
)


@dataclass(frozen=True)
class GrpoLambdaOptions:
    """Hyperparameters of GRPO-λ (ALGORITHMS.md §2.2)."""

    alpha: float
    """Length-penalty strength α, required: the paper's value is not pinned (the third-party reproduction in
    ALGORITHMS.md §2.2 uses 0.6)."""
    top_lambda: float = 0.2
    """λ: the fraction of groups (by correctness ratio, top first) that get the length reward; ⌈λ·#groups⌉ groups (§2.2:
    the paper's 'top 20%')."""
    correct_threshold: float = 1.0
    """A response is correct when its score is ≥ this (1.0 for 0/1 rewards)."""
    norm_adv_by_std: bool = True
    """GRPO normalisation of the shaped reward: divide by the group's unbiased std."""
    epsilon: float = 1e-6
    """Added to the group std (verl, 1e-6)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.top_lambda <= 1.0:
            raise ValueError(f"top_lambda={self.top_lambda}: λ is a fraction of groups in [0, 1]")
        if self.alpha < 0:
            raise ValueError(f"alpha={self.alpha}: the length-penalty strength must be ≥ 0")


@dataclass
class GrpoLambdaDetails:
    """Every intermediate of the shaping, for metrics and tests."""

    correct: torch.Tensor  # [B] bool
    accuracy: torch.Tensor  # [G] correctness ratio per group
    ranked: list[int]  # group ids, most accurate first (stable)
    efficiency: list[int]  # the top ⌈λ·G⌉ groups
    correct_length_stats: dict[int, tuple[float, float]] = field(default_factory=dict)  # group -> (mean, pop std)
    z: torch.Tensor | None = None  # [B] z-score of the length, NaN where not shaped
    reward: torch.Tensor | None = None  # [B] shaped reward
    advantage: torch.Tensor | None = None  # [B] GRPO advantage of the shaped reward


def shape(scores: torch.Tensor, lengths: torch.Tensor, group_index: torch.Tensor,
          options: GrpoLambdaOptions) -> GrpoLambdaDetails:
    """The GRPO-λ reward and advantage per response (float64)."""
    correct = scores.to(torch.float64) >= options.correct_threshold
    groups = group_count(group_index)
    accuracy = group_sum(correct, group_index) / group_sum(torch.ones_like(scores), group_index)
    ranked = sorted(range(groups), key=lambda g: -float(accuracy[g]))  # sorted() is stable: ties keep batch order
    n_top = math.ceil(options.top_lambda * groups - 1e-9)
    efficiency = ranked[:n_top]
    lengths = lengths.to(torch.float64)
    reward = correct.to(torch.float64).clone()
    z = torch.full_like(reward, float("nan"))
    stats: dict[int, tuple[float, float]] = {}
    for group in range(groups):
        members = (group_index == group) & correct
        if not members.any():
            continue
        chosen = lengths[members]
        mean, std = float(chosen.mean()), float(chosen.std(unbiased=False))
        stats[group] = (mean, std)
        if group in efficiency:
            z[members] = (chosen - mean) / std if std > 0 else torch.zeros_like(chosen)
    shaped = torch.isin(group_index, torch.tensor(efficiency, dtype=group_index.dtype))
    length_reward = 1.0 - options.alpha * torch.sigmoid(torch.nan_to_num(z))
    reward = torch.where(shaped, torch.where(correct, length_reward, torch.zeros_like(reward)), reward)
    advantage = group_normalise(reward, group_index, options.norm_adv_by_std, options.epsilon)
    return GrpoLambdaDetails(correct, accuracy, ranked, efficiency, stats, z, reward, advantage)


@ADVANTAGES.add("grpo_lambda", GrpoLambdaOptions)
def grpo_lambda_advantage(inputs: AdvantageInputs, options: GrpoLambdaOptions) -> AdvantageResult:
    """GRPO advantages of the GRPO-λ reward; lengths are the responses' valid-token counts."""
    details = shape(inputs.scores, inputs.response_lengths, inputs.group_index, options)
    groups = max(group_count(inputs.group_index), 1)
    shaped = ~torch.isnan(details.z)
    metrics = {
        "grpo_lambda/efficiency_group_frac": len(details.efficiency) / groups,
        "grpo_lambda/correct_frac": float(details.correct.double().mean()) if details.correct.numel() else 0.0,
    }
    if shaped.any():  # only when a correct answer got the length reward
        metrics["grpo_lambda/length_reward_mean"] = float(details.reward[shaped].mean())
    return AdvantageResult(broadcast(details.advantage, inputs.response_mask), metrics)
