"""What the configured method needs from the pipeline, gathered from its registered parts."""

from __future__ import annotations

from rlkit.algorithms.advantages import ADVANTAGES
from rlkit.algorithms.losses import POLICY_LOSSES, REGULARIZERS
from rlkit.algorithms.options import AlgorithmOptions


def required_inputs(algorithm: AlgorithmOptions) -> dict[str, frozenset[str]]:
    """Needs by stage: {"advantage": ..., "loss": ...}; the regularisers' needs count as the loss's."""
    advantage = set(ADVANTAGES.get(algorithm.advantage).needs)
    base = (algorithm.advantage_options or {}).get("base")
    if base and base in ADVANTAGES:
        advantage |= ADVANTAGES.get(base).needs
    loss = set(POLICY_LOSSES.get(algorithm.loss).needs)
    for name in algorithm.regularizers or {}:
        loss |= REGULARIZERS.get(name).needs
    return {"advantage": frozenset(advantage), "loss": frozenset(loss)}


def needers(algorithm: AlgorithmOptions, need: str) -> list[str]:
    """Names of the configured parts that declare `need` (for error messages)."""
    names = []
    if need in ADVANTAGES.get(algorithm.advantage).needs:
        names.append(f"advantage {algorithm.advantage!r}")
    if need in POLICY_LOSSES.get(algorithm.loss).needs:
        names.append(f"loss {algorithm.loss!r}")
    names += [f"regularizer {name!r}" for name in algorithm.regularizers or {} if need in REGULARIZERS.get(name).needs]
    return names
