"""What the configured method needs from the pipeline, gathered from its registered parts.

A component declares fixed needs when it registers; its options may add more through an
`extra_needs()` method (EMPG inherits its base estimator's, LLDS needs answer masks only with
`mask_answer`).
"""

from __future__ import annotations

from typing import Any
from collections.abc import Mapping

from rlkit.algorithms.advantages import ADVANTAGES
from rlkit.algorithms.components import ComponentRegistry
from rlkit.algorithms.losses import POLICY_LOSSES, REGULARIZERS
from rlkit.algorithms.options import AlgorithmOptions


def component_needs(registry: ComponentRegistry, name: str, values: Mapping[str, Any] | None) -> frozenset[str]:
    """The needs of component `name` configured with option `values`."""
    component = registry.get(name)
    options = component.build_options(values)
    extra = options.extra_needs() if hasattr(options, "extra_needs") else ()
    return component.needs | frozenset(extra)


def configured_parts(algorithm: AlgorithmOptions) -> list[tuple[str, str, frozenset[str]]]:
    """(stage, label, needs) of every configured part; regularisers belong to the loss stage."""
    parts = [
        ("advantage", f"advantage {algorithm.advantage!r}",
         component_needs(ADVANTAGES, algorithm.advantage, algorithm.advantage_options)),
        ("loss", f"loss {algorithm.loss!r}", component_needs(POLICY_LOSSES, algorithm.loss, algorithm.loss_options)),
    ]
    for name, values in (algorithm.regularizers or {}).items():
        parts.append(("loss", f"regularizer {name!r}", component_needs(REGULARIZERS, name, values)))
    return parts


def required_inputs(algorithm: AlgorithmOptions) -> dict[str, frozenset[str]]:
    """Needs by stage: {"advantage": ..., "loss": ...}."""
    needs: dict[str, frozenset[str]] = {"advantage": frozenset(), "loss": frozenset()}
    for stage, _, part_needs in configured_parts(algorithm):
        needs[stage] = needs[stage] | part_needs
    return needs


def needers(algorithm: AlgorithmOptions, need: str) -> list[str]:
    """Labels of the configured parts that declare `need` (for error messages)."""
    return [label for _, label, part_needs in configured_parts(algorithm) if need in part_needs]
