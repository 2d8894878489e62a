"""Every worked vector of ../shared/vectors (copied to tests/vectors) through the public harness
`rlkit.algorithms.testing.evaluate_vector`: every output key, at the tolerance the vectors'
README gives."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from rlkit.algorithms.testing import VECTOR_ADAPTERS, evaluate_vector

VECTOR_DIR = Path(__file__).parents[1] / "vectors"
THIS_ISSUE = ("grpo", "grpo_lambda", "bnpo", "clip_cov_kl_cov", "steer", "empg", "llds", "gra", "thoth_score")
# Hyperparameters a vector states only in its description.
EXTRA_INPUTS = {"llds_response_gate": {"chunk_noreduce": False}}
# README: outputs computed before the inputs were rounded need a looser rtol.
RTOL = {"grpo_kl_and_total_loss": 3e-5}
PROSE_KEYS = {"note"}  # explanations inside outputs, not values


def vectors() -> list[tuple[str, dict[str, Any]]]:
    cases = []
    for path in sorted(VECTOR_DIR.glob("*.json")):
        if path.stem in VECTOR_ADAPTERS:
            cases += [(path.stem, vector) for vector in json.loads(path.read_text())["vectors"]]
    return cases


CASES = vectors()


def assert_matches(actual: Any, expected: Any, rtol: float, atol: float, where: str) -> int:
    """Compare recursively; returns the number of numeric leaves checked."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected a mapping, got {type(actual).__name__}"
        wanted = set(expected) - PROSE_KEYS
        assert set(actual) - PROSE_KEYS == wanted, f"{where}: keys {sorted(actual)} != {sorted(wanted)}"
        return sum(assert_matches(actual[key], expected[key], rtol, atol, f"{where}.{key}") for key in wanted)
    if isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: {actual!r} vs {expected!r}"
        return sum(assert_matches(a, e, rtol, atol, f"{where}[{i}]") for i, (a, e) in enumerate(zip(actual, expected)))
    if expected is None or isinstance(expected, (bool, str)):
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"
        return 0
    assert isinstance(actual, (int, float)) and not isinstance(actual, bool), f"{where}: {actual!r} is not a number"
    assert math.isclose(actual, expected, rel_tol=rtol, abs_tol=atol), f"{where}: {actual!r} != {expected!r}"
    return 1


@pytest.mark.parametrize(("method", "vector"), CASES, ids=[f"{m}-{v['name']}" for m, v in CASES])
def test_vector_outputs(method: str, vector: dict[str, Any]) -> None:
    inputs = {**vector["inputs"], **EXTRA_INPUTS.get(vector["name"], {})}
    actual = evaluate_vector(method, inputs)
    checked = assert_matches(actual, vector["outputs"], RTOL.get(vector["name"], 1e-5), 1e-6, vector["name"])
    assert checked > 0


def test_every_method_of_the_library_has_vectors_and_an_adapter() -> None:
    files = {path.stem for path in VECTOR_DIR.glob("*.json")}
    for method in THIS_ISSUE:
        assert method in files and method in VECTOR_ADAPTERS
    assert {method for method, _ in CASES} >= set(THIS_ISSUE)


def test_unknown_method_names_the_valid_ones() -> None:
    with pytest.raises(KeyError, match="did you mean \"steer\""):
        evaluate_vector("steeer", {})
