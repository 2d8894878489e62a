"""math-verify's own timeouts fit inside the per-sample budget (reward.timeout_s): a slow answer
is scored as not matching, not killed as a `timeout` (which the learner would leave out)."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from rewards.math_answer import ALARMS_PER_MATCH, MATH_VERIFY_SHARE, math_verify_timeouts
from rlkit.reward import RewardFnSpec, RewardRequest, ScoringPool
from rlkit.reward.contract import TIME_BUDGET_ENV, time_budget_s
from rlkit.types import RewardStatus


@pytest.mark.parametrize("budget", [1.0, 3.0, 3.75, 4.0, 5.0, 7.5, 10.0, 30.0, 600.0])
def test_the_alarms_of_one_match_end_inside_the_budget(budget: float) -> None:
    parsing, verifying = math_verify_timeouts(budget)
    if parsing is None:
        assert verifying is None and MATH_VERIFY_SHARE * budget < ALARMS_PER_MATCH  # not even 1 s each fits
    else:
        assert parsing >= 1 and verifying >= 1
        assert 2 * parsing + verifying <= MATH_VERIFY_SHARE * budget < budget


def test_the_default_budget_gives_two_seconds_each() -> None:
    assert math_verify_timeouts(10.0) == (2, 2)  # was 5 s + 5 s (+ 5 s) inside 10 s


def test_the_budget_is_read_from_the_scoring_process(monkeypatch) -> None:
    monkeypatch.delenv(TIME_BUDGET_ENV, raising=False)
    assert time_budget_s(10.0) == 10.0
    for value, expected in (("4.5", 4.5), ("nan", 10.0), ("-1", 10.0), ("soon", 10.0)):
        monkeypatch.setenv(TIME_BUDGET_ENV, value)
        assert time_budget_s(10.0) == expected


def test_a_pool_publishes_its_timeout_to_the_function(tmp_path: Path) -> None:
    path = tmp_path / "budget.py"
    path.write_text(textwrap.dedent("""
        from rlkit.reward.contract import time_budget_s

        def score(*, response, **kwargs):
            return time_budget_s(-1.0)
    """))
    with ScoringPool(RewardFnSpec(path=str(path), name="score"), timeout_s=7.25) as pool:
        assert [reward.score for reward in pool.score([RewardRequest(prompt="", response="x")])] == [7.25]


def test_a_slow_answer_is_scored_inside_the_budget_not_timed_out() -> None:
    """sympy cannot compare 10^(10^10) with 42 in time; math-verify gives up after its 1 s alarm
    (5 s budget) and the answer scores 0, where 5 s + 5 s alarms ran into the pool's kill."""
    timeout_s = 5.0
    items = [RewardRequest(prompt="", response="\\boxed{10^{10^{10}}}", ground_truth="42"),
             RewardRequest(prompt="", response="\\boxed{42}", ground_truth="42")]
    with ScoringPool(RewardFnSpec(module="rewards.math_answer:score"), timeout_s=timeout_s) as pool:
        start = time.monotonic()
        slow, normal = pool.score(items)
        elapsed = time.monotonic() - start
    assert (slow.status, slow.score) == (RewardStatus.OK, 0.0), slow.error
    assert slow.seconds <= MATH_VERIFY_SHARE * timeout_s
    assert (normal.status, normal.score) == (RewardStatus.OK, 1.0)
    assert elapsed < timeout_s
