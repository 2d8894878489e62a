"""Contracts every registered advantage estimator, policy loss and regulariser must keep:
zero advantages give zero policy gradient, no NaN on empty rows or empty micro-batches, junk at
masked positions has no effect, token-mean independent of micro-batching (for components
without micro-batch statistics), and gradients that match finite differences."""

from __future__ import annotations

import math

import pytest
import torch

from rlkit.algorithms import (
    ADVANTAGES,
    POLICY_LOSSES,
    REGULARIZERS,
    AdvantageInputs,
    AlgorithmOptions,
    Denominators,
    PolicyLossInputs,
    actor_loss,
    aggregate,
    compute_advantages,
)
from rlkit.algorithms.methods import steer
from rlkit.algorithms.methods.grpo import GrpoLossOptions, ppo_clip_terms
from rlkit.algorithms.steps import run_ids, step_ids_from_mask

# Options that make the random test batch exercise each component's selection logic.
LOSS_OPTIONS = {"clip_cov": {"clip_cov_ratio": 0.2, "clip_cov_lb": -1.0, "clip_cov_ub": 5.0}, "kl_cov": {"kl_cov_ratio": 0.2}}
ADVANTAGE_OPTIONS = {"grpo_lambda": {"alpha": 0.6, "top_lambda": 0.5}}
LOSSES = POLICY_LOSSES.names()
REGULARIZER_NAMES = REGULARIZERS.names()
ESTIMATORS = ADVANTAGES.names()


def batch(seed: int = 0, rows: int = 6, width: int = 7, on_policy: bool = False, zero_advantages: bool = False):
    """A micro-batch with ragged rows, one fully masked row, a masked gap (a tool observation)
    and huge junk at every masked position."""
    generator = torch.Generator().manual_seed(seed)
    mask = torch.ones(rows, width, dtype=torch.float64)
    for row in range(rows):
        mask[row, width - row % 3 :] = 0  # ragged ends
    mask[1, :] = 0  # an empty response
    mask[2, 2:4] = 0  # an observation between two turns
    old = -torch.rand(rows, width, generator=generator, dtype=torch.float64) * 2 - 0.05
    new = old if on_policy else old + 0.3 * torch.randn(rows, width, generator=generator, dtype=torch.float64)
    advantages = torch.randn(rows, 1, generator=generator, dtype=torch.float64).expand(rows, width).clone()
    if zero_advantages:
        advantages.zero_()
    junk = torch.where(mask > 0, torch.zeros_like(mask), torch.full_like(mask, 1e4))
    return {
        "log_prob": (new + junk).clone(),
        "old_log_prob": old - junk,
        "advantages": advantages + junk,
        "response_mask": mask,
        "entropy": torch.rand(rows, width, generator=generator, dtype=torch.float64) + junk,
        "ref_log_prob": old + 0.1 + junk,
        "old_entropy": torch.rand(rows, width, generator=generator, dtype=torch.float64) * 2 + junk,
        "step_ids": step_ids_from_mask(mask),
    }


def loss_inputs(tensors: dict, log_prob: torch.Tensor, rows=slice(None)) -> PolicyLossInputs:
    picked = {name: value[rows] for name, value in tensors.items() if name != "log_prob"}
    return PolicyLossInputs(log_prob=log_prob, generator=torch.Generator().manual_seed(7), **picked)


def config(loss: str = "grpo", regularizer: str | None = None, **extra) -> AlgorithmOptions:
    return AlgorithmOptions(
        loss=loss,
        loss_options=LOSS_OPTIONS.get(loss, {}),
        regularizers={regularizer: {}} if regularizer else {},
        **extra,
    )


PARTS = [("loss", name) for name in LOSSES] + [("regularizer", name) for name in REGULARIZER_NAMES]


def part_config(kind: str, name: str, **extra) -> AlgorithmOptions:
    return config(name, **extra) if kind == "loss" else config("grpo", name, **extra)


