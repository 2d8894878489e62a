"""GRPO advantages, PPO-clip loss, aggregation and KL against ../shared/vectors/grpo.json,
plus finite-difference gradients and micro-batch invariance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rlkit.algorithms import (
    AdvantageInputs,
    AlgorithmOptions,
    Denominators,
    PolicyLossInputs,
    actor_loss,
    aggregate,
    compute_advantages,
)
from rlkit.algorithms.kl import kl_penalty
from rlkit.algorithms.methods.grpo import GrpoLossOptions, ppo_clip_terms

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "grpo.json").read_text())["vectors"]
BY_NAME = {vector["name"]: vector for vector in VECTORS}
MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")


def tensor(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def close(actual, expected, rtol=1e-5, atol=1e-6) -> None:
    torch.testing.assert_close(torch.as_tensor(actual, dtype=torch.float64), tensor(expected), rtol=rtol, atol=atol)


def dense_groups(ids: list[str]) -> torch.Tensor:
    order: dict[str, int] = {}
    return torch.tensor([order.setdefault(uid, len(order)) for uid in ids])


@pytest.mark.parametrize("norm_by_std", [True, False])
def test_grpo_outcome_advantage_matches_vectors(norm_by_std: bool) -> None:
    vector = BY_NAME["grpo_outcome_advantage"]
    inputs, outputs = vector["inputs"], vector["outputs"]
    key = "norm_adv_by_std_in_grpo=True" if norm_by_std else "norm_adv_by_std_in_grpo=False (Dr.GRPO)"
    mask = tensor(inputs["response_mask"])
    scores = tensor(inputs["token_level_rewards"]).sum(dim=-1)
    advantages = compute_advantages(
        "grpo",
        AdvantageInputs(scores=scores, group_index=dense_groups(inputs["index"]), response_mask=mask),
        {"norm_adv_by_std": norm_by_std, "epsilon": inputs["epsilon"]},
    ).advantages
    close(advantages, outputs[key]["token_advantages"])


def loss_case(name: str):
    vector = BY_NAME[name]
    inputs = vector["inputs"]
    log_prob = tensor(inputs["log_prob"]).requires_grad_(True)
    loss_inputs = PolicyLossInputs(
        log_prob=log_prob,
        old_log_prob=tensor(inputs["old_log_prob"]),
        advantages=tensor(inputs["advantages"]),
        response_mask=tensor(inputs["response_mask"]),
    )
    options = GrpoLossOptions(inputs["clip_ratio_low"], inputs["clip_ratio_high"], inputs["clip_ratio_c"])
    return vector, log_prob, loss_inputs, options


@pytest.mark.parametrize("name", ["grpo_policy_loss_asym_clip_dualclip", "grpo_policy_loss_symmetric_clip"])
@pytest.mark.parametrize("mode", MODES)
def test_ppo_clip_loss_and_gradient_match_vectors(name: str, mode: str) -> None:
    vector, log_prob, inputs, options = loss_case(name)
    outputs = vector["outputs"]
    terms = ppo_clip_terms(inputs, options)
    mask = inputs.response_mask
    close(terms.per_token * mask, outputs["per_token_loss"])
    close(terms.diagnostics["pg_clipfrac"] * mask, outputs["clipped_by_band"])
    close(terms.diagnostics["pg_clipfrac_lower"] * mask, outputs["dual_clipped"])
    loss = aggregate(terms.per_token, mask, mode, Denominators.of(mask))
    close(loss, outputs["loss"][mode])
    (gradient,) = torch.autograd.grad(loss, log_prob)
    close(gradient, outputs["grad_wrt_log_prob"][mode])


def test_masked_junk_has_no_effect() -> None:
    _, log_prob, inputs, options = loss_case("grpo_policy_loss_asym_clip_dualclip")
    mask = inputs.response_mask
    reference = aggregate(ppo_clip_terms(inputs, options).per_token, mask, "token-mean", Denominators.of(mask))
    junk = torch.where(mask > 0, torch.zeros_like(mask), torch.full_like(mask, 1e6))
    poisoned = PolicyLossInputs(
        log_prob=log_prob + junk, old_log_prob=inputs.old_log_prob - junk,
        advantages=inputs.advantages + junk, response_mask=mask,
    )
    close(aggregate(ppo_clip_terms(poisoned, options).per_token, mask, "token-mean", Denominators.of(mask)),
          float(reference.detach()))


@pytest.mark.parametrize("mode", MODES)
def test_gradient_matches_finite_differences(mode: str) -> None:
    _, log_prob, inputs, options = loss_case("grpo_policy_loss_asym_clip_dualclip")
    mask, denominators = inputs.response_mask, Denominators.of(inputs.response_mask)

    def loss_at(values: torch.Tensor) -> torch.Tensor:
        shifted = PolicyLossInputs(values, inputs.old_log_prob, inputs.advantages, mask)
        return aggregate(ppo_clip_terms(shifted, options).per_token, mask, mode, denominators)

    (analytic,) = torch.autograd.grad(loss_at(log_prob), log_prob)
    numeric = torch.zeros_like(analytic)
    step = 1e-6
    base = log_prob.detach()
    for index in range(base.numel()):
        offset = torch.zeros_like(base).view(-1)
        offset[index] = step
        offset = offset.view_as(base)
        numeric.view(-1)[index] = (loss_at(base + offset) - loss_at(base - offset)) / (2 * step)
    torch.testing.assert_close(analytic, numeric, rtol=1e-4, atol=1e-7)


KL_KEYS = {"k1": "k1", "k2": "k2", "low_var_kl": "k3 (low_var_kl)", "k3+": "k3+ (straight-through)"}


@pytest.mark.parametrize("kl_type", list(KL_KEYS))
def test_kl_estimators_match_vectors(kl_type: str) -> None:
    vector = BY_NAME["grpo_kl_and_total_loss"]
    inputs, expected = vector["inputs"], vector["outputs"]["kl"][KL_KEYS[kl_type]]
    log_prob = tensor(inputs["log_prob"]).requires_grad_(True)
    mask = tensor(inputs["response_mask"])
    per_token = kl_penalty(log_prob, tensor(inputs["ref_log_prob"]), kl_type)
    close(per_token * mask, expected["per_token"], rtol=3e-5)
    value = aggregate(per_token, mask, "token-mean", Denominators.of(mask))
    if "token_mean" in expected:
        close(value, expected["token_mean"], rtol=3e-5)
    (gradient,) = torch.autograd.grad(value, log_prob)
    close(gradient, expected["grad_token_mean"], rtol=3e-5)


def test_total_actor_loss_matches_vectors() -> None:
    vector = BY_NAME["grpo_kl_and_total_loss"]
    inputs, outputs = vector["inputs"], vector["outputs"]
    log_prob = tensor(inputs["log_prob"]).requires_grad_(True)
    mask = tensor(inputs["response_mask"])
    config = AlgorithmOptions(
        loss_options={k: inputs[k] for k in ("clip_ratio_low", "clip_ratio_high", "clip_ratio_c")},
        entropy_coeff=inputs["entropy_coeff"], kl_coef=inputs["kl_loss_coef"], kl_type="low_var_kl",
    )
    loss_inputs = PolicyLossInputs(
        log_prob=log_prob, old_log_prob=tensor(inputs["old_log_prob"]), advantages=tensor(inputs["advantages"]),
        response_mask=mask, entropy=tensor(inputs["entropy"]), ref_log_prob=tensor(inputs["ref_log_prob"]),
    )
    total, metrics = actor_loss(loss_inputs, config, Denominators.of(mask))
    close(total, outputs["total_loss"], rtol=3e-5)
    close(metrics["pg_loss"], outputs["pg_loss"])
    close(metrics["kl_loss"], outputs["kl_loss_k3"], rtol=3e-5)
    (gradient,) = torch.autograd.grad(total, log_prob)
    close(gradient, outputs["grad_total_wrt_log_prob"], rtol=3e-5, atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_loss_is_invariant_to_micro_batch_split(mode: str) -> None:
    torch.manual_seed(0)
    rows, width = 8, 6
    mask = (torch.rand(rows, width) > 0.3).double()
    mask[3] = 0.0  # an empty response must not shift any denominator
    log_prob = (-torch.rand(rows, width, dtype=torch.float64)).requires_grad_(True)
    inputs = dict(old_log_prob=-torch.rand(rows, width, dtype=torch.float64),
                  advantages=torch.randn(rows, 1, dtype=torch.float64).expand(rows, width))
    config = AlgorithmOptions(loss_agg_mode=mode)
    denominators = Denominators.of(mask)

    def micro_loss(select) -> torch.Tensor:
        micro = PolicyLossInputs(log_prob[select], inputs["old_log_prob"][select], inputs["advantages"][select], mask[select])
        return actor_loss(micro, config, denominators)[0]

    whole = micro_loss(slice(None))
    pieces = sum(micro_loss(slice(start, start + 3)) for start in range(0, rows, 3))
    torch.testing.assert_close(pieces, whole)
    (grad_whole,) = torch.autograd.grad(whole, log_prob)
    (grad_pieces,) = torch.autograd.grad(pieces, log_prob)
    torch.testing.assert_close(grad_pieces, grad_whole)


def test_zero_advantage_gives_zero_gradient() -> None:
    log_prob = (-torch.rand(4, 5, dtype=torch.float64)).requires_grad_(True)
    mask = torch.ones(4, 5, dtype=torch.float64)
    inputs = PolicyLossInputs(log_prob, log_prob.detach() - 0.1, torch.zeros(4, 5, dtype=torch.float64), mask)
    total, _ = actor_loss(inputs, AlgorithmOptions(), Denominators.of(mask))
    (gradient,) = torch.autograd.grad(total, log_prob)
    assert torch.count_nonzero(gradient) == 0


def test_dual_clip_bound_must_exceed_one() -> None:
    with pytest.raises(ValueError, match="clip_ratio_c must be > 1"):
        GrpoLossOptions(clip_ratio_c=1.0)
