"""Policy-gradient math: advantage estimators, policy losses, regularisers, aggregation, KL.

Pure torch, no distributed or engine imports, so every formula is unit-testable against the
vectors in ALGORITHMS.md. Adding a method is one module in `methods/` plus one import line.
"""

from rlkit.algorithms.advantages import ADVANTAGES, AdvantageInputs, AdvantageResult, compute_advantages
from rlkit.algorithms.aggregation import AGG_MODES, Denominators, aggregate
from rlkit.algorithms.components import NEEDS
from rlkit.algorithms.kl import KL_ESTIMATORS
from rlkit.algorithms.losses import POLICY_LOSSES, REGULARIZERS, LossTerms, PolicyLossInputs, actor_loss
from rlkit.algorithms.options import AlgorithmOptions
from rlkit.algorithms import methods  # noqa: F401  (registers every method)
from rlkit.algorithms.needs import required_inputs


def method_names() -> list[str]:
    """Every registered method: advantage estimators, policy losses and regularisers by name
    (GRPO is both an estimator and a loss). Tests and sweeps list methods from here."""
    return sorted(set(ADVANTAGES.names()) | set(POLICY_LOSSES.names()) | set(REGULARIZERS.names()))

__all__ = [
    "ADVANTAGES",
    "AGG_MODES",
    "KL_ESTIMATORS",
    "NEEDS",
    "POLICY_LOSSES",
    "REGULARIZERS",
    "AdvantageInputs",
    "AdvantageResult",
    "AlgorithmOptions",
    "Denominators",
    "LossTerms",
    "PolicyLossInputs",
    "actor_loss",
    "aggregate",
    "compute_advantages",
    "method_names",
    "required_inputs",
]
