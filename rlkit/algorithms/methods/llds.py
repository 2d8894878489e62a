"""LLDS: penalise likelihood that an update takes away from the actions of non-negative-advantage
responses, gated per action (or per response).

Deng et al., "On GRPO Collapse in Search-R1: The Lazy Likelihood-Displacement Death Spiral",
arXiv 2512.04220; official `dp_actor.py::update_policy` no_reduce block (ALGORITHMS.md §7).
A regulariser: `algorithm.regularizers: {llds: {...}}` adds it to any policy loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlkit.algorithms.losses import REGULARIZERS, LossTerms, PolicyLossInputs, masked_log_ratio
from rlkit.algorithms.steps import run_ids, segment_sum, step_ids_from_mask


@dataclass(frozen=True)
class LldsOptions:
    """Hyperparameters of LLDS; defaults from the released script train_grpo_nqhot.sh."""

    no_reduce_lambda: float = 0.2
    """λ, the penalty weight (released script 0.2; the yaml default 0.0 turns LLDS off)."""
    chunk_noreduce: bool = True
    """True: gate each action (a run of non-negative-advantage tokens within one turn), the released setting; False:
    gate whole responses."""
    mask_answer: bool = False
    """Use answer_no_reduce_lambda on tokens outside the answer (needs answer masks; released script: off)."""
    answer_no_reduce_lambda: float = 0.2
    """The weight for non-answer tokens when mask_answer is on, capped at λ (released MASK_WEIGHT 0.2)."""

    def extra_needs(self) -> frozenset[str]:
        return frozenset({"answer_mask"}) if self.mask_answer else frozenset()

    def __post_init__(self) -> None:
        if self.no_reduce_lambda < 0 or self.answer_no_reduce_lambda < 0:
            raise ValueError("no_reduce_lambda and answer_no_reduce_lambda must be ≥ 0")


@dataclass
class LldsDetails:
    gate_ids: torch.Tensor  # [B, R] gate (action or response) of each preserved token, −1 elsewhere
    gate_sums: torch.Tensor  # [N] Σ (ℓ_old − ℓ) over each gate's tokens
    active_tokens: torch.Tensor  # [B, R] bool, tokens in an active gate
    terms: LossTerms


def llds_details(inputs: PolicyLossInputs, options: LldsOptions) -> LldsDetails:
    valid = inputs.valid
    displacement = -masked_log_ratio(inputs)  # ℓ_old − ℓ, carries the gradient through ℓ
    preserve = valid & (inputs.advantages >= 0)
    if options.chunk_noreduce:
        steps = inputs.step_ids if inputs.step_ids is not None else step_ids_from_mask(inputs.response_mask)
        gate_ids, count = run_ids(preserve, steps)
    else:
        rows = torch.arange(preserve.shape[0], device=preserve.device)[:, None].expand_as(preserve)
        gate_ids, count = torch.where(preserve, rows, -1), preserve.shape[0]
    with torch.no_grad():
        gate_sums = segment_sum(displacement.detach(), gate_ids, count)
        active_gate = gate_sums > 0  # the threshold is hard-coded to 0 in the released code
        # Id −1 (not in any gate) reads the appended False.
        lookup = torch.cat([active_gate, torch.zeros(1, dtype=torch.bool, device=active_gate.device)])
        active = preserve & lookup[gate_ids]
        weight = torch.full_like(displacement, options.no_reduce_lambda)
        if options.mask_answer:
            if inputs.answer_mask is None:
                raise ValueError(
                    "LLDS mask_answer=True needs answer masks, which this pipeline does not record yet; "
                    "set algorithm.regularizers.llds.mask_answer=false"
                )
            capped = min(options.answer_no_reduce_lambda, options.no_reduce_lambda)
            weight = torch.where(inputs.answer_mask > 0, weight, torch.full_like(weight, capped))
    penalty = torch.where(active, weight * torch.relu(displacement), torch.zeros_like(displacement))
    terms = LossTerms(
        per_token=penalty,
        diagnostics={
            "active_frac": active.to(displacement.dtype),
            "penalised_frac": (active & (displacement.detach() > 0)).to(displacement.dtype),
        },
        stats={"gates": float(count), "active_gates": float(active_gate.sum())},
    )
    return LldsDetails(gate_ids, gate_sums, active, terms)


@REGULARIZERS.add("llds", LldsOptions, needs={"off_policy"})
def llds_penalty(inputs: PolicyLossInputs, options: LldsOptions) -> LossTerms:
    """λ·max(0, ℓ_old − ℓ) on the tokens of active gates; the caller takes the token-mean over
    all valid tokens (negative-advantage rows count in the denominator)."""
    return llds_details(inputs, options).terms
