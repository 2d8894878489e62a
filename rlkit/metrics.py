"""Batch statistics people watch: rewards, failures, lengths, group spread."""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict

from rlkit.types import FinishReason, RewardStatus, ScoredSample


def _pstdev(values: list[float]) -> float:
    """Population std that propagates NaN instead of raising (a NaN reward must show, not crash)."""
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))


def batch_metrics(batch: list[ScoredSample]) -> dict[str, float]:
    """Reward, reward-failure, length and group statistics of one training batch."""
    if not batch:
        return {}
    # Samples a reward does not apply to are counted, not averaged in (the learner skips them too).
    applicable = [item for item in batch if item.reward.status != RewardStatus.NOT_APPLICABLE]
    scores = [item.reward.score for item in applicable]
    lengths = [item.sample.response_length for item in batch]
    statuses = Counter(item.reward.status for item in batch)
    groups: dict[str, list[float]] = defaultdict(list)
    for item in applicable:
        groups[item.sample.group_uid].append(item.reward.score)
    versions = [item.sample.policy_version for item in batch]
    metrics = {
        "reward/failed_count": float(sum(n for s, n in statuses.items() if s not in (RewardStatus.OK, RewardStatus.NOT_APPLICABLE))),
        "response_length/mean": statistics.fmean(lengths),
        "response_length/max": float(max(lengths)),
        "response_length/truncated_frac": sum(i.sample.finish == FinishReason.LENGTH for i in batch) / len(batch),
        "rollout/policy_version_min": float(min(versions)),
        "rollout/policy_version_mean": statistics.fmean(versions),
        "rollout/samples": float(len(batch)),
    }
    if scores:
        metrics.update({
            "reward/mean": statistics.fmean(scores),
            "reward/std": _pstdev(scores),
            "reward/max": max(scores),
            "reward/min": min(scores),
            "reward/zero_std_group_frac": sum(len(set(v)) == 1 for v in groups.values()) / len(groups),
        })
    for status in RewardStatus:
        metrics[f"reward/status/{status.value}"] = float(statuses.get(status, 0))
    components: dict[str, list[float]] = defaultdict(list)
    for item in batch:
        for name, value in item.reward.components.items():
            components[name].append(value)
    for name, values in components.items():
        metrics[f"reward/{name}/mean"] = statistics.fmean(values)
    return metrics
