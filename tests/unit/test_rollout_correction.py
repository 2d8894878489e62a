"""Truncated importance weighting against the rollout policy (algorithm.rollout_correction)."""

from __future__ import annotations

import math

import pytest
import torch

from rlkit.algorithms import POLICY_LOSSES, AlgorithmOptions, Denominators, PolicyLossInputs, actor_loss
from rlkit.algorithms.options import resolve_rollout_correction
from test_method_contracts import LOSS_OPTIONS, batch


def run(tensors: dict, loss: str, correction: str, rollout: torch.Tensor, cap: float = 2.0):
    log_prob = tensors["log_prob"].clone().requires_grad_(True)
    inputs = PolicyLossInputs(
        log_prob=log_prob, generator=torch.Generator().manual_seed(7), rollout_log_prob=rollout,
        **{name: value for name, value in tensors.items() if name != "log_prob"},
    )
    options = AlgorithmOptions(loss=loss, loss_options=LOSS_OPTIONS.get(loss, {}), rollout_correction=correction,
                               rollout_is_cap=cap)
    total, metrics = actor_loss(inputs, options, Denominators.of(tensors["response_mask"]))
    (gradient,) = torch.autograd.grad(total, log_prob)
    return total, gradient, metrics


@pytest.mark.parametrize("loss", POLICY_LOSSES.names())
def test_rollout_policy_equal_to_the_old_one_changes_nothing(loss: str) -> None:
    tensors = batch(seed=3)
    plain = run(tensors, loss, "none", tensors["old_log_prob"])
    weighted = run(tensors, loss, "tis", tensors["old_log_prob"].clone())
    torch.testing.assert_close(weighted[0], plain[0])
    torch.testing.assert_close(weighted[1], plain[1])
    assert weighted[2]["rollout_is/mean"] == pytest.approx(1.0) and weighted[2]["rollout_is/clipfrac"] == 0.0


def test_each_tokens_loss_and_gradient_are_scaled_by_the_truncated_ratio() -> None:
    tensors = batch(seed=4)
    mask = tensors["response_mask"] > 0
    generator = torch.Generator().manual_seed(11)
    shift = torch.randn(tensors["old_log_prob"].shape, generator=generator, dtype=torch.float64)
    rollout = tensors["old_log_prob"] + shift  # an older policy: ratios on both sides of 1, some beyond the cap
    expected_weight = torch.exp(-shift).clamp(max=2.0)
    plain = run(tensors, "grpo", "none", rollout)
    weighted = run(tensors, "grpo", "tis", rollout)
    # PPO-clip's per-token gradient scales with the weight (the weight is a constant).
    torch.testing.assert_close(weighted[1][mask], (plain[1] * expected_weight)[mask])
    assert weighted[2]["rollout_is/weight_max"] == pytest.approx(float(expected_weight[mask].max()))
    assert weighted[2]["rollout_is/weight_max"] <= 2.0
    assert weighted[2]["rollout_is/clipfrac"] == pytest.approx(float((torch.exp(-shift)[mask] > 2.0).double().mean()))
    assert weighted[2]["rollout_is/mean"] == pytest.approx(float(expected_weight[mask].mean()))


def test_huge_ratios_and_junk_at_masked_positions_stay_finite() -> None:
    tensors = batch(seed=5)
    rollout = tensors["old_log_prob"] - 1e4  # ratio e^{10000} on valid tokens; junk elsewhere
    total, gradient, metrics = run(tensors, "grpo", "tis", rollout, cap=3.0)
    assert math.isfinite(float(total.detach())) and torch.isfinite(gradient).all()
    assert metrics["rollout_is/weight_max"] == 3.0 and metrics["rollout_is/clipfrac"] == pytest.approx(1.0)


def test_auto_corrects_only_asynchronous_training() -> None:
    assert resolve_rollout_correction(AlgorithmOptions(), 0).rollout_correction == "none"
    assert resolve_rollout_correction(AlgorithmOptions(), 2).rollout_correction == "tis"
    assert resolve_rollout_correction(AlgorithmOptions(rollout_correction="none"), 2).rollout_correction == "none"
    with pytest.raises(ValueError, match="rollout log-probs"):
        tensors = batch()
        run(tensors, "grpo", "tis", None)  # type: ignore[arg-type]