def total_and_grad(tensors: dict, algorithm: AlgorithmOptions, log_prob: torch.Tensor | None = None):
    log_prob = (tensors["log_prob"] if log_prob is None else log_prob).clone().requires_grad_(True)
    total, metrics = actor_loss(loss_inputs(tensors, log_prob), algorithm, Denominators.of(tensors["response_mask"]))
    (gradient,) = torch.autograd.grad(total, log_prob)
    return total, gradient, metrics


@pytest.mark.parametrize(("kind", "name"), PARTS)
def test_zero_advantages_on_policy_give_zero_gradient(kind: str, name: str) -> None:
    tensors = batch(on_policy=True, zero_advantages=True)
    total, gradient, _ = total_and_grad(tensors, part_config(kind, name))
    assert torch.count_nonzero(gradient) == 0
    assert float(total.detach()) == 0.0


@pytest.mark.parametrize("name", LOSSES)
def test_zero_advantages_off_policy_leave_only_declared_penalties(name: str) -> None:
    """With A = 0 the policy-gradient part vanishes; only KL-Cov's κ|δ| (on its selected tokens) remains."""
    tensors = batch(zero_advantages=True)
    _, gradient, metrics = total_and_grad(tensors, config(name))
    if name == "kl_cov":
        assert 0 < torch.count_nonzero(gradient) <= metrics["kl_cov/selected_tokens"]
    else:
        assert torch.count_nonzero(gradient) == 0


@pytest.mark.parametrize(("kind", "name"), PARTS)
def test_fully_masked_row_and_empty_micro_batch_stay_finite(kind: str, name: str) -> None:
    algorithm = part_config(kind, name, entropy_coeff=0.01, kl_coef=0.001)
    tensors = batch()
    total, gradient, metrics = total_and_grad(tensors, algorithm)
    assert math.isfinite(float(total.detach())) and bool(torch.isfinite(gradient).all())
    assert torch.count_nonzero(gradient[1]) == 0  # the empty response
    assert torch.count_nonzero(gradient[tensors["response_mask"] == 0]) == 0
    empty = {key: value.clone() for key, value in tensors.items()}
    empty["response_mask"] = torch.zeros_like(tensors["response_mask"])
    empty["step_ids"] = step_ids_from_mask(empty["response_mask"])
    total, gradient, metrics = total_and_grad(empty, algorithm)
    assert float(total.detach()) == 0.0 and torch.count_nonzero(gradient) == 0
    assert all(math.isfinite(value) for key, value in metrics.items() if not key.endswith(("_min", "_max")))


@pytest.mark.parametrize(("kind", "name"), PARTS)
def test_junk_at_masked_positions_has_no_effect(kind: str, name: str) -> None:
    tensors = batch(seed=3)
    clean = {key: value.clone() for key, value in tensors.items()}
    valid = tensors["response_mask"] > 0
    for key in ("log_prob", "old_log_prob", "advantages", "entropy", "ref_log_prob", "old_entropy"):
        clean[key] = torch.where(valid, tensors[key], torch.zeros_like(tensors[key]))
    algorithm = part_config(kind, name, entropy_coeff=0.01, kl_coef=0.001)
    total, gradient, _ = total_and_grad(tensors, algorithm)
    clean_total, clean_gradient, _ = total_and_grad(clean, algorithm)
    torch.testing.assert_close(total, clean_total)
    torch.testing.assert_close(gradient, clean_gradient)


def split_invariant_parts():
    return [
        (kind, name)
        for kind, name in PARTS
        if not (POLICY_LOSSES if kind == "loss" else REGULARIZERS).get(name).micro_batch_statistics
    ]


