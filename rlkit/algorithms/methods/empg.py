"""EMPG: modulate each step's advantage by the policy's confidence at that step, plus a bonus
for leading into a confident next step.

Wang et al., "Harnessing Uncertainty: Entropy-Modulated Policy Gradients for Long-Horizon LLM
Agents", arXiv 2509.09265 (ALGORITHMS.md §6; project-page pseudocode, completed from the
third-party ARLArena adaptation where the page is cut off).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from rlkit.algorithms.advantages import ADVANTAGES, AdvantageInputs, AdvantageResult, compute_advantages
from rlkit.algorithms.steps import step_ids_from_mask


@dataclass(frozen=True)
class EmpgOptions:
    """Hyperparameters of EMPG; defaults from the project-page pseudocode (k = k_f = 1, ζ = 0.1)."""

    k: float = 1.0
    """Sharpness of the self-calibrating scale g = exp(−k·Ĥ)/mean(exp(−k·Ĥ)) (project page 1.0)."""
    k_f: float = 1.0
    """Sharpness of the future-clarity bonus f = exp(−k_f·Ĥ) (project page 1.0)."""
    zeta: float = 0.1
    """Weight ζ of the future-clarity bonus (project page 0.1; the ARLArena adaptation uses 0.05)."""
    base: str = "grpo"
    """The outcome advantage estimator EMPG modulates (any registered estimator except empg)."""
    base_options: dict[str, Any] = field(default_factory=dict)
    """Options of the base estimator."""

    def extra_needs(self) -> frozenset[str]:
        """The base estimator's needs are EMPG's too."""
        from rlkit.algorithms.needs import component_needs

        return component_needs(ADVANTAGES, self.base, self.base_options)

    def __post_init__(self) -> None:
        if self.base == "empg":
            raise ValueError("EMPG's base estimator cannot be empg itself")
        # An unknown name or bad base options fail here, when the config loads.
        ADVANTAGES.get(self.base).build_options(self.base_options)


@dataclass
class EmpgSteps:
    """Every intermediate, one entry per step (steps ordered by row, then step index)."""

    row: torch.Tensor  # [S] long, trajectory of each step
    index: torch.Tensor  # [S] long, step index within its trajectory
    entropy: torch.Tensor  # [S] mean old-policy token entropy of the step
    normalised: torch.Tensor  # [S] batch min-max normalised entropy
    g: torch.Tensor  # [S]
    f: torch.Tensor  # [S]
    modulated: torch.Tensor  # [S] A_mod
    final: torch.Tensor  # [S] A_final = A_mod − mean(A_mod)
    shift: float  # mean(A_mod), subtracted


def modulate(trajectory_advantage: torch.Tensor, token_entropy: torch.Tensor, step_ids: torch.Tensor,
             options: EmpgOptions) -> EmpgSteps:
    """EMPG over steps. `trajectory_advantage` [B], `token_entropy` [B, R] (old policy),
    `step_ids` [B, R] (−1 = not part of any step). Float64 throughout."""
    span = int(step_ids.max()) + 1 if step_ids.numel() and int(step_ids.max()) >= 0 else 0
    keys = torch.where(step_ids >= 0, torch.arange(step_ids.shape[0])[:, None] * span + step_ids, -1)
    present, key_of_token = torch.unique(keys[keys >= 0], return_inverse=True)
    count = len(present)
    empty = torch.zeros(0, dtype=torch.float64)
    if count == 0:
        return EmpgSteps(empty.long(), empty.long(), empty, empty, empty, empty, empty, empty, 0.0)
    entropy_sum = torch.zeros(count, dtype=torch.float64).index_add(0, key_of_token, token_entropy[keys >= 0].to(torch.float64))
    tokens = torch.zeros(count, dtype=torch.float64).index_add(0, key_of_token,
                                                               torch.ones_like(key_of_token, dtype=torch.float64))
    entropy = entropy_sum / tokens
    row, index = present // span, present % span
    normalised = (entropy - entropy.min()) / (entropy.max() - entropy.min() + 1e-8)
    scale = torch.exp(-options.k * normalised)
    g = scale / (scale.mean() + 1e-8)
    f = torch.exp(-options.k_f * normalised)
    # The bonus of step t is f of step t+1 of the same trajectory; steps are sorted by (row, index).
    has_next = torch.zeros(count, dtype=torch.bool)
    next_f = torch.zeros(count, dtype=torch.float64)
    if count > 1:
        has_next[:-1] = row[1:] == row[:-1]
        next_f[:-1] = f[1:]
    modulated = g * trajectory_advantage.to(torch.float64)[row] + options.zeta * torch.where(has_next, next_f, 0.0)
    shift = float(modulated.mean())
    return EmpgSteps(row, index, entropy, normalised, g, f, modulated, modulated - shift, shift)


@ADVANTAGES.add("empg", EmpgOptions, needs={"old_entropy"})
def empg_advantage(inputs: AdvantageInputs, options: EmpgOptions) -> AdvantageResult:
    """The base estimator's per-response advantage, modulated per step by EMPG, broadcast to each
    step's tokens. A single-turn response is one step."""
    if inputs.old_entropy is None:
        raise ValueError("EMPG needs the old policy's per-token entropy (AdvantageInputs.old_entropy)")
    base = compute_advantages(options.base, inputs, options.base_options)
    mask = inputs.response_mask > 0
    tokens = mask.sum(dim=-1).clamp(min=1)
    # Outcome estimators put one value on every token of a response: its mean recovers A(τ).
    trajectory = (base.advantages.to(torch.float64) * mask).sum(dim=-1) / tokens
    step_ids = inputs.step_ids if inputs.step_ids is not None else step_ids_from_mask(inputs.response_mask)
    steps = modulate(trajectory, inputs.old_entropy, step_ids, options)
    advantages = torch.zeros(mask.shape, dtype=torch.float64)
    if len(steps.final):
        span = int(step_ids.max()) + 1
        lookup = torch.zeros(mask.shape[0] * span, dtype=torch.float64)
        lookup[steps.row * span + steps.index] = steps.final
        keys = torch.arange(mask.shape[0])[:, None] * span + step_ids.clamp(min=0)
        advantages = torch.where(step_ids >= 0, lookup[keys], 0.0)
    metrics = dict(base.metrics)
    if len(steps.final):
        metrics.update(
            {
                "empg/g_mean": float(steps.g.mean()),
                "empg/g_min": float(steps.g.min()),
                "empg/g_max": float(steps.g.max()),
                "empg/f_mean": float(steps.f.mean()),
                "empg/shift": steps.shift,
                "empg/steps_per_response": len(steps.final) / max(mask.shape[0], 1),
            }
        )
    return AdvantageResult(advantages, metrics)
