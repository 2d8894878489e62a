"""RISE: choosing solutions to verify, building critique prompts, and the reward for both kinds
of trajectory (ALGORITHMS.md §9)."""

from __future__ import annotations

import dataclasses
import random

import pytest

from rewards.rise import score
from rlkit import rise
from rlkit.models import build_tiny_tokenizer
from rlkit.types import FinishReason, Prompt, Reward, RewardStatus, Sample, ScoredSample

TOKENIZER = build_tiny_tokenizer()


def scored(group: str, index: int, value: float, response: str = "2+2 is \\boxed{4}") -> ScoredSample:
    prompt = Prompt(uid=group, text="<templated>", prompt_ids=[1, 2], ground_truth="4", user_text="What is 2+2?")
    sample = Sample(group, index, 4, prompt, [3], [1], [-1.0], 0, FinishReason.STOP, response)
    return ScoredSample(sample, Reward(score=value, status=RewardStatus.OK))


def test_downsample_spreads_over_groups_as_the_official_code() -> None:
    groups = [[scored(f"g{g}", i, 1.0) for i in range(4)] for g in range(3)]
    chosen = rise.downsample(groups, 4, random.Random(0))
    assert [item.sample.group_uid for item in chosen] == ["g0", "g0", "g1", "g2"]  # base 1, the first gets the extra
    assert len({(item.sample.group_uid, item.sample.index_in_group) for item in chosen}) == 4  # no repeats
    assert len(rise.downsample(groups, 30, random.Random(0))) == 12  # never more than a group holds


def test_verification_prompt_carries_the_verifiers_score_and_quotes_the_question() -> None:
    config = rise.RiseConfig(enable=True, max_prompt_tokens=2000)
    prompt = rise.verification_prompt(scored("g0", 0, -0.5), TOKENIZER, config, "rise1-0")
    assert prompt.ground_truth == "-0.5" and prompt.data_source == rise.VERIFICATION_SOURCE
    assert "What is 2+2?" in prompt.text and "\\boxed{4}" in prompt.text and "<templated>" not in prompt.text
    assert prompt.prompt_ids == TOKENIZER(prompt.text, add_special_tokens=False)["input_ids"]


def test_a_long_solution_is_cut_to_fit_the_prompt_limit() -> None:
    config = rise.RiseConfig(enable=True, max_prompt_tokens=700)
    prompt = rise.verification_prompt(scored("g0", 0, 1.0, "x" * 5000), TOKENIZER, config, "u")
    assert len(prompt.prompt_ids) <= 700 and "Rating rules" in prompt.text


def test_a_critique_that_cannot_fit_even_without_the_solution_is_skipped() -> None:
    config = rise.RiseConfig(enable=True, max_prompt_tokens=700)
    item = scored("g0", 0, 1.0, "x" * 5000)
    long_question = dataclasses.replace(item.sample.prompt, user_text="What is 2+2? " * 400)  # alone too long
    item = ScoredSample(dataclasses.replace(item.sample, prompt=long_question), item.reward)
    assert rise.verification_prompt(item, TOKENIZER, config, "u") is None


def test_scores_outside_the_rise_scale_are_refused() -> None:
    with pytest.raises(ValueError, match="rewards.rise:score"):
        rise.verification_prompt(scored("g0", 0, 0.0), TOKENIZER, rise.RiseConfig(), "u")


@pytest.mark.parametrize(("response", "truth", "source", "expected"), [
    ("so \\boxed{4}", "4", "arithmetic", 1.0),
    ("so \\boxed{5}", "4", "arithmetic", -0.5),
    ("it is 4", "4", "arithmetic", -1.0),
    ("wrong answer, \\boxed{-0.5}", "-0.5", rise.VERIFICATION_SOURCE, 1.0),
    ("fine \\boxed{1}", "-0.5", rise.VERIFICATION_SOURCE, -0.5),
    ("looks right", "1.0", rise.VERIFICATION_SOURCE, -1.0),
    ("\\boxed{good}", "1.0", rise.VERIFICATION_SOURCE, -0.5),
])
def test_reward_for_solutions_and_verifications(response: str, truth: str, source: str, expected: float) -> None:
    assert score(response=response, ground_truth=truth, data_source=source)["score"] == expected


def test_verification_metrics() -> None:
    verification = scored("v", 0, 1.0)
    verification = ScoredSample(
        Sample("v", 0, 2, Prompt("v", "", [1], "1.0", data_source=rise.VERIFICATION_SOURCE), [2], [1], [0.0], 0,
               FinishReason.STOP, "\\boxed{1}"),
        Reward(1.0, RewardStatus.OK),
    )
    wrong = ScoredSample(verification.sample, Reward(-0.5, RewardStatus.OK))
    crashed = ScoredSample(verification.sample, Reward(0.0, RewardStatus.ERROR, error="boom"))
    metrics = rise.verification_metrics([scored("g", 0, 1.0), scored("g", 1, -1.0), verification, wrong, crashed])
    # The crashed rating is counted, not taken as a wrong one.
    assert metrics == {"rise/verification_frac": 0.6, "rise/verification_accuracy": 0.5, "rise/verification_failed": 1.0}


def test_failed_solutions_are_not_verified_and_foreign_scores_are_refused() -> None:
    failed = ScoredSample(scored("g0", 1, 0.0).sample, Reward(0.0, RewardStatus.TIMEOUT))
    groups = [[failed, scored("g0", 0, 1.0)]]
    assert [item.sample.index_in_group for item in rise.downsample(groups, 2, random.Random(0))] == [0]
    with pytest.raises(ValueError, match="rewards.rise:score"):
        rise.downsample([[scored("g0", 0, 0.3)]], 1, random.Random(0))
