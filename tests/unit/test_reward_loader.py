"""check_reward_fn / load_reward_fn: every way a recipe's reward entry can be wrong is reported clearly."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from rlkit.reward import RewardFnSpec, RewardRequest, check_reward_fn, load_reward_fn
from rlkit.reward.contract import accepted_keywords, call_and_judge


def write(folder: Path, name: str, source: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return path


def problems_for(tmp_path: Path, source: str, name: str = "score") -> list[str]:
    return check_reward_fn(RewardFnSpec(path=str(write(tmp_path, "r.py", source)), name=name))


def test_a_good_file_has_no_problems_and_loads(tmp_path: Path) -> None:
    path = write(tmp_path, "good.py", "def score(*, response, **kwargs):\n    return len(response)\n")
    spec = RewardFnSpec(path=str(path))

    assert check_reward_fn(spec) == []
    assert load_reward_fn(spec)(response="abc") == 3


def test_a_relative_path_is_resolved_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "my_rewards.py", "def score(response):\n    return 1.0\n")
    monkeypatch.chdir(tmp_path)

    assert load_reward_fn(RewardFnSpec(path="my_rewards.py"))(response="") == 1.0


def test_a_missing_file_names_the_path_and_the_working_directory(tmp_path: Path) -> None:
    (problem,) = check_reward_fn(RewardFnSpec(path=str(tmp_path / "nope.py")))

    assert "not found" in problem and str(tmp_path / "nope.py") in problem and "working directory" in problem


def test_a_file_that_is_not_python_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "rewards.txt", "def score(response): return 1")

    (problem,) = check_reward_fn(RewardFnSpec(path=str(path)))
    assert "not a .py file" in problem


def test_a_syntax_error_gives_the_line(tmp_path: Path) -> None:
    (problem,) = problems_for(tmp_path, "def score(response):\n    return 1\n\ndef broken(:\n    pass\n")

    assert "syntax error at line 4" in problem


def test_an_import_error_carries_the_exception(tmp_path: Path) -> None:
    (problem,) = problems_for(tmp_path, "import no_such_package_for_rlkit\n\ndef score(response): return 1\n")

    assert "ModuleNotFoundError: No module named 'no_such_package_for_rlkit'" in problem
    half_imported = [m for m in list(sys.modules.values()) if getattr(m, "__file__", None) == str(tmp_path / "r.py")]
    assert half_imported == []


def test_a_missing_function_suggests_the_closest_and_lists_the_callables(tmp_path: Path) -> None:
    source = """
    from math import sqrt

    def score(response): return 1.0
    def length_penalty(response): return 0.0
    THRESHOLD = 3
    """
    (problem,) = problems_for(tmp_path, source, name="scroe")

    assert "no function 'scroe'" in problem and 'did you mean "score"' in problem
    assert "callables there: length_penalty, score, sqrt" in problem  # its own first, imports last


def test_a_non_callable_is_refused(tmp_path: Path) -> None:
    (problem,) = problems_for(tmp_path, "score = 3\n")

    assert "is a int, not a function" in problem


@pytest.mark.parametrize(
    "signature, expected",
    [
        ("*, response, ground_truht=None", ["'ground_truht' is not a contract keyword", 'did you mean "ground_truth"']),
        ("*, prompt", ["does not accept `response`"]),
        ("response, /", ["positional-only"]),
        ("response, threshold", ["'threshold' is not a contract keyword"]),
    ],
)
def test_a_signature_outside_the_contract_says_what_is_wrong(
    tmp_path: Path, signature: str, expected: list[str]
) -> None:
    problems = problems_for(tmp_path, f"def score({signature}):\n    return 1.0\n")

    assert len(problems) == 1
    for fragment in expected:
        assert fragment in problems[0]


def test_an_async_function_is_accepted(tmp_path: Path) -> None:
    assert problems_for(tmp_path, "async def score(*, response):\n    return 1.0\n") == []


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    problems = problems_for(tmp_path, "def score(*, prompt, answer, solution):\n    return 1.0\n")

    assert len(problems) == 3  # two unknown keywords and the missing `response`


def test_load_raises_value_error_with_the_same_messages(tmp_path: Path) -> None:
    spec = RewardFnSpec(path=str(write(tmp_path, "r.py", "def score(*, prompt):\n    return 1\n")))

    with pytest.raises(ValueError) as info:
        load_reward_fn(spec)
    assert check_reward_fn(spec)[0] in str(info.value)


@pytest.mark.parametrize(
    "spec",
    [RewardFnSpec(module="rewards.math_answer:score"), RewardFnSpec(module="rewards.math_answer", name="score")],
)
def test_the_module_form_loads_the_builtin_math_reward(spec: RewardFnSpec) -> None:
    assert check_reward_fn(spec) == []
    result = load_reward_fn(spec)(response="\\boxed{4}", ground_truth="4", prompt="", data_source="", extra={})
    assert result["score"] == 1.0


def test_a_module_that_does_not_import_is_reported() -> None:
    (problem,) = check_reward_fn(RewardFnSpec(module="rewards.no_such_module:score"))

    assert "No module named 'rewards.no_such_module'" in problem


def test_path_and_module_are_exclusive() -> None:
    assert "exactly one of" in check_reward_fn(RewardFnSpec(path="a.py", module="b:c"))[0]
    assert "exactly one of" in check_reward_fn(RewardFnSpec(path=None))[0]


def test_a_sibling_helper_module_imports_without_polluting_sys_path(tmp_path: Path) -> None:
    write(tmp_path, "reward_helpers_for_test.py", "def double(x):\n    return 2 * x\n")
    path = write(
        tmp_path,
        "r.py",
        "from reward_helpers_for_test import double\n\ndef score(response):\n    return double(len(response))\n",
    )
    before = list(sys.path)
    try:
        assert load_reward_fn(RewardFnSpec(path=str(path)))(response="ab") == 4
        assert sys.path == before
    finally:
        sys.modules.pop("reward_helpers_for_test", None)


def test_only_declared_keywords_are_passed_without_kwargs() -> None:
    def wants_two(response: str, ground_truth: str | None) -> float:
        return float(response == ground_truth)

    def wants_all(**kwargs: object) -> float:
        return float(len(kwargs))

    request = RewardRequest(prompt="p", response="7", ground_truth="7", data_source="math", extra={})
    assert accepted_keywords(wants_two) == ("response", "ground_truth")
    assert call_and_judge(wants_two, request, accepted_keywords(wants_two)).score == 1.0
    assert call_and_judge(wants_all, request, accepted_keywords(wants_all)).score == 6.0  # the six contract keywords
