"""Several reward functions combined by weight, async reward functions, and the recipe section
that names them; through the real scoring pool (spawned processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlkit.config.load import ConfigError, load_config
from rlkit.reward.contract import ERROR, NOT_APPLICABLE, OK, Verdict, combine
from rlkit.reward.isolation import ScoringPool
from rlkit.reward.contract import RewardRequest
from rlkit.reward.loader import RewardFnSpec
from rlkit.types import RewardStatus

REWARDS = '''
import asyncio

def correct(*, response, ground_truth):
    return {"score": float(response.strip() == ground_truth), "exact": 1.0}

def short(*, response):
    return 1.0 if len(response) < 5 else None   # does not apply to long answers

def fails(*, response):
    if "boom" in response:
        raise ValueError("boom in the response")
    return 0.5

async def slow_service(*, response):
    await asyncio.sleep(0.01)
    return len(response) / 10
'''
TINY = Path(__file__).parents[2] / "recipes" / "tiny_cpu.yaml"


@pytest.fixture()
def rewards_file(tmp_path: Path) -> Path:
    path = tmp_path / "rewards.py"
    path.write_text(REWARDS)
    return path


def test_combine_weights_labels_and_failures() -> None:
    ok = Verdict(OK, score=1.0, components={"exact": 1.0})
    combined = combine([("correct", 2.0, ok), ("short", 0.5, Verdict(OK, score=1.0)), ("na", 9.0, Verdict(NOT_APPLICABLE))])
    assert combined.status == OK and combined.score == 2.5
    assert combined.components == {"correct": 1.0, "correct/exact": 1.0, "short": 1.0}
    failed = combine([("correct", 1.0, ok), ("fails", 1.0, Verdict(ERROR, error="ValueError: x"))])
    assert failed.status == ERROR and failed.error == "fails: ValueError: x" and failed.score == 0.0
    assert combine([("a", 1.0, Verdict(NOT_APPLICABLE)), ("b", 1.0, Verdict(NOT_APPLICABLE))]).status == NOT_APPLICABLE
    assert combine([(None, 1.0, ok)]) is ok  # the single reward.fn passes through unchanged


def test_weighted_functions_score_in_worker_processes(rewards_file: Path) -> None:
    functions = [
        ("correct", 1.0, RewardFnSpec(path=str(rewards_file), name="correct")),
        ("short", 0.2, RewardFnSpec(path=str(rewards_file), name="short")),
        ("service", 0.1, RewardFnSpec(path=str(rewards_file), name="slow_service")),
        ("fails", 0.0, RewardFnSpec(path=str(rewards_file), name="fails")),
    ]
    with ScoringPool(functions, num_processes=1, timeout_s=5.0) as pool:
        right, long_wrong, boom = pool.score([
            RewardRequest(prompt="", response="42", ground_truth="42"),
            RewardRequest(prompt="", response="41 is it", ground_truth="42"),
            RewardRequest(prompt="", response="boom", ground_truth="42"),
        ])
    assert right.status == RewardStatus.OK
    assert right.score == pytest.approx(1.0 + 0.2 * 1.0 + 0.1 * 0.2)
    assert right.components == pytest.approx({"correct": 1.0, "correct/exact": 1.0, "short": 1.0, "service": 0.2, "fails": 0.5})
    assert long_wrong.score == pytest.approx(0.1 * 0.8) and "short" not in long_wrong.components  # None: left out
    assert boom.status == RewardStatus.ERROR and boom.error.startswith("fails: ValueError")


def test_recipe_names_several_functions_and_checks_each(rewards_file: Path) -> None:
    config = load_config(TINY, [
        f"reward.fns=[{{label: correct, path: {rewards_file}, name: correct}}, "
        f"{{label: short, weight: 0.2, path: {rewards_file}, name: short}}]",
    ])
    assert [(f.label, f.weight) for f in config.reward.fns] == [("correct", 1.0), ("short", 0.2)]
    with pytest.raises(ConfigError) as caught:
        load_config(TINY, [
            f"reward.fns=[{{label: a, path: {rewards_file}, name: corect}}, {{label: a, path: {rewards_file}, name: short}}]",
        ])
    text = str(caught.value)
    assert "reward.fns[0]" in text and 'did you mean "correct"' in text
    assert "reward.fns[1].label='a' is used twice" in text


def test_recipe_reward_extra_fills_what_the_dataset_row_does_not_set() -> None:
    from rlkit.types import FinishReason, Prompt, Sample

    prompt = Prompt("u", "t", [1], "4", extra={"gra_gated": False, "gra_threshold": None, "hint": None})
    sample = Sample("g", 0, 1, prompt, [1], [1], [0.0], 0, FinishReason.STOP, "x")
    request = RewardRequest.from_sample(sample, {"gra_threshold": 0.5, "gra_gated": True})
    # The row wins; a null column (a table's row that had no such key) does not.
    assert request.extra == {"gra_threshold": 0.5, "gra_gated": False, "hint": None}
