"""Gated reward accumulation (G-RA): immediate step rewards count only when the outcome is good.

Sun et al., "Stabilizing Long-term Multi-turn Reinforcement Learning with Gated Rewards",
arXiv 2508.10548; ALGORITHMS.md §8, docs/environments_gra.md. No official code exists; the
formulas follow the spec:

    r̃_t = r^low_t · 1[r^high ≥ δ]            R_G-RA = r^high + 1[r^high ≥ δ] · Σ_t r^low_t

and the ungated baseline D-RA is r^high + Σ_t r^low_t. Adding step rewards unconditionally lets
a policy collect them without solving the task; the gate pays them only on episodes whose
outcome already meets δ, so they can refine good behaviour but never replace the outcome.

Layers, each testable alone: (a) the gating math (`gated_accumulation`, `gated_step_rewards`,
`priority_gated`); (b) the outcome check of the shipped `multistep` environment
(`final_answer_outcome`: the last `<answer>…</answer>` against the ground truth); (c) reward
functions under rlkit's contract: `score` (module defaults), `score_gra` and `score_dra` (so a
recipe picks G-RA or D-RA by `reward.fn.name`), and `make_score` for another outcome check.
Dataset columns `gra_threshold` and `gra_gated` override δ and the switch per sample.
Pure Python: reward workers import it (torch only inside `evaluate_gra_vector`).
"""

from __future__ import annotations

import math
from typing import Any
from collections.abc import Callable, Mapping, Sequence

from rlkit.tasks.multistep import last_answer, parse_number

# ---------------------------------------------------------------- (a) gating


def gate_open(outcome: float, threshold: float) -> bool:
    """1[r^high ≥ δ]: `≥`, not `>`, because the abstract speaks of meeting a threshold (§11 row 15)."""
    return outcome >= threshold


def gated_step_rewards(outcome: float, step_rewards: Sequence[float], threshold: float) -> list[float]:
    """r̃_t: every step reward when the gate is open, all zeros (penalties too) when it is closed."""
    open_ = gate_open(outcome, threshold)
    return [float(r) if open_ else 0.0 for r in step_rewards]


def gated_accumulation(outcome: float, step_rewards: Sequence[float], threshold: float, gated: bool = True) -> float:
    """R_G-RA = r^high + 1[r^high ≥ δ]·Σ r^low; with gated=False, D-RA = r^high + Σ r^low.

    δ = −inf opens the gate for every finite outcome, so it equals D-RA.
    """
    if gated and not gate_open(outcome, threshold):
        return float(outcome)
    return float(outcome) + math.fsum(step_rewards)


def priority_gated(
    rewards: Sequence[float], priorities: Sequence[int | float], thresholds: Sequence[float]
) -> tuple[float, list[float]]:
    """Σ_k m_k·r_k with m_k = Π_{j: p_j > p_k} 1[r_j ≥ δ_j] (§8.1), and the masks m_k.

    A channel is gated only by channels of strictly higher priority, so the top channel is always
    counted and channels of equal priority never gate each other; a channel's own threshold
    matters only to the channels below it.
    """
    if not len(rewards) == len(priorities) == len(thresholds):
        raise ValueError(
            f"one priority and one threshold per reward channel: got {len(rewards)} rewards, "
            f"{len(priorities)} priorities, {len(thresholds)} thresholds"
        )
    passed = [gate_open(r, d) for r, d in zip(rewards, thresholds)]
    masks = [
        1.0 if all(passed[j] for j, p in enumerate(priorities) if p > priorities[k]) else 0.0
        for k in range(len(rewards))
    ]
    total = math.fsum(float(r) for r, m in zip(rewards, masks) if m)
    return total, masks


# ---------------------------------------------------------------- (b) outcome check of the multistep task

OutcomeCheck = Callable[[str, str], "float | None"]  # (response, ground_truth) → r^high; None = not applicable
def final_answer_outcome(response: str, ground_truth: str) -> float:
    """r^high ∈ {0, 1}: 1 when the last `<answer>` holds the ground truth's number.

    Two levels are enough for a task whose only verifiable result is the final value; a wrong,
    missing or non-numeric answer all score 0.
    """
    expected = parse_number(str(ground_truth))
    if expected is None:
        raise ValueError(f"ground truth {str(ground_truth)[:40]!r} is not a number")
    answer = last_answer(response)
    given = None if answer is None else parse_number(answer)
    return 1.0 if given == expected else 0.0


# ---------------------------------------------------------------- (c) reward functions

DEFAULT_THRESHOLD = 1.0  # δ: final_answer_outcome is 0 or 1, so step rewards count only on a correct answer
DEFAULT_GATED = True  # `score` is G-RA unless a sample's `gra_gated` column says otherwise
THRESHOLD_KEY, GATED_KEY = "gra_threshold", "gra_gated"  # per-sample overrides read from `extra`
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}


