"""Merging the learner's metrics over micro-batches, ranks and optimizer updates.

Loss metrics are each micro-batch's contribution to its mini-batch value, so they add across
micro-batches and ranks; names ending in _min / _max are extremes and merge by min / max.
Over the step's updates, contributions are averaged and extremes stay extremes.
"""

from __future__ import annotations

from typing import Any

from rlkit.algorithms.losses import merge_metric

RANK_INVARIANT = ("skipped", "grad_norm")  # the same on every rank


def _is_extreme(name: str) -> bool:
    return name.endswith("_min") or name.endswith("_max")


def merge_rank_metrics(gathered: list[tuple[list[dict[str, float]], list[float]]]) -> dict[str, float]:
    """One step's metrics from every rank's (per-update metrics, [Σ mask, Σ mask·H, Σ mask·|ℓ_old − ℓ_rollout|])."""
    updates = gathered[0][0]
    merged: dict[str, float] = {}
    counts: dict[str, int] = {}
    for index in range(len(updates)):
        per_update: dict[str, float] = {}
        for rank_updates, _ in gathered:
            for name, value in rank_updates[index].items():
                if name in RANK_INVARIANT or name not in per_update:
                    per_update[name] = value
                else:
                    per_update[name] = merge_metric(name, per_update[name], value)
        for name, value in per_update.items():
            if name == "skipped" or (name == "grad_norm" and per_update["skipped"]):
                continue
            if _is_extreme(name):  # the extreme over all updates, not their mean
                merged[name] = merge_metric(name, merged[name], value) if name in merged else value
                counts[name] = 1
                continue
            merged[name] = merged.get(name, 0.0) + value
            counts[name] = counts.get(name, 0) + 1
    metrics: dict[str, Any] = {f"actor/{name}": value / counts[name] for name, value in merged.items()}
    metrics["actor/skipped_steps"] = float(sum(update["skipped"] for update in updates))
    tokens, entropy, rollout_diff = (sum(sums[i] for _, sums in gathered) for i in range(3))
    metrics["entropy/mean"] = entropy / tokens if tokens > 0 else float("nan")
    # Learner vs rollout engine on the same tokens and weights: should be ~0 when on-policy.
    metrics["actor/rollout_logprob_diff"] = rollout_diff / tokens if tokens > 0 else float("nan")
    return metrics
