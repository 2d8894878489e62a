"""rewards/gra.py (G-RA, ALGORITHMS.md §8): every worked vector at the README tolerance, the
gate's edge cases (δ = −inf, closed gate and penalties, ≥ at the threshold), the priority form,
the final-answer outcome check and the reward functions under rlkit's contract."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from rewards.gra import (
    DEFAULT_THRESHOLD,
    evaluate_gra_vector,
    final_answer_outcome,
    gate_settings,
    gated_accumulation,
    gated_step_rewards,
    make_score,
    priority_gated,
    score,
    score_dra,
    score_gra,
)
from vector_harness import match_outputs
from rlkit.reward.contract import ERROR, NOT_APPLICABLE, OK, RewardRequest, accepted_keywords, call_and_judge
from rlkit.reward.loader import RewardFnSpec, check_reward_fn
from rlkit.tasks.multistep import last_answer, parse_number

REPO = Path(__file__).parents[2]
VECTORS = json.loads((REPO / "tests" / "vectors" / "gra.json").read_text())["vectors"]


# ---------------------------------------------------------------- worked vectors


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_outputs(vector: dict[str, Any]) -> None:
    actual = evaluate_gra_vector(vector["inputs"])
    assert match_outputs(actual, vector["outputs"], where=vector["name"]) > 0


def test_vector_file_covers_both_forms() -> None:
    names = {v["name"] for v in VECTORS}
    assert {"gra_threshold_0.5", "gra_threshold_1.0", "gra_multilevel_priorities"} <= names


def test_the_comparison_fails_on_a_perturbed_output() -> None:
    """The harness can fail: one step reward changed by 1e-4 changes the returns beyond tolerance."""
    vector = VECTORS[0]
    inputs = json.loads(json.dumps(vector["inputs"]))
    inputs["r_low_steps"][0][0] += 1e-4
    with pytest.raises(AssertionError):
        match_outputs(evaluate_gra_vector(inputs), vector["outputs"])


# ---------------------------------------------------------------- the gate


def test_minus_infinity_threshold_is_dra() -> None:
    rng = random.Random(0)
    for _ in range(200):
        outcome = rng.choice([-1.0, 0.0, 0.5, 1.0, rng.uniform(-5, 5)])
        steps = [rng.uniform(-1, 1) for _ in range(rng.randrange(6))]
        dra = gated_accumulation(outcome, steps, 0.0, gated=False)
        assert gated_accumulation(outcome, steps, -math.inf) == dra
        assert dra == pytest.approx(outcome + sum(steps))


def test_closed_gate_drops_penalties_too() -> None:
    steps = [-0.1, -0.1, 0.1]
    assert gated_step_rewards(0.0, steps, 1.0) == [0.0, 0.0, 0.0]
    assert gated_accumulation(0.0, steps, 1.0) == 0.0  # no signal at all, not even the penalties
    assert gated_accumulation(0.0, steps, 1.0, gated=False) == pytest.approx(-0.1)
    assert gated_accumulation(1.0, steps, 1.0) == pytest.approx(0.9)  # open: penalties count


def test_threshold_uses_greater_or_equal() -> None:
    assert gated_accumulation(0.5, [0.2], 0.5) == pytest.approx(0.7)  # r_high = δ opens the gate
    assert gated_accumulation(0.5 - 1e-12, [0.2], 0.5) == pytest.approx(0.5 - 1e-12)
    assert gated_step_rewards(0.5, [0.2, -0.3], 0.5) == [0.2, -0.3]


def test_degenerations_give_the_outcome_alone() -> None:
    assert gated_accumulation(1.0, [0.3, 0.3], 2.0) == 1.0  # δ above every outcome
    assert gated_accumulation(1.0, [0.0, 0.0], 0.5) == 1.0  # no immediate rewards
    assert gated_accumulation(0.7, [], 0.5) == 0.7  # a single-turn sample


def test_return_is_outcome_plus_the_sum_of_gated_step_rewards() -> None:
    rng = random.Random(1)
    for _ in range(200):
        outcome, delta = rng.uniform(-1, 1), rng.uniform(-1, 1)
        steps = [rng.uniform(-1, 1) for _ in range(rng.randrange(5))]
        assert gated_accumulation(outcome, steps, delta) == pytest.approx(
            outcome + sum(gated_step_rewards(outcome, steps, delta)))


# ---------------------------------------------------------------- priority form


def test_two_channels_reduce_to_gated_accumulation() -> None:
    rng = random.Random(2)
    for _ in range(200):
        outcome, delta = rng.choice([-1.0, 0.0, 0.5, 1.0]), rng.choice([0.0, 0.5, 1.0])
        steps = [rng.uniform(-0.5, 0.5) for _ in range(rng.randrange(5))]
        total, masks = priority_gated([outcome, sum(steps)], [1, 0], [delta, 123.0])
        assert masks[0] == 1.0 and masks[1] == float(outcome >= delta)
        assert total == pytest.approx(gated_accumulation(outcome, steps, delta))


def test_top_priority_always_counts_and_gates_cascade() -> None:
    total, masks = priority_gated([-2.0, 5.0, 7.0], [3, 2, 1], [0.0, 0.0, 0.0])
    assert masks == [1.0, 0.0, 0.0] and total == -2.0  # the top channel fails its own threshold, still counted
    total, masks = priority_gated([1.0, -1.0, 7.0], [3, 2, 1], [0.0, 0.0, 0.0])
    assert masks == [1.0, 1.0, 0.0] and total == 0.0  # channel 2 fails, so channel 3 is closed


def test_equal_priorities_do_not_gate_each_other() -> None:
    total, masks = priority_gated([-1.0, -1.0, 0.5], [2, 2, 1], [0.0, 0.0, 0.0])
    assert masks == [1.0, 1.0, 0.0] and total == -2.0


def test_channel_order_does_not_matter() -> None:
    rewards, priorities, thresholds = [0.2, 1.0, 0.5], [1, 3, 2], [0.0, 1.0, 0.5]
    total, masks = priority_gated(rewards, priorities, thresholds)
    order = [1, 2, 0]
    total2, masks2 = priority_gated([rewards[i] for i in order], [priorities[i] for i in order], [thresholds[i] for i in order])
    assert total2 == pytest.approx(total) == pytest.approx(1.7) and masks2 == [masks[i] for i in order]


def test_priority_form_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="one priority and one threshold per reward channel"):
        priority_gated([1.0, 0.5], [1], [0.0, 0.0])
    assert priority_gated([], [], []) == (0.0, [])


# ---------------------------------------------------------------- outcome check


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("<step>5 + 3 = 8</step>\nok\n<answer>8</answer>", 1.0),
        ("<answer> 8 </answer>", 1.0),
        ("<answer>8.0</answer>", 1.0),
        ("<answer>+8</answer>", 1.0),
        ("<answer>9</answer>", 0.0),
        ("<answer>eight</answer>", 0.0),
        ("<answer>8", 0.0),  # never closed
        ("the answer is 8", 0.0),
        ("<answer>3</answer> then <answer>8</answer>", 1.0),  # the last one counts
        ("<answer>8</answer> then <answer>3</answer>", 0.0),
        ("<answer> stray <answer>8</answer>", 1.0),  # a stray open tag does not swallow the answer
        ("<answer>" + "8" * 5000 + "</answer>", 0.0),  # no 5000-digit int conversion
        ("<answer>8</answer>" + "x" * 100_000, 1.0),
    ],
)
def test_final_answer_outcome(response: str, expected: float) -> None:
    assert final_answer_outcome(response, "8") == expected


def test_negative_answers_and_bad_ground_truth() -> None:
    assert final_answer_outcome("<answer>−3</answer>", "-3") == 1.0  # the unicode minus sign
    assert parse_number("1e5") is None and parse_number("") is None and last_answer("no tags") is None
    with pytest.raises(ValueError, match="not a number"):
        final_answer_outcome("<answer>3</answer>", "three")


# ---------------------------------------------------------------- reward functions

TRANSCRIPT = "<step>5 + 3 = 8</step>\nNext: * 2\n<step>8 * 2 = 16</step>\nAll steps done.\n<answer>16</answer>"


def test_gra_and_dra_functions() -> None:
    steps = (0.1, 0.1, 0.0)
    right = score_gra(response=TRANSCRIPT, ground_truth="16", extra={}, step_rewards=steps)
    assert right == pytest.approx({"score": 1.2, "outcome": 1.0, "steps": 0.2, "gate_open": 1.0})
    wrong = score_gra(response=TRANSCRIPT, ground_truth="17", extra={}, step_rewards=steps)
    assert wrong == {"score": 0.0, "outcome": 0.0, "steps": pytest.approx(0.2), "gate_open": 0.0}
    dra = score_dra(response=TRANSCRIPT, ground_truth="17", extra={}, step_rewards=steps)
    assert dra == pytest.approx({"score": 0.2, "outcome": 0.0, "steps": 0.2, "gate_open": 1.0})
    assert score(response=TRANSCRIPT, ground_truth="17", extra={}, step_rewards=steps) == wrong  # module default: G-RA


def test_score_is_outcome_plus_gate_times_steps() -> None:
    rng = random.Random(3)
    for fn in (score, score_gra, score_dra):
        for _ in range(50):
            steps = tuple(rng.choice([0.1, 0.0, -0.1]) for _ in range(rng.randrange(5)))
            answer = rng.choice(["16", "15"])
            out = fn(response=f"<answer>{answer}</answer>", ground_truth="16", extra={}, step_rewards=steps)
            assert out["score"] == pytest.approx(out["outcome"] + out["gate_open"] * out["steps"])


def test_extra_overrides_threshold_and_switch() -> None:
    steps = (0.1, 0.1)
    wrong = {"response": "<answer>1</answer>", "ground_truth": "2", "step_rewards": steps}
    assert score_gra(**wrong, extra={"gra_threshold": 0.0})["score"] == pytest.approx(0.2)  # 0 ≥ 0 opens it
    assert score_gra(**wrong, extra={"gra_threshold": "-inf"})["gate_open"] == 1.0
    assert score_gra(**wrong, extra={"gra_gated": "false"})["score"] == pytest.approx(0.2)
    assert score_dra(**wrong, extra={"gra_gated": True})["score"] == 0.0
    assert score_dra(**wrong, extra={"gra_gated": None})["score"] == pytest.approx(0.2)  # null column = default
    assert gate_settings(None) == (DEFAULT_THRESHOLD, True)
    assert gate_settings({"gra_gated": 0}, gated=True) == (DEFAULT_THRESHOLD, False)
    with pytest.raises(ValueError, match="gra_gated"):
        gate_settings({"gra_gated": "maybe"})
    with pytest.raises(ValueError, match="NaN"):
        gate_settings({"gra_threshold": float("nan")})
    with pytest.raises(ValueError, match="gra_threshold='high': expected a number"):
        gate_settings({"gra_threshold": "high"})


def test_no_ground_truth_is_not_applicable() -> None:
    assert score_gra(response="<answer>1</answer>", ground_truth=None, extra={}, step_rewards=()) is None


def test_pluggable_outcome_check() -> None:
    def graded(response: str, ground_truth: str) -> float | None:
        if "skip" in response:
            return None
        return {"none": -1.0, "empty": 0.0, "fails": 0.5, "passes": 1.0}[response]

    reward = make_score(graded)
    assert (reward(response="fails", ground_truth="x", extra={"gra_threshold": 0.5}, step_rewards=(0.2,))["score"]
            == pytest.approx(0.7))
    assert reward(response="empty", ground_truth="x", extra={"gra_threshold": 0.5}, step_rewards=(0.2,))["score"] == 0.0
    assert reward(response="skip", ground_truth="x", extra={}, step_rewards=()) is None


@pytest.mark.parametrize("name", ["score", "score_gra", "score_dra"])
def test_functions_pass_the_loader_and_the_contract(name: str) -> None:
    spec = RewardFnSpec(path=str(REPO / "rewards" / "gra.py"), name=name)
    assert check_reward_fn(spec) == []
    fn = {"score": score, "score_gra": score_gra, "score_dra": score_dra}[name]
    keywords = accepted_keywords(fn)
    assert "step_rewards" in keywords and "extra" in keywords
    request = RewardRequest(prompt="p", response=TRANSCRIPT, ground_truth="16", step_rewards=(0.1, -0.1, 0.1))
    verdict = call_and_judge(fn, request, keywords)
    assert verdict.status == OK and verdict.score == pytest.approx(1.1)
    assert verdict.components == pytest.approx({"outcome": 1.0, "steps": 0.1, "gate_open": 1.0})
    assert call_and_judge(fn, RewardRequest(prompt="p", response="x"), keywords).status == NOT_APPLICABLE
    bad = RewardRequest(prompt="p", response="x", ground_truth="1", extra={"gra_gated": "perhaps"})
    failed = call_and_judge(fn, bad, keywords)
    assert failed.status == ERROR and "gra_gated" in (failed.error or "")


# ---------------------------------------------------------------- the recipes


def test_recipes_compare_gra_with_dra_and_fit_their_budgets() -> None:
    from rlkit.config.load import load_config

    configs = {name: load_config(REPO / "recipes" / f"multistep_{name}.yaml") for name in ("gra", "dra")}  # checked too
    flat = {
        name: {f"{s.name}.{k}": v for s in dataclasses.fields(c) for k, v in dataclasses.asdict(getattr(c, s.name)).items()}
        for name, c in configs.items()
    }
    changed = {key for key, value in flat["gra"].items() if flat["dra"][key] != value}
    assert changed == {"run.name", "run.output_dir", "reward.fn"}  # the output folder follows the name
    assert (configs["gra"].reward.fn.name, configs["dra"].reward.fn.name) == ("score_gra", "score_dra")
    config = configs["gra"]
    env, rows = config.rollout.env, [json.loads(line) for line in Path(config.data.train_path).read_text().splitlines()]
    assert env.name == "multistep" and config.reward.fn.path == "rewards/gra.py"
    assert env.max_turns >= max(len(row["ops"]) for row in rows) + 1  # every step and the answer
    budget = config.data.max_prompt_tokens + env.max_episode_tokens + env.max_turn_tokens
    assert budget <= config.rollout.engine_options.max_model_len
    for path in ("recipes/multistep_gra.yaml", "recipes/multistep_dra.yaml"):
        header = (REPO / path).read_text().split("\nbase:")[0]
        assert "2508.10548" in header and "Gated Rewards" in header
