"""rewards/math_answer.py: the final answer is found and compared by value, and it can never hang the pool."""

from __future__ import annotations

import threading
import time

import pytest

from rewards.math_answer import last_boxed, last_number, score
from rlkit.reward import RewardFnSpec, RewardRequest, ScoringPool
from rlkit.types import RewardStatus


@pytest.mark.parametrize(
    "response, ground_truth",
    [
        ("The sum is \\boxed{42}.", "42"),
        ("So $x = \\boxed{\\frac{1}{2}}$", "0.5"),
        ("so the answer is 17.", "17"),
        ("\\boxed{\\frac{\\sqrt{2}}{2}}", "\\frac{\\sqrt{2}}{2}"),
        ("First \\boxed{3}, no wait: \\boxed{5}", "5"),
        ("The balance is -1,234 dollars", "-1234"),
        ("They pay 1,234,567 in total", "1234567"),
        ("3 of 4 parts: 3/4", "0.75"),
        ("\\boxed{10^{3}}", "1000"),
        ("The option is \\boxed{B}", "B"),
    ],
)
def test_a_right_answer_scores_one(response: str, ground_truth: str) -> None:
    assert score(response=response, ground_truth=ground_truth)["score"] == 1.0


@pytest.mark.parametrize(
    "response, ground_truth",
    [
        ("The sum is \\boxed{41}.", "42"),
        ("First \\boxed{5}, no wait: \\boxed{3}", "5"),  # the last boxed answer counts
        ("\\boxed{}\\boxed{84}", "48"),
        ("I do not know", "7"),
        ("the answer is 1,234", "1.234"),
        ("x = -3", "3"),
    ],
)
def test_a_wrong_or_missing_answer_scores_zero(response: str, ground_truth: str) -> None:
    result = score(response=response, ground_truth=ground_truth)
    assert (result["score"], result["correct"]) == (0.0, 0.0)


def test_boxed_is_reported_but_not_paid() -> None:
    boxed_wrong = score(response="\\boxed{9}", ground_truth="8")
    plain_right = score(response="it is 8", ground_truth="8")

    assert (boxed_wrong["score"], boxed_wrong["boxed"]) == (0.0, 1.0)
    assert (plain_right["score"], plain_right["boxed"]) == (1.0, 0.0)


def test_no_ground_truth_means_not_applicable() -> None:
    assert score(response="\\boxed{1}", ground_truth=None) is None


def test_last_boxed_handles_nesting_and_ignores_an_unclosed_tail() -> None:
    assert last_boxed("\\boxed{\\frac{a}{b^{2}}}") == "\\frac{a}{b^{2}}"
    assert last_boxed("\\boxed{1} then \\boxed{2} and \\boxed{ cut off") == "2"
    assert last_boxed("no box here {}") is None


def test_last_number_reads_signs_decimals_fractions_and_separators() -> None:
    assert last_number("from 3 to -2.5") == "-2.5"
    assert last_number("about 12,345 people.") == "12345"
    assert last_number("ratio 7/8") == "7/8"
    assert last_number("step2 costs 10-3") == "3"  # a minus between numbers is subtraction
    assert last_number("none") is None


def test_it_also_works_outside_the_main_thread() -> None:
    results = []
    thread = threading.Thread(target=lambda: results.append(score(response="\\boxed{0.5}", ground_truth="\\frac12")))
    thread.start()
    thread.join()

    assert results == [{"score": 1.0, "correct": 1.0, "boxed": 1.0}]


def test_a_pathological_answer_cannot_hang_the_pool() -> None:
    timeout_s = 2.0
    items = [
        RewardRequest(prompt="", response="\\boxed{10^{10^{10}}}", ground_truth="5"),
        RewardRequest(prompt="", response="\\boxed{5}", ground_truth="5"),
    ]
    with ScoringPool(RewardFnSpec(module="rewards.math_answer:score"), timeout_s=timeout_s) as pool:
        start = time.monotonic()
        slow, normal = pool.score(items)
        elapsed = time.monotonic() - start

    assert slow.status in (RewardStatus.TIMEOUT, RewardStatus.OK)
    assert slow.score == 0.0
    assert (normal.status, normal.score) == (RewardStatus.OK, 1.0)
    assert elapsed < timeout_s + 3.0


PATHOLOGICAL = {
    "power tower": "\\boxed{10^{10^{10}}}",
    "factorial of a million": "\\boxed{1000000!}",
    "huge exponent": "\\boxed{2^{2^{64}}}",
    "5000 nested braces": "\\boxed{" + "{" * 5000 + "1" + "}" * 5000 + "}",
    "300 nested fractions": "\\boxed{" + "\\frac{1}{" * 300 + "1" + "}" * 300 + "}",
    "500 nested roots": "\\boxed{" + "\\sqrt{" * 500 + "2" + "}" * 500 + "}",
    "100k digits": "\\boxed{" + "9" * 100_000 + "}",
    "100k characters": "x" * 100_000,
    "1000 unclosed boxes": "\\boxed{" * 1000,
    "a NUL byte": "\\boxed{4\x002}",
    "plain power tower": "the answer is 9^9^9^9",
}


@pytest.mark.slow
def test_a_corpus_of_pathological_answers_scores_zero_or_times_out_and_never_errors() -> None:
    timeout_s = 3.0
    items = [RewardRequest(prompt="", response=text, ground_truth="42") for text in PATHOLOGICAL.values()]
    items += [RewardRequest(prompt="", response=text, ground_truth="42")
              for text in ("\\boxed{42}", "\\boxed{٤٢}", "\\boxed{４２}")]
    with ScoringPool(RewardFnSpec(module="rewards.math_answer:score"), num_processes=4, timeout_s=timeout_s) as pool:
        start = time.monotonic()
        rewards = pool.score(items)
        elapsed = time.monotonic() - start
    for name, reward in zip(PATHOLOGICAL, rewards):
        assert reward.status in (RewardStatus.OK, RewardStatus.TIMEOUT), f"{name}: {reward.status} {reward.error}"
        assert reward.score == 0.0, name
    # Control, then Arabic-Indic and full-width digits: read as the number 42 they are.
    assert [(r.status, r.score) for r in rewards[len(PATHOLOGICAL):]] == [(RewardStatus.OK, 1.0)] * 3
    assert elapsed < len(items) * timeout_s / 4 + 10  # timeouts in parallel, nothing waits longer


def test_strict_form_pays_only_a_correct_boxed_answer() -> None:
    from rewards.math_answer import score_boxed

    assert score_boxed(response="so \\boxed{42}", ground_truth="42")["score"] == 1.0
    unboxed = score_boxed(response="The answer is 42.", ground_truth="42")
    assert unboxed["score"] == 0.0 and unboxed["correct"] == 1.0 and unboxed["boxed"] == 0.0
    assert score_boxed(response="\\boxed{41}", ground_truth="42")["score"] == 0.0
    assert score_boxed(response="\\boxed{}\\boxed{42}", ground_truth="42")["score"] == 1.0
    assert score_boxed(response="x", ground_truth=None) is None
