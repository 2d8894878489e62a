"""RISE batches train mixed: verification groups are spread over the mini-batches, the
mini-batch check counts them, and ratings are compared as math (ALGORITHMS.md §9.3, §9.4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rewards.rise import score
from rlkit.config import ConfigError, load_config
from rlkit.learner.inputs import interleave_sources
from rlkit.rise import CORRECT, NO_ANSWER, VERIFICATION_SOURCE, WRONG
from rlkit.types import FinishReason, Prompt, Reward, RewardStatus, Sample, ScoredSample

REPO = Path(__file__).parents[2]
TINY = str(REPO / "recipes" / "tiny_cpu.yaml")


# ---------------------------------------------------------------- ratings


@pytest.mark.parametrize("rating, expected, value", [
    ("-\\frac12", "-0.5", CORRECT),
    ("-\\frac{1}{2}", "-0.5", CORRECT),
    ("\\frac{-1}{2}", "-0.5", CORRECT),
    ("-1/2", "-0.5", CORRECT),
    ("-0.50", "-0.5", CORRECT),
    ("1", "1.0", CORRECT),
    ("+1", "1.0", CORRECT),
    ("-1", "-1.0", CORRECT),
    ("0.5", "-0.5", WRONG),
    ("-1", "-0.5", WRONG),
    ("\\text{correct}", "1.0", WRONG),
])
def test_a_rating_is_compared_as_math(rating: str, expected: str, value: float) -> None:
    response = f"The solution checks out as far as it goes. Rating: \\boxed{{{rating}}}"
    result = score(response=response, ground_truth=expected, data_source=VERIFICATION_SOURCE)
    assert result is not None and result["score"] == value


def test_a_verification_without_a_boxed_rating_gets_the_lowest_score() -> None:
    result = score(response="It is correct.", ground_truth="1.0", data_source=VERIFICATION_SOURCE)
    assert result is not None and result["score"] == NO_ANSWER


# ---------------------------------------------------------------- interleaving


def group(uid: str, source: str, size: int = 4) -> list[ScoredSample]:
    prompt = Prompt(uid=uid, text="", prompt_ids=[1, 2], ground_truth=None, data_source=source)
    return [ScoredSample(Sample(uid, k, size, prompt, [3], [1], [-1.0], 0, FinishReason.STOP, ""),
                         Reward(score=float(k % 2), status=RewardStatus.OK)) for k in range(size)]


def rise_batch(solutions: int, verifications: int) -> list[ScoredSample]:
    """As the trainer builds it: the solution groups, then the verification groups appended."""
    items = [row for g in range(solutions) for row in group(f"s{g}", "math")]
    return items + [row for g in range(verifications) for row in group(f"v{g}", VERIFICATION_SOURCE)]


def slices(items: list[ScoredSample], parts: int) -> list[list[ScoredSample]]:
    bounds = [round(k * len(items) / parts) for k in range(parts + 1)]  # plan_mini_batches' bounds
    return [items[a:b] for a, b in zip(bounds, bounds[1:])]


def verification_rows(part: list[ScoredSample]) -> int:
    return sum(item.sample.prompt.data_source == VERIFICATION_SOURCE for item in part)


@pytest.mark.parametrize("step", range(20))
@pytest.mark.parametrize("solutions, verifications, parts", [(8, 4, 4), (4, 2, 2), (6, 3, 3)])
def test_every_mini_batch_gets_its_share_of_verifications(step: int, solutions: int, verifications: int, parts: int) -> None:
    items = rise_batch(solutions, verifications)
    assert verification_rows(slices(items, parts)[0]) == 0  # contiguous: the first update is solutions only
    mixed = interleave_sources(items, seed=3, step=step)
    share = 4 * verifications // parts  # equal groups: exactly one n-th of the verification rows each
    assert [verification_rows(part) for part in slices(mixed, parts)] == [share] * parts


def test_groups_stay_whole_and_in_order_and_nothing_is_lost() -> None:
    items = rise_batch(5, 3)
    mixed = interleave_sources(items, seed=0, step=1)
    assert sorted(id(item) for item in mixed) == sorted(id(item) for item in items)
    starts = [k for k, item in enumerate(mixed) if k == 0 or mixed[k - 1].sample.group_uid != item.sample.group_uid]
    assert len(starts) == 8
    for start in starts:
        assert [item.sample.index_in_group for item in mixed[start : start + 4]] == [0, 1, 2, 3]


def test_the_order_is_seeded_by_seed_and_step() -> None:
    items = rise_batch(8, 4)

    def order(seed: int, step: int) -> list[str]:
        return [item.sample.group_uid for item in interleave_sources(items, seed, step)]

    assert order(1, 5) == order(1, 5)  # every rank, and a rerun, computes the same
    assert len({tuple(order(1, step)) for step in range(10)}) > 5
    assert order(1, 5) != order(2, 5)


def test_a_batch_of_one_source_keeps_its_order() -> None:
    items = rise_batch(5, 0)
    assert interleave_sources(items, seed=0, step=0) == items


# ---------------------------------------------------------------- the mini-batch check


def batching_problems(*overrides: str) -> list[str]:
    try:
        load_config(TINY, [*overrides, "rise.max_prompt_tokens=100"])
    except ConfigError as error:
        return [problem for problem in error.problems if "does not divide" in problem]
    return []


def test_the_mini_batch_check_counts_the_verification_rows(monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    # tiny: 4 prompts × n 4 = 16 solutions, plus 2 critique prompts × 4 = 8 verifications.
    assert batching_problems("rise.enable=true", "rise.critique_batch_size=2", "learner.mini_batches=3") == []
    (problem,) = batching_problems("rise.enable=true", "rise.critique_batch_size=2", "learner.mini_batches=16")
    assert "batch of 24 samples" in problem and "rise.critique_batch_size" in problem
    assert batching_problems("learner.mini_batches=16") == []  # without RISE the batch is 16
