"""Every worked vector of ../shared/vectors (copied to tests/vectors) through the public harness
`tests/vector_harness.py`'s `evaluate_vector`: every output key, at the tolerance the vectors'
README gives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vector_harness import VECTOR_ADAPTERS, evaluate_vector, match_outputs

VECTOR_DIR = Path(__file__).parents[1] / "vectors"
THIS_ISSUE = ("grpo", "grpo_lambda", "bnpo", "clip_cov_kl_cov", "steer", "empg", "llds", "gra", "thoth_score")
# Hyperparameters a vector states only in its description.
EXTRA_INPUTS = {"llds_response_gate": {"chunk_noreduce": False}}
# README: outputs computed before the inputs were rounded need a looser rtol.
RTOL = {"grpo_kl_and_total_loss": 3e-5}
PROSE_KEYS = frozenset({"note"})  # explanations inside outputs, not values


def vectors() -> list[tuple[str, dict[str, Any]]]:
    cases = []
    for path in sorted(VECTOR_DIR.glob("*.json")):
        if path.stem in VECTOR_ADAPTERS:
            cases += [(path.stem, vector) for vector in json.loads(path.read_text())["vectors"]]
    return cases


CASES = vectors()


@pytest.mark.parametrize(("method", "vector"), CASES, ids=[f"{m}-{v['name']}" for m, v in CASES])
def test_vector_outputs(method: str, vector: dict[str, Any]) -> None:
    inputs = {**vector["inputs"], **EXTRA_INPUTS.get(vector["name"], {})}
    actual = evaluate_vector(method, inputs)
    checked = match_outputs(actual, vector["outputs"], RTOL.get(vector["name"], 1e-5), 1e-6, vector["name"], PROSE_KEYS)
    assert checked > 0


def test_every_method_of_the_library_has_vectors_and_an_adapter() -> None:
    files = {path.stem for path in VECTOR_DIR.glob("*.json")}
    for method in THIS_ISSUE:
        assert method in files and method in VECTOR_ADAPTERS
    assert {method for method, _ in CASES} >= set(THIS_ISSUE)


def test_unknown_method_names_the_valid_ones() -> None:
    with pytest.raises(KeyError, match="did you mean \"steer\""):
        evaluate_vector("steeer", {})


@pytest.mark.parametrize(("actual", "expected"), [
    ({"a": [1.0, 2.0]}, {"a": [1.0, 2.1]}),  # a number off
    ({"a": [1.0]}, {"a": [1.0, 2.0]}),  # a list too short
    ({"a": 1.0}, {"a": 1.0, "b": 2.0}),  # a key missing
    ({"a": 1}, {"a": None}),  # None is not 1
    ({"a": 1.0}, {"a": True}),  # nor is True
    ({"a": True}, {"a": 1.0}),  # a bool is not a number
])
def test_the_comparison_catches_what_differs(actual: Any, expected: Any) -> None:
    with pytest.raises(AssertionError):
        match_outputs(actual, expected)
    assert match_outputs(expected, expected) == sum(isinstance(v, float) and not isinstance(v, bool) for v in _leaves(expected))


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]
