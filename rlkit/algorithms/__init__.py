"""Policy-gradient math: advantage estimators, policy losses, aggregation, KL estimators.

Pure torch, no distributed or engine imports, so every formula is unit-testable against the
vectors in ALGORITHMS.md. Adding a method is one module plus one registry line.
"""

from rlkit.algorithms.advantages import ADVANTAGES, AdvantageInputs, compute_advantages
from rlkit.algorithms.aggregation import AGG_MODES, Denominators, aggregate
from rlkit.algorithms.losses import POLICY_LOSSES, PolicyLossInputs, actor_loss
from rlkit.algorithms.options import AlgorithmOptions

__all__ = [
    "ADVANTAGES",
    "AGG_MODES",
    "POLICY_LOSSES",
    "AdvantageInputs",
    "AlgorithmOptions",
    "Denominators",
    "PolicyLossInputs",
    "actor_loss",
    "aggregate",
    "compute_advantages",
]