@pytest.mark.parametrize(("kind", "name"), split_invariant_parts())
@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_result_independent_of_micro_batching(kind: str, name: str, mode: str) -> None:
    """Summing micro-batch contributions with the mini-batch's denominators gives the whole-batch loss and gradient."""
    tensors = batch(seed=5)
    algorithm = part_config(kind, name, loss_agg_mode=mode, entropy_coeff=0.01, kl_coef=0.001)
    denominators = Denominators.of(tensors["response_mask"])
    whole, whole_gradient, _ = total_and_grad(tensors, algorithm)
    log_prob = tensors["log_prob"].clone().requires_grad_(True)
    parts = [
        actor_loss(loss_inputs(tensors, log_prob[rows], rows), algorithm, denominators)[0]
        for rows in (slice(0, 1), slice(1, 4), slice(4, 6))
    ]
    (split_gradient,) = torch.autograd.grad(sum(parts), log_prob)
    torch.testing.assert_close(sum(parts), whole)
    torch.testing.assert_close(split_gradient, whole_gradient)


def test_components_with_micro_batch_statistics_are_exactly_the_declared_ones() -> None:
    """Clip-Cov and KL-Cov select tokens, STEER normalises weights, over the micro-batch, as
    their official code does; any other component must be split-invariant (tested above)."""
    declared = {name for name in LOSSES if POLICY_LOSSES.get(name).micro_batch_statistics}
    declared |= {name for name in REGULARIZER_NAMES if REGULARIZERS.get(name).micro_batch_statistics}
    assert declared == {"clip_cov", "kl_cov", "steer"}


def finite_difference(loss_of, point: torch.Tensor, mask: torch.Tensor, step: float = 1e-6) -> torch.Tensor:
    numeric = torch.zeros_like(point)
    for index in mask.flatten().nonzero().flatten().tolist():
        offset = torch.zeros_like(point).view(-1)
        offset[index] = step
        offset = offset.view_as(point)
        numeric.view(-1)[index] = (loss_of(point + offset) - loss_of(point - offset)) / (2 * step)
    return numeric


@pytest.mark.parametrize(("kind", "name"), [part for part in PARTS if part != ("loss", "steer")])
@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean"])
def test_gradient_matches_finite_differences(kind: str, name: str, mode: str) -> None:
    tensors = batch(seed=11)
    algorithm = part_config(kind, name, loss_agg_mode=mode, entropy_coeff=0.01, kl_coef=0.001)
    denominators = Denominators.of(tensors["response_mask"])

    def loss_of(log_prob: torch.Tensor) -> torch.Tensor:
        return actor_loss(loss_inputs(tensors, log_prob), algorithm, denominators)[0]

    _, analytic, _ = total_and_grad(tensors, algorithm)
    numeric = finite_difference(loss_of, tensors["log_prob"].detach(), tensors["response_mask"])
    torch.testing.assert_close(analytic, numeric, rtol=1e-4, atol=1e-7)


def test_steer_gradient_matches_finite_differences_with_weights_held_fixed() -> None:
    """STEER's weights are constants (stop-gradient), so the check freezes them at the point."""
    tensors = batch(seed=13)
    options = steer.SteerOptions()
    mask = tensors["response_mask"]
    frozen = steer.token_weights(loss_inputs(tensors, tensors["log_prob"]), options)[1]
    clip = GrpoLossOptions(options.clip_ratio_low, options.clip_ratio_high, options.clip_ratio_c)

    def loss_of(log_prob: torch.Tensor) -> torch.Tensor:
        per_token = ppo_clip_terms(loss_inputs(tensors, log_prob), clip).per_token * frozen
        return aggregate(per_token, mask, "token-mean", Denominators.of(mask))

    _, analytic, _ = total_and_grad(tensors, config("steer"))
    numeric = finite_difference(loss_of, tensors["log_prob"].detach(), mask)
    torch.testing.assert_close(analytic, numeric, rtol=1e-4, atol=1e-7)


# ---------------------------------------------------------------- advantage estimators


