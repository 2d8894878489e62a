"""Held-out accuracy from greedily decoded, scored samples."""

from __future__ import annotations

import statistics

from rlkit.types import RewardStatus, ScoredSample


def accuracy_metrics(scored: list[ScoredSample], prefix: str = "eval") -> dict[str, float]:
    """Mean reward (= accuracy for 0/1 rewards), failures and answer length of one evaluation."""
    if not scored:
        return {}
    failed = sum(item.reward.status not in (RewardStatus.OK, RewardStatus.NOT_APPLICABLE) for item in scored)
    return {
        f"{prefix}/accuracy": statistics.fmean(item.reward.score for item in scored),
        f"{prefix}/num_prompts": float(len(scored)),
        f"{prefix}/reward_failed": float(failed),
        f"{prefix}/response_length": statistics.fmean(item.sample.response_length for item in scored),
    }
