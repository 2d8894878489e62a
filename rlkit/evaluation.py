"""Held-out accuracy from greedily decoded, scored samples, with its standard error.

A held-out accuracy is a mean over n problems, so it carries sampling noise of about
sqrt(p(1−p)/n): ±5 points at n = 100 and p ≈ 0.3. Every accuracy is logged with that standard
error (`…_se`) and printed beside it, so two figures can be told apart from noise.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict

from rlkit.types import RewardStatus, ScoredSample


def standard_error(values: list[float]) -> float:
    """Standard error of the mean of `values`: sqrt(p(1−p)/n), the binomial one, for 0/1 scores.

    The population variance over n is used (not n − 1), which for 0/1 values is exactly
    p(1−p); for a shaped reward it is the same plug-in estimate of the mean's noise."""
    if not values:
        return float("nan")
    return math.sqrt(statistics.pvariance(values) / len(values))


def accuracy_metrics(scored: list[ScoredSample], prefix: str = "eval") -> dict[str, float]:
    """Mean reward (= accuracy for 0/1 rewards) and its standard error, each reward component's
    mean and standard error, failures and answer length of one evaluation. Components matter
    when the score is not an accuracy: a shaped reward (G-RA, RISE, Thoth) logs its `correct`
    or `outcome` part here too."""
    if not scored:
        return {}
    failed = sum(item.reward.status not in (RewardStatus.OK, RewardStatus.NOT_APPLICABLE) for item in scored)
    scores = [item.reward.score for item in scored]
    metrics = {
        f"{prefix}/accuracy": statistics.fmean(scores),
        f"{prefix}/accuracy_se": standard_error(scores),
        f"{prefix}/num_prompts": float(len(scored)),
        f"{prefix}/reward_failed": float(failed),
        f"{prefix}/response_length": statistics.fmean(item.sample.response_length for item in scored),
    }
    components: dict[str, list[float]] = defaultdict(list)
    for item in scored:
        for name, value in item.reward.components.items():
            components[name].append(value)
    for name, values in components.items():
        metrics[f"{prefix}/{name}/mean"] = statistics.fmean(values)
        metrics[f"{prefix}/{name}/mean_se"] = standard_error(values)
    return metrics


def format_accuracy(metrics: dict[str, float], prefix: str = "eval") -> str:
    """`0.410 ± 0.028 (n=300)`: an accuracy as it should be read, with its standard error and the
    number of problems behind it. Parts the metrics lack are left out (a run logged before the
    standard error existed prints `0.410 (n=100)`); no accuracy at all prints `n/a`."""
    accuracy = metrics.get(f"{prefix}/accuracy")
    if accuracy is None:
        return "n/a"
    text = f"{accuracy:.3f}"
    se = metrics.get(f"{prefix}/accuracy_se")
    if se is not None and math.isfinite(se):
        text += f" ± {se:.3f}"
    count = metrics.get(f"{prefix}/num_prompts")
    if count is not None:
        text += f" (n={int(count)})"
    return text