def advantage_batch(scores: list[float], groups: list[int], lengths: list[int], entropy: float | None = None) -> AdvantageInputs:
    width = max(lengths + [1])
    mask = torch.zeros(len(scores), width)
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
    entropy_tensor = torch.full(mask.shape, entropy if entropy is not None else 0.5)
    if entropy is None:
        entropy_tensor = torch.rand(mask.shape, generator=torch.Generator().manual_seed(0)) * 2
    return AdvantageInputs(
        scores=torch.tensor(scores),
        group_index=torch.tensor(groups),
        response_mask=mask,
        old_entropy=entropy_tensor,
        step_ids=step_ids_from_mask(mask),
    )


@pytest.mark.parametrize("name", ESTIMATORS)
def test_all_equal_groups_of_equal_length_give_zero_advantages(name: str) -> None:
    inputs = advantage_batch([1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1], [4] * 6, entropy=0.7)
    options = dict(ADVANTAGE_OPTIONS.get(name, {}))
    if name == "empg":
        options["zeta"] = 0.0  # the clarity bonus is EMPG's signal for dead groups (§6.3)
    result = compute_advantages(name, inputs, options)
    assert torch.count_nonzero(result.advantages.abs() > 1e-6) == 0


@pytest.mark.parametrize("name", ESTIMATORS)
def test_empty_responses_and_singletons_stay_finite(name: str) -> None:
    inputs = advantage_batch([1, 0, 1, 0.5, 1], [0, 0, 1, 1, 2], [3, 0, 2, 5, 4])
    result = compute_advantages(name, inputs, ADVANTAGE_OPTIONS.get(name, {}))
    assert bool(torch.isfinite(result.advantages).all())
    assert torch.count_nonzero(result.advantages[1]) == 0  # the empty response
    assert all(math.isfinite(value) for value in result.metrics.values())
    assert result.advantages.shape == inputs.response_mask.shape


@pytest.mark.parametrize("name", ESTIMATORS)
def test_group_order_and_batch_position_do_not_matter(name: str) -> None:
    """Permuting the rows permutes the advantages (ties in GRPO-λ's ranking aside: none here)."""
    inputs = advantage_batch([1, 0, 1, 1, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1, 2, 2, 2], [3, 5, 4, 2, 6, 3, 5, 2, 7])
    options = ADVANTAGE_OPTIONS.get(name, {})
    reference = compute_advantages(name, inputs, options).advantages
    order = torch.tensor([6, 7, 8, 0, 1, 2, 3, 4, 5])
    remap = {0: 1, 1: 2, 2: 0}
    permuted = AdvantageInputs(
        scores=inputs.scores[order],
        group_index=torch.tensor([remap[int(g)] for g in inputs.group_index[order]]),
        response_mask=inputs.response_mask[order],
        old_entropy=inputs.old_entropy[order],
        step_ids=inputs.step_ids[order],
    )
    torch.testing.assert_close(compute_advantages(name, permuted, options).advantages, reference[order])


def test_step_ids_follow_turns_or_mask_runs() -> None:
    mask = torch.tensor([[1, 1, 0, 0, 1, 1, 0], [1, 1, 1, 1, 0, 0, 0]], dtype=torch.float32)
    assert step_ids_from_mask(mask).tolist() == [[0, 0, -1, -1, 1, 1, -1], [0, 0, 0, 0, -1, -1, -1]]
    # Row 0 recorded no turns (mask runs decide), row 1 did (its turns decide).
    assert step_ids_from_mask(mask, [(), (2,)]).tolist() == [[0, 0, -1, -1, 1, 1, -1], [0, 0, 1, 1, -1, -1, -1]]
    assert step_ids_from_mask(mask, [(4,), ()]).tolist() == [[0, 0, -1, -1, 1, 1, -1], [0, 0, 0, 0, -1, -1, -1]]
    ids, count = run_ids(mask > 0, step_ids_from_mask(mask, [(), (2,)]))
    assert count == 4 and ids.tolist() == [[0, 0, -1, -1, 1, 1, -1], [2, 2, 3, 3, -1, -1, -1]]
