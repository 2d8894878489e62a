"""Registered algorithm components: a function, its hyperparameter dataclass, and what it needs.

Advantage estimators, policy losses, regularisers and KL estimators all live in
`ComponentRegistry` tables. A component names the pipeline inputs it needs (`NEEDS`), so the
learner computes only what the active method reads, and the config check can say when a method
would silently do nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from collections.abc import Callable, Iterable, Mapping

from rlkit.registry import Registry

F = TypeVar("F", bound=Callable[..., Any])

NEEDS = {
    "old_entropy": "full-vocabulary entropy of the old (rollout) policy per token: the learner runs "
    "a no-grad pass over the batch before any update (or reuses the first forward when on-policy)",
    "answer_mask": "per-token answer masks, which no rollout records yet",
    "off_policy": "an old policy that differs from the current one at loss time: set learner.mini_batches ≥ 2 "
    "or learner.ppo_epochs ≥ 2 (with a single update per batch its term is identically 0)",
}


@dataclass(frozen=True)
class NoOptions:
    """A component without hyperparameters."""


@dataclass(frozen=True)
class Component(Generic[F]):
    """One registered implementation."""

    fn: F
    options: type
    needs: frozenset[str] = frozenset()
    micro_batch_statistics: bool = False  # selects or normalises over the micro-batch, as its official code does

    def build_options(self, values: Mapping[str, Any] | None) -> Any:
        """The options dataclass from recipe values, converted to the declared types. Unknown
        keys, missing required options and wrong types raise TypeError; bad values ValueError."""
        values = dict(values or {})
        fields = {spec.name: spec for spec in dataclasses.fields(self.options)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise TypeError(f"unknown option(s) {unknown}; valid: {', '.join(fields) or '(none)'}")
        missing = [
            name
            for name, spec in fields.items()
            if name not in values and spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise TypeError(f"option(s) {missing} are required (no default); set them in the recipe")
        converted = {name: _convert(name, value, str(fields[name].type)) for name, value in values.items()}
        return self.options(**converted)


def _convert(name: str, value: Any, annotation: str) -> Any:
    """`value` as the scalar or container type `annotation` names (recipes may give '2e-4' as a
    string: YAML 1.1 reads exponents without a dot that way)."""
    kind = annotation.split("[")[0].split("|")[0].strip()
    wrong = TypeError(f"option {name!r} must be {annotation}, got {value!r} ({type(value).__name__})")
    if kind == "bool":
        if not isinstance(value, bool):
            raise wrong
        return value
    if kind in ("float", "int"):
        if isinstance(value, bool):
            raise wrong
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise wrong from None
        if not isinstance(value, (int, float)):
            raise wrong
        if kind == "int":
            if float(value) != int(value):
                raise wrong
            return int(value)
        return float(value)
    if kind == "str" and not isinstance(value, str):
        raise wrong
    if kind == "list":
        if isinstance(value, (tuple, list)):
            return list(value)
        raise wrong
    if kind == "dict" and not isinstance(value, Mapping):
        raise wrong
    return dict(value) if kind == "dict" else value


class ComponentRegistry(Registry[Component]):
    """A registry whose entries carry an options dataclass and their input needs."""

    def add(
        self, name: str, options: type = NoOptions, needs: Iterable[str] = (), micro_batch_statistics: bool = False
    ) -> Callable[[F], F]:
        """Decorator: `@POLICY_LOSSES.add("steer", SteerOptions, needs={"old_entropy"})` on fn(inputs, options).

        `micro_batch_statistics=True` declares that the component's per-token values depend on
        statistics of the whole micro-batch (so on learner.micro_batch_size), not only on the row.
        """
        wanted = frozenset(needs)
        unknown = wanted - set(NEEDS)
        if unknown:
            raise ValueError(f"{self.kind} {name!r}: unknown needs {sorted(unknown)}; valid: {sorted(NEEDS)}")

        def add(fn: F) -> F:
            self.register(name)(Component(fn, options, wanted, micro_batch_statistics))
            return fn

        return add
