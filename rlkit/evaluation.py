"""Held-out accuracy from greedily decoded, scored samples."""

from __future__ import annotations

import statistics
from collections import defaultdict

from rlkit.types import RewardStatus, ScoredSample


def accuracy_metrics(scored: list[ScoredSample], prefix: str = "eval") -> dict[str, float]:
    """Mean reward (= accuracy for 0/1 rewards), each reward component's mean, failures and
    answer length of one evaluation. Components matter when the score is not an accuracy: a
    shaped reward (G-RA, RISE, Thoth) logs its `correct` or `outcome` part here too."""
    if not scored:
        return {}
    failed = sum(item.reward.status not in (RewardStatus.OK, RewardStatus.NOT_APPLICABLE) for item in scored)
    metrics = {
        f"{prefix}/accuracy": statistics.fmean(item.reward.score for item in scored),
        f"{prefix}/num_prompts": float(len(scored)),
        f"{prefix}/reward_failed": float(failed),
        f"{prefix}/response_length": statistics.fmean(item.sample.response_length for item in scored),
    }
    components: dict[str, list[float]] = defaultdict(list)
    for item in scored:
        for name, value in item.reward.components.items():
            components[name].append(value)
    metrics.update({f"{prefix}/{name}/mean": statistics.fmean(values) for name, values in components.items()})
    return metrics
