"""The learner's metric merge over micro-batch contributions, ranks and optimizer updates."""

from __future__ import annotations

import math

import pytest

from rlkit.learner.metrics_merge import merge_rank_metrics


def test_contributions_add_over_ranks_extremes_merge_and_updates_average() -> None:
    rank0 = [
        {"pg_loss": 0.25, "steer/weight_min": 0.9, "clip_cov/cov_max": 2.0, "skipped": 0.0, "grad_norm": 3.0},
        {"pg_loss": 0.5, "steer/weight_min": 0.7, "clip_cov/cov_max": float("nan"), "skipped": 1.0},
    ]
    rank1 = [
        {"pg_loss": 0.75, "steer/weight_min": 0.8, "clip_cov/cov_max": 1.0, "skipped": 0.0, "grad_norm": 3.0},
        {"pg_loss": 0.5, "steer/weight_min": 0.95, "clip_cov/cov_max": 4.0, "skipped": 1.0},
    ]
    metrics = merge_rank_metrics([(rank0, [10.0, 20.0, 1.0]), (rank1, [30.0, 20.0, 3.0])])
    assert metrics["actor/pg_loss"] == pytest.approx((1.0 + 1.0) / 2)  # summed over ranks, averaged over updates
    assert metrics["actor/steer/weight_min"] == 0.7  # the smallest anywhere
    assert metrics["actor/clip_cov/cov_max"] == 4.0  # NaN (no valid token) ignored
    assert metrics["actor/grad_norm"] == 3.0  # only from updates that were applied
    assert metrics["actor/skipped_steps"] == 1.0
    assert metrics["entropy/mean"] == pytest.approx(40.0 / 40.0)
    assert metrics["actor/rollout_logprob_diff"] == pytest.approx(4.0 / 40.0)


def test_no_tokens_gives_nan_entropy_not_a_crash() -> None:
    metrics = merge_rank_metrics([([{"pg_loss": 0.0, "skipped": 0.0, "grad_norm": 0.0}], [0.0, 0.0, 0.0])])
    assert math.isnan(metrics["entropy/mean"])
