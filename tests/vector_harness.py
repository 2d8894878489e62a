"""Run a registered method on one worked vector of ALGORITHMS.md (`../shared/vectors/*.json`).

`evaluate_vector(method, inputs)` takes a method name as in the vector file names and one
vector's `inputs`, runs the registered implementation (gradients by autograd) and returns the
vector's output keys. Vector files that hold several kinds of vector (advantage, loss, KL) are
told apart by their input keys. Hyperparameters that a vector states only in its description
may be added to `inputs`: llds `chunk_noreduce` (default True, the A-gate).
`match_outputs(actual, expected)` compares the result with a vector's `outputs`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any
from collections.abc import Callable

import torch

from rlkit.algorithms.advantages import AdvantageInputs, compute_advantages, group_mean_std
from rlkit.algorithms.aggregation import AGG_MODES, Denominators, aggregate
from rlkit.algorithms.kl import kl_penalty
from rlkit.algorithms.losses import PolicyLossInputs, actor_loss
from rlkit.algorithms.methods import bnpo, clip_cov, empg, grpo, grpo_lambda, kl_cov, llds, steer
from rlkit.algorithms.options import AlgorithmOptions
from rlkit.registry import Registry

Adapter = Callable[[dict[str, Any]], dict[str, Any]]
VECTOR_ADAPTERS: Registry[Adapter] = Registry("vector method")


def evaluate_vector(method: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """The outputs of `method` on one vector's `inputs`, keyed as in the vector file."""
    return VECTOR_ADAPTERS.get(method)(inputs)