def gate_settings(extra: Mapping[str, Any] | None, gated: bool = DEFAULT_GATED) -> tuple[float, bool]:
    """(δ, gated) for one sample: the defaults, overridden by `extra[gra_threshold|gra_gated]`."""
    extra = extra or {}
    threshold = DEFAULT_THRESHOLD
    if extra.get(THRESHOLD_KEY) is not None:
        try:
            threshold = float(extra[THRESHOLD_KEY])  # strings like "-inf" are fine
        except (TypeError, ValueError):
            raise ValueError(f"{THRESHOLD_KEY}={extra[THRESHOLD_KEY]!r}: expected a number (δ)") from None
        if math.isnan(threshold):
            raise ValueError(f"{THRESHOLD_KEY} is NaN, which would close the gate for good; use inf for that")
    value = extra.get(GATED_KEY)
    if isinstance(value, bool) or value in (0, 1):
        gated = bool(value)
    elif isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        gated = value.strip().lower() in _TRUE
    elif value is not None:
        raise ValueError(f"{GATED_KEY}={value!r}: expected true or false")
    return threshold, gated


def gra_reward(
    response: str,
    ground_truth: str | None,
    step_rewards: Sequence[float],
    threshold: float,
    gated: bool,
    outcome_check: OutcomeCheck = final_answer_outcome,
) -> dict[str, float] | None:
    """{"score", "outcome", "steps", "gate_open"}; None when there is nothing to check against.

    `steps` is the raw Σ r^low (what a D-RA policy could farm), logged in both modes; `gate_open`
    says whether that sum entered the score, so score = outcome + gate_open · steps always.
    """
    if ground_truth is None:
        return None
    outcome = outcome_check(response, ground_truth)
    if outcome is None:
        return None
    counted = not gated or gate_open(outcome, threshold)
    return {
        "score": gated_accumulation(outcome, step_rewards, threshold, gated),
        "outcome": float(outcome),
        "steps": math.fsum(step_rewards),
        "gate_open": 1.0 if counted else 0.0,
    }


RewardFn = Callable[..., "dict[str, float] | None"]


def make_score(outcome_check: OutcomeCheck = final_answer_outcome, gated: bool = DEFAULT_GATED) -> RewardFn:
    """A contract reward function with its own outcome check and default switch (δ from the module
    default); per-sample `extra` columns still override both. For another task, in your file:
    `score = make_score(my_check)` with `my_check(response, ground_truth) -> float | None`."""

    def score(
        *, response: str, ground_truth: str | None, extra: Mapping[str, Any] | None = None,
        step_rewards: Sequence[float] = (), **_: Any,
    ) -> dict[str, float] | None:
        threshold, gated_now = gate_settings(extra, gated)
        return gra_reward(response, ground_truth, step_rewards, threshold, gated_now, outcome_check)

    return score


score = make_score()
score.__doc__ = "G-RA (or D-RA if DEFAULT_GATED is False) on the multistep task's final answer."
score_gra = make_score(gated=True)
score_gra.__name__ = score_gra.__qualname__ = "score_gra"
score_gra.__doc__ = "G-RA: step rewards count only when the final answer is right (r^high ≥ δ)."
score_dra = make_score(gated=False)
score_dra.__name__ = score_dra.__qualname__ = "score_dra"
score_dra.__doc__ = "D-RA, the ungated baseline: outcome plus every step reward."


# ---------------------------------------------------------------- worked vectors


def evaluate_gra_vector(inputs: dict[str, Any]) -> dict[str, Any]:
    """One tests/vectors/gra.json vector's outputs, keyed and nested as in the file.

    Vectors with `channels` exercise the priority form; the others the two-level form, plus GRPO
    advantages of both returns (rlkit's registered `grpo` estimator) when `group_id` is given.
    """
    if "channels" in inputs:
        per_trajectory = list(zip(*inputs["channels"]))  # channels[k][i] → rows of trajectory i
        results = [priority_gated(rewards, inputs["priorities"], inputs["thresholds"]) for rewards in per_trajectory]
        return {"masks_per_trajectory": [masks for _, masks in results], "return": [total for total, _ in results]}
    delta = float(inputs["delta"])
    episodes = list(zip(inputs["r_high"], inputs["r_low_steps"]))
    outputs: dict[str, Any] = {
        "gated_step_rewards": [gated_step_rewards(high, low, delta) for high, low in episodes],
        "return_G_RA": [gated_accumulation(high, low, delta) for high, low in episodes],
        "return_D_RA": [gated_accumulation(high, low, delta, gated=False) for high, low in episodes],
    }
    if "group_id" in inputs:
        for name in ("G_RA", "D_RA"):
            outputs[f"grpo_adv_{name}"] = _grpo_advantages(outputs[f"return_{name}"], inputs["group_id"])
    return outputs


def _grpo_advantages(scores: list[float], group_ids: list[str]) -> list[float]:
    """G-RA replaces the scalar score in GRPO (§8.2): run the registered estimator on the returns."""
    import torch

    from rlkit.algorithms.advantages import AdvantageInputs, compute_advantages

    order: dict[str, int] = {}
    group_index = torch.tensor([order.setdefault(uid, len(order)) for uid in group_ids], dtype=torch.long)
    batch = AdvantageInputs(
        scores=torch.tensor(scores, dtype=torch.float64),
        group_index=group_index,
        response_mask=torch.ones(len(scores), 1, dtype=torch.float64),
    )
    return compute_advantages("grpo", batch).advantages[:, 0].tolist()
