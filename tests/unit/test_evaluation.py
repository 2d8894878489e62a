"""Held-out accuracy carries its standard error, and is printed with it."""

from __future__ import annotations

import math

import pytest

from rlkit.evaluation import accuracy_metrics, format_accuracy, standard_error
from rlkit.types import FinishReason, Prompt, Reward, RewardStatus, Sample, ScoredSample


def item(score: float, components: dict[str, float] | None = None) -> ScoredSample:
    sample = Sample("g", 0, 1, Prompt("p", "", [1], None), [2, 3], [1, 1], [-1.0, -1.0], 0, FinishReason.STOP, "")
    return ScoredSample(sample, Reward(score, RewardStatus.OK, components or {}))


def test_accuracy_has_the_binomial_standard_error() -> None:
    # 123 right of 300: p = 0.41, sqrt(0.41 · 0.59 / 300) = 0.028396…
    scored = [item(1.0)] * 123 + [item(0.0)] * 177
    metrics = accuracy_metrics(scored)
    assert metrics["eval/accuracy"] == pytest.approx(0.41)
    assert metrics["eval/accuracy_se"] == pytest.approx(math.sqrt(0.41 * 0.59 / 300), rel=1e-12)
    assert metrics["eval/num_prompts"] == 300
    assert format_accuracy(metrics) == "0.410 ± 0.028 (n=300)"


def test_the_standard_error_shrinks_with_more_problems() -> None:
    # The same 19 % on 100 and on 400 problems: a quarter of the variance, half the error.
    small = accuracy_metrics([item(1.0)] * 19 + [item(0.0)] * 81)
    large = accuracy_metrics([item(1.0)] * 76 + [item(0.0)] * 324)
    assert small["eval/accuracy"] == pytest.approx(large["eval/accuracy"])
    assert small["eval/accuracy_se"] == pytest.approx(2 * large["eval/accuracy_se"])
    assert format_accuracy(small) == "0.190 ± 0.039 (n=100)"


def test_all_right_or_all_wrong_has_no_spread_and_components_get_theirs() -> None:
    metrics = accuracy_metrics([item(1.0, {"correct": 1.0}), item(1.0, {"correct": 0.0})])
    assert metrics["eval/accuracy_se"] == 0.0
    assert metrics["eval/correct/mean"] == 0.5 and metrics["eval/correct/mean_se"] == pytest.approx(0.5 / math.sqrt(2))


def test_format_accuracy_leaves_out_what_the_metrics_lack() -> None:
    assert format_accuracy({"eval/accuracy": 0.41, "eval/num_prompts": 100.0}) == "0.410 (n=100)"  # an older run's row
    assert format_accuracy({"val/accuracy": 0.5, "val/accuracy_se": 0.1}, prefix="val") == "0.500 ± 0.100"
    assert format_accuracy({}) == "n/a"
    assert math.isnan(standard_error([]))


def test_the_progress_line_and_bar_show_the_error(capsys: pytest.CaptureFixture[str]) -> None:
    from rlkit.tracking.progress import Progress

    metrics = accuracy_metrics([item(1.0)] * 123 + [item(0.0)] * 177)
    Progress(total=3, enabled=False).held_out("before training", metrics)
    assert capsys.readouterr().err == "held-out accuracy before training: 0.410 ± 0.028 (n=300)\n"
    bar = Progress(total=3, enabled=True)
    bar.update({"reward/mean": 0.5, **metrics})  # a step with a held-out evaluation
    bar.close()
    assert "held_out=0.410 ± 0.028 (n=300)" in capsys.readouterr().err