def match_outputs(
    actual: Any, expected: Any, rtol: float = 1e-5, atol: float = 1e-6, where: str = "",
    ignore: frozenset[str] = frozenset(),
) -> int:
    """Assert that `actual` has `expected`'s structure and values, recursively: the same keys
    (less `ignore`, e.g. prose notes) and lengths, numbers within rtol/atol (the vectors'
    README tolerances by default), None/bool/str equal and of the same type. Returns the number
    of numbers compared, so a caller can check that something was."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected a mapping, got {type(actual).__name__}"
        wanted = set(expected) - ignore
        assert set(actual) - ignore == wanted, f"{where}: keys {sorted(actual)} != {sorted(wanted)}"
        return sum(match_outputs(actual[key], expected[key], rtol, atol, f"{where}.{key}", ignore) for key in wanted)
    if isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: {actual!r} vs {expected!r}"
        return sum(match_outputs(a, e, rtol, atol, f"{where}[{i}]", ignore) for i, (a, e) in enumerate(zip(actual, expected)))
    if expected is None or isinstance(expected, (bool, str)):
        assert type(actual) is type(expected) and actual == expected, f"{where}: {actual!r} != {expected!r}"
        return 0
    assert isinstance(actual, (int, float)) and not isinstance(actual, bool), f"{where}: {actual!r} is not a number"
    assert math.isclose(actual, expected, rel_tol=rtol, abs_tol=atol), f"{where}: {actual!r} != {expected!r}"
    return 1


# ---------------------------------------------------------------- helpers


def _options_from(cls: type, inputs: dict[str, Any], **fixed: Any) -> Any:
    """A method's options dataclass from the vector inputs named like its fields (absent ones
    keep their defaults), plus settings the vector implies rather than states."""
    given = {spec.name: inputs[spec.name] for spec in dataclasses.fields(cls) if spec.name in inputs}
    return cls(**{**given, **fixed})


def _tensor(values: Any) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def _plain(value: Any) -> Any:
    """Tensors to nested Python lists / floats, recursively."""
    if isinstance(value, torch.Tensor):
        return value.detach().tolist()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _dense_groups(ids: list[str]) -> tuple[torch.Tensor, list[str]]:
    """Group ids in order of first appearance → dense indices, and the names by index."""
    order: dict[str, int] = {}
    index = torch.tensor([order.setdefault(uid, len(order)) for uid in ids], dtype=torch.long)
    return index, list(order)


def _loss_inputs(inputs: dict[str, Any], **extra: Any) -> tuple[PolicyLossInputs, torch.Tensor]:
    log_prob = _tensor(inputs["log_prob"]).requires_grad_(True)
    optional = {
        name: _tensor(inputs[key])
        for name, key in (("ref_log_prob", "ref_log_prob"), ("entropy", "entropy"), ("answer_mask", "answer_mask"))
        if key in inputs
    }
    if "entropy_old_policy" in inputs:
        optional["old_entropy"] = _tensor(inputs["entropy_old_policy"])
    loss_inputs = PolicyLossInputs(
        log_prob=log_prob,
        old_log_prob=_tensor(inputs["old_log_prob"]),
        advantages=_tensor(inputs["advantages"]),
        response_mask=_tensor(inputs["response_mask"]),
        **optional,
        **extra,
    )
    return loss_inputs, log_prob


def _token_mean_and_grad(per_token: torch.Tensor, inputs: PolicyLossInputs, log_prob: torch.Tensor, mode: str = "token-mean"):
    mask = inputs.response_mask
    value = aggregate(per_token, mask, mode, Denominators.of(mask))
    (gradient,) = torch.autograd.grad(value, log_prob, retain_graph=True)
    return value, gradient


def _masked(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask > 0, values, torch.zeros_like(values))


# ---------------------------------------------------------------- GRPO (§1)


@VECTOR_ADAPTERS.register("grpo")
def _grpo(inputs: dict[str, Any]) -> dict[str, Any]:
    if "token_level_rewards" in inputs:
        return _grpo_advantage(inputs)
    if "ref_log_prob" in inputs:
        return _grpo_total(inputs)
    return _grpo_policy_loss(inputs)


def _grpo_advantage(inputs: dict[str, Any]) -> dict[str, Any]:
    group_index, names = _dense_groups(inputs["index"])
    mask = _tensor(inputs["response_mask"])
    scores = _masked(_tensor(inputs["token_level_rewards"]), mask).sum(dim=-1)
    advantage_inputs = AdvantageInputs(scores=scores, group_index=group_index, response_mask=mask)
    outputs = {}
    for key, by_std in (("norm_adv_by_std_in_grpo=True", True), ("norm_adv_by_std_in_grpo=False (Dr.GRPO)", False)):
        options = {"norm_adv_by_std": by_std, "epsilon": inputs.get("epsilon", 1e-6)}
        tokens = compute_advantages("grpo", advantage_inputs, options).advantages
        sequence = grpo.group_normalise(scores, group_index, by_std, options["epsilon"])
        outputs[key] = {"seq_advantage": sequence, "token_advantages": tokens}
    mean, std, size = group_mean_std(scores, group_index)
    first = {name: int((group_index == g).nonzero()[0]) for g, name in enumerate(names)}
    outputs["norm_adv_by_std_in_grpo=True"]["group_stats"] = {
        name: {"mean": mean[row], "std": std[row], "size": int(size[row])} for name, row in first.items()
    }
    return _plain(outputs)


def _grpo_policy_loss(inputs: dict[str, Any]) -> dict[str, Any]:
    loss_inputs, log_prob = _loss_inputs(inputs)
    options = _options_from(grpo.GrpoLossOptions, inputs)
    terms = grpo.ppo_clip_terms(loss_inputs, options)
    mask = loss_inputs.response_mask
    losses, gradients = {}, {}
    for mode in AGG_MODES:
        losses[mode], gradients[mode] = _token_mean_and_grad(terms.per_token, loss_inputs, log_prob, mode)
    return _plain(
        {
            "ratio": torch.exp(torch.clamp(log_prob - loss_inputs.old_log_prob, -20, 20)),
            "per_token_loss": _masked(terms.per_token, mask),
            "clipped_by_band": _masked(terms.diagnostics["pg_clipfrac"], mask),
            "dual_clipped": _masked(terms.diagnostics["pg_clipfrac_lower"], mask),
            "pg_clipfrac": aggregate(terms.diagnostics["pg_clipfrac"], mask, "token-mean", Denominators.of(mask)),
            "loss": losses,
            "grad_wrt_log_prob": gradients,
        }
    )


KL_KEYS = {"k1": "k1", "k2": "k2", "k3 (low_var_kl)": "low_var_kl", "k3+ (straight-through)": "k3+"}


def _grpo_total(inputs: dict[str, Any]) -> dict[str, Any]:
    loss_inputs, log_prob = _loss_inputs(inputs)
    mask = loss_inputs.response_mask
    kl = {}
    for key, kl_type in KL_KEYS.items():
        per_token = kl_penalty(log_prob, loss_inputs.ref_log_prob, kl_type)
        value, gradient = _token_mean_and_grad(per_token, loss_inputs, log_prob)
        kl[key] = {"per_token": _masked(per_token, mask), "token_mean": value, "grad_token_mean": gradient}
    del kl["k3+ (straight-through)"]["token_mean"]  # the same as k3's
    config = AlgorithmOptions(
        loss_options={key: inputs[key] for key in ("clip_ratio_low", "clip_ratio_high", "clip_ratio_c")},
        entropy_coeff=inputs["entropy_coeff"],
        kl_coef=inputs["kl_loss_coef"],
        kl_type="low_var_kl",
    )
    total, metrics = actor_loss(loss_inputs, config, Denominators.of(mask))
    (gradient,) = torch.autograd.grad(total, log_prob)
    return _plain(
        {
            "kl": kl,
            "pg_loss": metrics["pg_loss"],
            "kl_loss_k3": metrics["kl_loss"],
            "entropy_agg": metrics["entropy"],
            "total_loss": total,
            "grad_total_wrt_log_prob": gradient,
        }
    )


# ---------------------------------------------------------------- GRPO-λ (§2)


@VECTOR_ADAPTERS.register("grpo_lambda")
def _grpo_lambda(inputs: dict[str, Any]) -> dict[str, Any]:
    group_index, names = _dense_groups(inputs["group_id"])
    options = _options_from(grpo_lambda.GrpoLambdaOptions, inputs)
    details = grpo_lambda.shape(_tensor(inputs["correct"]), _tensor(inputs["length_tokens"]), group_index, options)
    return _plain(
        {
            "group_correctness_ratio": {name: details.accuracy[g] for g, name in enumerate(names)},
            "groups_ranked_desc": [names[g] for g in details.ranked],
            "efficiency_groups (top-lambda)": [names[g] for g in details.efficiency],
            "correct_length_mean_popstd": {names[g]: list(stats) for g, stats in sorted(details.correct_length_stats.items())},
            "z_score": [None if value != value else value for value in details.z.tolist()],
            "reward": details.reward,
            "grpo_advantage (unbiased std, eps=1e-6)": details.advantage,
        }
    )


# ---------------------------------------------------------------- BNPO (§3)


WEIGHT_KEY = "weight=clamp(1/Beta_pdf(p),0,1e6)"


def _bnpo_fit(rewards: list[float], group_index: torch.Tensor, names: list[str], options: bnpo.BnpoOptions) -> dict[str, Any]:
    result = bnpo.fit(_tensor(rewards), group_index, options)
    return {
        "scaled_reward": result.scaled,
        "group_p": {name: result.group_p[g] for g, name in enumerate(names)},
        "p_mean": result.p_mean,
        "p_var_unbiased": result.p_var,
        "a": result.a,
        "b": result.b,
        "alpha": result.alpha,
        "beta": result.beta,
        WEIGHT_KEY: result.weight,
        "advantage": result.advantage,
    }


@VECTOR_ADAPTERS.register("bnpo")
def _bnpo(inputs: dict[str, Any]) -> dict[str, Any]:
    group_index, names = _dense_groups(inputs["index"])
    options = _options_from(bnpo.BnpoOptions, inputs, singleton_groups="official")
    components = {key.removesuffix("_reward"): value for key, value in inputs.items() if key.endswith("_reward")}
    if components:
        outputs = {name: _bnpo_fit(values, group_index, names, options) for name, values in components.items()}
        outputs["advantage"] = torch.stack([outputs[name]["advantage"] for name in components]).mean(dim=0)
        return _plain(outputs)
    return _plain(_bnpo_fit(inputs["reward"], group_index, names, options))


# ---------------------------------------------------------------- Clip-Cov / KL-Cov (§4)


@VECTOR_ADAPTERS.register("clip_cov_kl_cov")
def _clip_cov_kl_cov(inputs: dict[str, Any]) -> dict[str, Any]:
    loss_inputs, log_prob = _loss_inputs(inputs)
    mask = loss_inputs.response_mask
    if "kl_cov_ratio" in inputs:
        details = kl_cov.kl_cov_details(loss_inputs, _options_from(kl_cov.KlCovOptions, inputs))
        value, gradient = _token_mean_and_grad(details.terms.per_token, loss_inputs, log_prob)
        return _plain(
            {
                "ratio": torch.exp(log_prob - loss_inputs.old_log_prob),
                "cov_valid_tokens": details.cov,
                "k": details.k,
                "selected_mask": details.selected.double(),
                "per_token_loss": _masked(details.terms.per_token, mask),
                "loss_token_mean": value,
                "ppo_kl_abs (metric)": aggregate(details.terms.diagnostics["kl_cov/ppo_kl_abs"], mask, "token-mean",
                                                 Denominators.of(mask)),
                "grad_wrt_log_prob_token_mean": gradient,
            }
        )
    options = _options_from(clip_cov.ClipCovOptions, inputs)
    given = inputs.get("perm")

    def permutation(n: int) -> torch.Tensor:
        if given is None:
            raise ValueError("this vector draws among more candidates than clip_num: give `perm` in its inputs")
        return torch.tensor(given, dtype=torch.long)

    details = clip_cov.clip_cov_details(loss_inputs, options, permutation)
    value, gradient = _token_mean_and_grad(details.terms.per_token, loss_inputs, log_prob)
    return _plain(
        {
            "ratio": torch.exp(log_prob - loss_inputs.old_log_prob),
            "cov": details.cov,
            "clip_by_origin": details.clip_by_origin.long(),
            "clip_num": details.clip_num,
            "candidates_rowmajor": details.candidates,
            "perm_used": details.permutation,
            "selected": details.selected,
            "corr": details.corr,
            "per_token_loss": _masked(details.terms.per_token, mask),
            "pg_clipfrac (fraction of selected tokens)": aggregate(details.terms.diagnostics["pg_clipfrac"], mask, "token-mean",
                                                                   Denominators.of(mask)),
            "loss_token_mean": value,
            "grad_wrt_log_prob_token_mean": gradient,
        }
    )


# ---------------------------------------------------------------- STEER (§5)


@VECTOR_ADAPTERS.register("steer")
def _steer(inputs: dict[str, Any]) -> dict[str, Any]:
    loss_inputs, log_prob = _loss_inputs(inputs)
    mask = loss_inputs.response_mask
    options = _options_from(steer.SteerOptions, inputs)
    details = steer.steer_details(loss_inputs, options)
    weighted = steer.steer_loss(loss_inputs, options).per_token
    value, gradient = _token_mean_and_grad(weighted, loss_inputs, log_prob, inputs.get("loss_agg_mode", "token-mean"))
    outputs = {
        "omega": details.omega,
        "abs_omega": details.omega.abs(),
        "abs_omega_min": details.abs_omega_min,
        "abs_omega_max": details.abs_omega_max,
        "token_weights": details.weights,
        "ratio": torch.exp(torch.clamp(log_prob - loss_inputs.old_log_prob, -20, 20)),
        "pg_loss_per_token_unweighted": _masked(details.unweighted.per_token, mask),
        "pg_loss_per_token_weighted": _masked(weighted, mask),
        "loss": value,
        "grad_wrt_log_prob": gradient,
    }
    if details.k is not None:
        outputs["k"] = details.k
    return _plain(outputs)


# ---------------------------------------------------------------- EMPG (§6)


@VECTOR_ADAPTERS.register("empg")
def _empg(inputs: dict[str, Any]) -> dict[str, Any]:
    trajectories = inputs["trajectories"]
    width = max(sum(len(step) for step in trajectory["steps"]) for trajectory in trajectories)
    entropy = torch.zeros((len(trajectories), width), dtype=torch.float64)
    step_ids = torch.full((len(trajectories), width), -1, dtype=torch.long)
    for row, trajectory in enumerate(trajectories):
        column = 0
        for index, step in enumerate(trajectory["steps"]):
            entropy[row, column : column + len(step)] = _tensor(step)
            step_ids[row, column : column + len(step)] = index
            column += len(step)
    options = _options_from(empg.EmpgOptions, inputs)
    advantage = _tensor([trajectory["adv"] for trajectory in trajectories])
    steps = empg.modulate(advantage, entropy, step_ids, options)
    return _plain(
        {
            "step_traj_index": steps.row,
            "step_index": steps.index,
            "H_step": steps.entropy,
            "H_norm": steps.normalised,
            "g": steps.g,
            "f": steps.f,
            "A_mod": steps.modulated,
            "A_final": steps.final,
            "mean_A_mod_subtracted": steps.shift,
        }
    )


# ---------------------------------------------------------------- LLDS (§7)


@VECTOR_ADAPTERS.register("llds")
def _llds(inputs: dict[str, Any]) -> dict[str, Any]:
    loss_inputs, log_prob = _loss_inputs(inputs)
    mask = loss_inputs.response_mask
    options = _options_from(llds.LldsOptions, inputs, mask_answer="answer_mask" in inputs)
    details = llds.llds_details(loss_inputs, options)
    value, gradient = _token_mean_and_grad(details.terms.per_token, loss_inputs, log_prob)
    gates = []
    for gate, total in enumerate(details.gate_sums.tolist()):
        positions = (details.gate_ids == gate).nonzero()
        if options.chunk_noreduce:
            gates.append({"row": int(positions[0, 0]), "tokens": positions[:, 1].tolist(), "sum_old_minus_new": total,
                          "active": total > 0})
        else:
            gates.append({"row": gate, "sum_old_minus_new": total, "active": total > 0})
    return _plain(
        {
            "gates": gates,
            "active_token_mask": details.active_tokens.double(),
            "penalty_per_token (coeff*max(0,old-new))": _masked(details.terms.per_token, mask),
            "loss_llds": value,
            "grad_wrt_log_prob": gradient,
        }
    )


# ---------------------------------------------------------------- rewards (§8, §10)


@VECTOR_ADAPTERS.register("gra")
def _gra(inputs: dict[str, Any]) -> dict[str, Any]:
    from rewards.gra import evaluate_gra_vector

    return evaluate_gra_vector(inputs)


@VECTOR_ADAPTERS.register("thoth_score")
def _thoth_score(inputs: dict[str, Any]) -> dict[str, Any]:
    from rewards.thoth_score import evaluate_thoth_vector

    return evaluate_thoth_vector(inputs)
