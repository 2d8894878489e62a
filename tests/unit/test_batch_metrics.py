"""Batch reward statistics: failures and samples a reward does not apply to are counted by status
and left out of the averages (the learner leaves them out of the loss too)."""

from __future__ import annotations

import pytest

from rlkit.metrics import batch_metrics
from rlkit.types import FinishReason, Prompt, Reward, RewardStatus, Sample, ScoredSample


def item(group: str, score: float, status: RewardStatus = RewardStatus.OK, components: dict | None = None) -> ScoredSample:
    sample = Sample(group, 0, 2, Prompt("p", "", [1], None), [2, 3], [1, 1], [-1.0, -1.0], 0, FinishReason.STOP, "")
    return ScoredSample(sample, Reward(score, status, components or {}))


def test_failed_and_not_applicable_samples_are_counted_but_not_averaged() -> None:
    metrics = batch_metrics([
        item("a", 1.0, components={"correct": 1.0}), item("a", 0.0, components={"correct": 0.0}),
        item("b", 0.0, RewardStatus.NOT_APPLICABLE), item("b", 0.0, RewardStatus.ERROR),
    ])
    assert metrics["reward/mean"] == pytest.approx(1 / 2)  # neither the error's 0 nor the N/A counts
    assert metrics["reward/min"] == 0.0 and metrics["reward/max"] == 1.0
    assert metrics["reward/status/not_applicable"] == 1 and metrics["reward/failed_count"] == 1
    assert metrics["reward/zero_std_group_frac"] == 0.0  # group b has no computed score: not a group here
    assert metrics["reward/correct/mean"] == 0.5 and metrics["rollout/samples"] == 4


def test_a_batch_nothing_applies_to_has_no_reward_average() -> None:
    metrics = batch_metrics([item("a", 0.0, RewardStatus.NOT_APPLICABLE)])
    assert "reward/mean" not in metrics and metrics["reward/status/not_applicable"] == 1


def test_evaluation_reports_each_reward_component() -> None:
    from rlkit.evaluation import accuracy_metrics

    metrics = accuracy_metrics([item("a", 1.3, components={"outcome": 1.0}), item("b", 0.0, components={"outcome": 0.0})])
    assert metrics["eval/accuracy"] == pytest.approx(0.65)  # a shaped return, not an accuracy
    assert metrics["eval/outcome/mean"] == 0.5  # the component that is one
