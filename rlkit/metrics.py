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
    # Only scores that were computed are averaged: a sample a reward does not apply to, or whose
    # scoring failed, is counted by status, never averaged in as a silent 0.
    applicable = [item for item in batch if item.reward.status == RewardStatus.OK]
    scores = [item.reward.score for item in applicable]
    lengths = [item.sample.response_length for item in batch]
    statuses = Counter(item.reward.status for item in batch)
    groups: dict[str, list[float]] = defaultdict(list)
    for item in applicable:
        groups[item.sample.group_uid].append(item.reward.score)
    versions = [item.sample.policy_version for item in batch]
    metrics = {
        "reward/failed_count": float(sum(n for s, n in statuses.items()
                                         if s not in (RewardStatus.OK, RewardStatus.NOT_APPLICABLE))),
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


def step_metrics(step: int, learner: dict[str, float], counters: dict[str, float], *, samples: int,
                 step_s: float, wait_s: float, sync_s: float, elapsed_s: float) -> dict[str, float]:
    """One step's row of metrics.jsonl: what the learner reported (its loss terms and the batch's
    statistics), what the workers counted since the last step, and the step's timings.

    Staleness is counted against the weights the step trains (version step − 1).
    """
    metrics = {**learner, **counters}
    if counters.get("timing/rollout_generate_s"):
        metrics["throughput/generate_tokens_per_s"] = counters["rollout/generated_tokens"] / counters["timing/rollout_generate_s"]
    if "rollout/policy_version_min" in metrics:
        metrics["rollout/staleness/max"] = step - 1 - metrics["rollout/policy_version_min"]
        metrics["rollout/staleness/mean"] = step - 1 - metrics["rollout/policy_version_mean"]
    metrics.update({
        "policy_version": step,
        "timing/step_s": step_s, "timing/wait_batch_s": wait_s, "timing/sync_s": sync_s,
        "throughput/samples_per_s": samples / step_s,
        "throughput/elapsed_s": elapsed_s,
    })
    return metrics
