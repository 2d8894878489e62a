"""rewards/thoth_score.py (Thoth SCORE, ALGORITHMS.md §10) and the protocol task that feeds it:
every worked vector at the README tolerance, the text checks behind the two gates, the reward
contract, and the generated data files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from rewards.thoth_score import (
    DIFFERENT_SEQUENCE_VARIANTS,
    VECTOR_VARIANTS,
    KeyStep,
    ScoreOptions,
    count_orc_steps,
    evaluate_thoth_vector,
    format_key_steps,
    greedy_pairs,
    keyword_iou,
    keywords,
    parse_ground_truth,
    parse_response,
    position_decay,
    score,
    score_components,
    score_lcs,
    step_scale,
)
from vector_harness import match_outputs
from rlkit.reward.contract import ERROR, NOT_APPLICABLE, OK, RewardRequest, accepted_keywords, call_and_judge
from rlkit.reward.loader import RewardFnSpec, check_reward_fn
from rlkit.tasks import protocols

REPO = Path(__file__).parents[2]
VECTORS = json.loads((REPO / "tests" / "vectors" / "thoth_score.json").read_text())["vectors"]


# ---------------------------------------------------------------- worked vectors


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_every_vector_output_matches(vector: dict[str, Any]) -> None:
    checked = match_outputs(evaluate_thoth_vector(vector["inputs"]), vector["outputs"], where=vector["name"])
    assert checked > 50


def test_the_comparator_catches_a_wrong_leaf() -> None:
    expected = VECTORS[1]["outputs"]
    actual = evaluate_thoth_vector(VECTORS[1]["inputs"])
    actual["lcs_order"]["per_pair[step_score,obj,para,m_x]"][1][2] += 1e-3
    with pytest.raises(AssertionError, match="lcs_order.per_pair"):
        match_outputs(actual, expected)


def test_vector_variants_can_be_named_explicitly() -> None:
    inputs = {**VECTORS[0]["inputs"], "variants": list(DIFFERENT_SEQUENCE_VARIANTS)}
    outputs = evaluate_thoth_vector(inputs)
    assert list(outputs) == list(DIFFERENT_SEQUENCE_VARIANTS)
    assert outputs["format_fail"]["SCORE"] == 0.0 and outputs["format_fail"]["r_semantic"] > 0
    assert outputs["lcs_order_consistency_fail"]["I_consistency"] == 0.0
    assert set(VECTOR_VARIANTS) >= set(DIFFERENT_SEQUENCE_VARIANTS)


# ---------------------------------------------------------------- components

GT = (
    KeyStep("weigh", ("agarose",), ("1 g",)),
    KeyStep("add", ("TAE buffer",), ("100 ml",)),
    KeyStep("heat", ("solution",), ("2 min",)),
    KeyStep("pour", ("solution", "gel tray"), ()),
)


def answer(steps: tuple[KeyStep, ...] | list[KeyStep], orc_lines: int | None = None) -> str:
    """A Sketch-and-Fill response for `steps`, with `orc_lines` natural-language steps (default: as many)."""
    count = len(steps) if orc_lines is None else orc_lines
    orc = "\n".join(f"Step {k}: Do step {k} carefully." for k in range(1, count + 1))
    return (f"<think>Plan the gel.</think>\n<key>\n{format_key_steps(steps)}\n</key>\n"
            f"<orc>\n{orc}\n</orc>\n<note>Hot agarose burns.</note>")


def test_step_scale_is_symmetric_and_zero_from_m() -> None:
    assert step_scale(4, 4) == (0, 4, 1.0)
    assert step_scale(3, 4)[2] == pytest.approx(math.cos(math.pi / 8)) == step_scale(5, 4)[2]
    assert step_scale(8, 4)[2] == 0.0 and step_scale(0, 4)[2] == 0.0  # d = M gives exactly 0
    assert step_scale(0, 0) == (0, 1, 1.0) and step_scale(1, 0) == (1, 1, 0.0)  # empty gt: M = 1


def test_greedy_matching_keeps_the_eval_code_quirk() -> None:
    assert greedy_pairs(["a", "b", "c"], ["a", "b", "c"]) == [(0, 0), (1, 1), (2, 2)]
    assert greedy_pairs(["a", "c"], ["a", "b", "c"]) == [(0, 0), (1, 2)]  # skipping gt steps is fine
    assert greedy_pairs(["a", "x", "b"], ["a", "b"]) == [(0, 0)]  # one miss ends matching
    assert greedy_pairs(["b", "a"], ["a", "b"]) == [(0, 1)]  # the pointer never moves back


def test_keywords_keep_units_and_decimals() -> None:
    assert keywords("0.5 µl, 4 °C; 10%") == {"0.5", "µl", "4", "c", "10%"}
    assert keyword_iou([], []) == 1.0 and keyword_iou(["x"], []) == 0.0
    assert keyword_iou(["5 µl", "0.5 µl"], ["5 µl"]) == pytest.approx(2 / 3)


def test_position_decay() -> None:
    assert position_decay(2, 2, 4) == 1.0
    assert position_decay(0, 2, 4) == pytest.approx(1 - 0.5**1.5)
    assert position_decay(0, 4, 4) == 0.0 and position_decay(3, 0, 0) == 0.0


def test_parameters_count_only_when_objects_agree() -> None:
    wrong_object = (KeyStep("weigh", ("sugar",), ("1 g",)),)
    c = score_components(wrong_object, GT[:1], 1, True)
    assert c.per_pair[0].obj == 0.0 and c.per_pair[0].para == 0.0


def test_empty_ground_truth_rule() -> None:
    empty = score_components((), (), 0, True)
    assert (empty.scale, empty.order, empty.semantic, empty.score) == (1.0, 1.0, 0.0, 0.0)
    assert score_components((), (), 0, True, ScoreOptions(grpo_final_combine="sum")).score == 1.0
    assert score_components(GT[:1], (), 1, True, ScoreOptions(grpo_order_mode="lcs")).scale == 0.0


# ---------------------------------------------------------------- text checks


def test_a_correct_well_formed_answer_gets_the_top_score() -> None:
    parsed = parse_response(answer(GT))
    assert parsed.format_ok and parsed.key_steps == GT and parsed.n_orc_steps == 4
    c = score_components(parsed.key_steps, GT, parsed.n_orc_steps, parsed.format_ok)
    assert (c.format, c.consistency, c.scale, c.order) == (1.0, 1.0, 1.0, 1.0)
    assert c.score == pytest.approx(1.5)  # sum mode: obj 1 + 0.5 · para 1
    product = ScoreOptions(grpo_combine_mode="product")
    assert score_components(parsed.key_steps, GT, 4, True, product).score == pytest.approx(1.0)


GOOD = answer(GT)
MALFORMED = {  # fail either reading of the format gate
    "no note block": GOOD.replace("<note>Hot agarose burns.</note>", ""),
    "blocks out of order": GOOD.replace("<think>Plan the gel.</think>\n", "") + "<think>late</think>",
    "orc before key": GOOD.replace("<key>", "<tmp>").replace("</key>", "</tmp>").replace("<orc>", "<key>")
                          .replace("</orc>", "</key>").replace("<tmp>", "<orc>").replace("</tmp>", "</orc>"),
    "unclosed think": GOOD.replace("</think>", ""),
    "key line not JSON": GOOD.replace('"action": "heat"', "action: heat"),
    "key step without parameters": GOOD.replace(', "parameters": ["2 min"]', ""),
    "key line without Step prefix": GOOD.replace("Step 2: ", "2) ", 1),
    "objects not a list": GOOD.replace('["agarose"]', '"agarose"'),
    "empty action": GOOD.replace('"action": "pour"', '"action": " "'),
    "JSON nested 100k deep": GOOD.replace('Step 2: {', "Step 2: " + "[" * 100_000 + "{", 1),
}
STRICT_ONLY = {  # the spec's gate (blocks present, in order) passes these; strict_format fails them
    "text after the blocks": GOOD + " Done!",
    "duplicate key block": GOOD + "<key>x</key>",
    "a preamble": "Sure, here is the protocol.\n" + GOOD,
    "text between blocks": GOOD.replace("</key>\n", "</key>\nNow the steps in words:\n"),
    "a tag inside think": GOOD.replace("Plan the gel.", "Plan the gel, then write <key>."),
}
STRICT = {"strict_format": True}


@pytest.mark.parametrize("response", MALFORMED.values(), ids=MALFORMED.keys())
@pytest.mark.parametrize("strict", [False, True])
def test_malformed_answers_fail_the_format_gate(response: str, strict: bool) -> None:
    assert parse_response(GOOD, strict=strict).format_ok
    parsed = parse_response(response, strict=strict)
    assert not parsed.format_ok and parsed.problem
    result = score(response=response, ground_truth=json.dumps([step_json(s) for s in GT]), extra={"strict_format": strict})
    assert result is not None and result["format"] == 0.0 and result["score"] == 0.0


@pytest.mark.parametrize("response", STRICT_ONLY.values(), ids=STRICT_ONLY.keys())
def test_text_outside_the_blocks_passes_the_spec_gate_and_fails_the_strict_one(response: str) -> None:
    parsed = parse_response(response)
    assert parsed.format_ok and parsed.key_steps == GT and parsed.n_orc_steps == 4
    assert score(response=response, ground_truth=gt_json(GT)) == score(response=GOOD, ground_truth=gt_json(GT))
    assert not parse_response(response, strict=True).format_ok
    for flag in (True, "true", 1):
        strict = score(response=response, ground_truth=gt_json(GT), extra={"strict_format": flag})
        assert strict is not None and strict["format"] == 0.0 and strict["score"] == 0.0


def test_a_think_block_opened_by_the_chat_template_counts() -> None:
    """Reasoning chat templates end the prompt with <think>: the response starts inside it."""
    response = GOOD.removeprefix("<think>")
    prompt = "<|im_start|>user\nWrite the protocol.<|im_end|>\n<|im_start|>assistant\n<think>\n"
    for extra in ({}, STRICT):
        result = score(prompt=prompt, response=response, ground_truth=gt_json(GT), extra=extra)
        assert result is not None and result["format"] == 1.0 and result["score"] == pytest.approx(1.5)
        alone = score(prompt="Write the protocol.", response=response, ground_truth=gt_json(GT), extra=extra)
        assert alone is not None and alone["format"] == 0.0
    # A prompt that only describes the layout does not open the block.
    described = score(prompt="Answer as <think>…</think> <key>…</key> …", response=GOOD, ground_truth=gt_json(GT))
    assert described is not None and described["format"] == 1.0


def test_strict_format_must_be_a_yes_or_no() -> None:
    with pytest.raises(ValueError, match="strict_format='sometimes' must be true or false"):
        score(response=GOOD, ground_truth=gt_json(GT), extra={"strict_format": "sometimes"})
    assert ScoreOptions.from_extra({"strict_format": "False"}).strict_format is False


def test_a_step_count_mismatch_between_key_and_orc_fails_consistency() -> None:
    result = score(response=answer(GT, orc_lines=3), ground_truth=gt_json(GT))
    assert result is not None
    assert result["format"] == 1.0 and result["consistency"] == 0.0 and result["score"] == 0.0
    assert result["order"] == 1.0 and result["semantic"] > 1.0  # the other terms are still logged


def test_orc_steps_are_counted_by_marker_or_by_line() -> None:
    assert count_orc_steps("Step 1: Weigh.\nIt is light.\nStep 2: Add.") == 2
    assert count_orc_steps("1. Weigh.\n2) Add.\n") == 2
    assert count_orc_steps("Weigh the agarose.\n\nAdd the buffer.\n") == 2


def test_lcs_order_is_dense_where_strict_order_is_sparse() -> None:
    one_wrong = (GT[0], KeyStep("mix", ("TAE buffer",), ("100 ml",)), GT[2], GT[3])
    strict = score(response=answer(one_wrong), ground_truth=gt_json(GT))
    dense = score_lcs(response=answer(one_wrong), ground_truth=gt_json(GT))
    assert strict is not None and dense is not None
    assert strict["order"] == 0.0 and strict["score"] == 0.0
    assert dense["order"] == pytest.approx(2 * 3 / 8) and dense["score"] > 0
    # LCS still ranks answers: a second wrong action scores lower.
    two_wrong = (GT[0], one_wrong[1], KeyStep("boil", ("solution",), ("2 min",)), GT[3])
    worse = score_lcs(response=answer(two_wrong), ground_truth=gt_json(GT))
    assert worse is not None and 0 < worse["order"] < dense["order"]


# ---------------------------------------------------------------- reward contract


def step_json(step: KeyStep) -> dict[str, Any]:
    return {"action": step.action, "objects": list(step.objects), "parameters": list(step.parameters)}


def gt_json(steps: tuple[KeyStep, ...]) -> str:
    return json.dumps([step_json(s) for s in steps])


@pytest.mark.parametrize("name", ["score", "score_lcs"])
def test_reward_functions_fit_the_contract(name: str) -> None:
    spec = RewardFnSpec(path=str(REPO / "rewards" / "thoth_score.py"), name=name)
    assert check_reward_fn(spec) == []


def test_call_and_judge_reports_every_component() -> None:
    request = RewardRequest(prompt="p", response=answer(GT), ground_truth=gt_json(GT), data_source="protocols")
    verdict = call_and_judge(score, request, accepted_keywords(score))
    assert verdict.status == OK and verdict.score == pytest.approx(1.5)
    assert {"format", "consistency", "scale", "order", "semantic", "semantics"} <= set(verdict.components)
    assert verdict.components["gt_steps"] == 4.0 and verdict.components["matched_pairs"] == 4.0


def test_no_ground_truth_means_not_applicable() -> None:
    verdict = call_and_judge(score, RewardRequest(prompt="p", response=GOOD), accepted_keywords(score))
    assert verdict.status == NOT_APPLICABLE


def test_switches_come_from_extra() -> None:
    one_wrong = (GT[0], KeyStep("mix", ("TAE buffer",), ("100 ml",)), GT[2], GT[3])
    default = score(response=answer(one_wrong), ground_truth=gt_json(GT), extra={})
    lcs = score(response=answer(one_wrong), ground_truth=gt_json(GT), extra={"grpo_order_mode": "lcs"})
    assert default is not None and lcs is not None and default["score"] == 0.0 and lcs["score"] > 0
    summed = score(response=answer(GT), ground_truth=gt_json(GT), extra={"grpo_final_combine": "sum", "other": 1})
    assert summed is not None and summed["score"] == pytest.approx(2.5)  # r_scale 1 + semantics 1.5


def test_bad_switches_and_bad_ground_truth_are_errors_not_zeros() -> None:
    with pytest.raises(ValueError, match="grpo_order_mode='lsc' is not one of"):
        score(response=GOOD, ground_truth=gt_json(GT), extra={"grpo_order_mode": "lsc"})
    request = RewardRequest(prompt="p", response=GOOD, ground_truth="Step 1: weigh")
    verdict = call_and_judge(score, request, accepted_keywords(score))
    assert verdict.status == ERROR and "ground truth is not JSON" in (verdict.error or "")
    with pytest.raises(ValueError, match="ground truth step"):
        parse_ground_truth('[{"action": "weigh"}]')


# ---------------------------------------------------------------- the protocol task


def test_generation_is_deterministic_disjoint_and_short() -> None:
    train, test = protocols.generate(300, 60, seed=7)
    assert (train, test) == protocols.generate(300, 60, seed=7)
    assert not {row["prompt"] for row in train} & {row["prompt"] for row in test}
    for row in train + test:
        assert set(row) == {"id", "prompt", "answer", "data_source"} and row["data_source"] == "protocols"
        steps = parse_ground_truth(row["answer"])
        assert 2 <= len(steps) <= 6
        assert all(obj in row["prompt"] for step in steps for obj in step.objects)
        assert "<key>" in row["prompt"] and '"parameters"' in row["prompt"]


def test_the_reference_answer_scores_top_on_its_row() -> None:
    _, test = protocols.generate(0, 20, seed=3)
    for row in test:
        steps = parse_ground_truth(row["answer"])
        result = score(response=answer(steps), ground_truth=row["answer"], extra={"data_source": "protocols"})
        assert result is not None and result["score"] == pytest.approx(1.5)


def test_shipped_data_files_match_the_generator() -> None:
    train, test = protocols.generate(1600, 200, seed=1234)  # the CLI defaults
    for name, rows in (("train", train), ("test", test)):
        path = REPO / "data" / "protocols" / f"{name}.jsonl"
        assert path.stat().st_size < 2_000_000
        lines = path.read_text(encoding="utf-8").splitlines()
        assert [json.loads(line) for line in lines] == rows, "regenerate: python -m rlkit.tasks.protocols --out data/protocols"
