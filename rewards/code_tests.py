"""Programming-task reward: the share of test cases a generated Python program passes.

Test format (one format, two places to put it):

- ``extra["tests"]``: a list of ``{"stdin": "<input text>", "stdout": "<expected output>"}``;
- or, when ``extra`` has no ``"tests"``, ``ground_truth`` holding the same list as JSON (or a JSON
  object ``{"tests": [...]}``).

Optional ``extra["time_limit_s"]``: CPU seconds per test (default 5, at most 10).

The program is the last fenced block labelled ``python``/``py``/``python3`` in the response, else
the last unlabelled fenced block, else the whole response. It reads stdin and prints to stdout;
each test runs in its own sandbox (`rlkit.reward.sandbox.run_untrusted`: separate process, no
network, read-only host filesystem, CPU/memory/file/process limits), never in this process.

Output comparison ignores trailing whitespace on each line and trailing blank lines; everything
else must match exactly (no float tolerance).

Returns ``{"score": passed/total, "passed", "total", "runtime_errors", "sandbox_errors",
"skipped"}``:

- ``runtime_errors``: tests where the program raised or exited non-zero;
- ``sandbox_errors``: tests where the sandbox stopped it (timeout, memory, forbidden operation,
  killed by a signal). A rising value is worth a look: it is where reward hacking shows up;
- ``skipped``: tests not run because an earlier test timed out (a program that times out once
  rarely passes the rest, and each timeout costs the full limit); they count as failed.

Returns None when the sample has no tests (mixed-task batches). Raises when the sandbox itself
cannot run, so the sample is reported as a reward error rather than scored 0 for the model.
Time budget: up to ``total × (time limit + 2 s)`` per sample, so set the reward stage's
per-sample timeout accordingly.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from typing import Any

from rlkit.reward.sandbox import SandboxLimits, SandboxResult, run_untrusted

DEFAULT_TIME_LIMIT_S = 5.0
MAX_TIME_LIMIT_S = 10.0
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)
_PYTHON_LABELS = {"python", "py", "python3"}
_STOPPED_BY_SANDBOX = {"timeout", "memory", "forbidden", "killed"}


# Without these the network and the host filesystem are guarded only by the audit hook, which
# native code can switch off (docs/sandbox.md): refuse to score rather than run model code so.
REQUIRED_DEFENCES = ("network_namespace", "mount_namespace")
ALLOW_WEAK_ENV = "RLKIT_SANDBOX_ALLOW_WEAK"


def score(
    *, response: str, ground_truth: str | None = None, extra: dict[str, Any] | None = None,
    **_: Any,
) -> dict[str, float] | None:
    """Run the response's program on each test; passed/total plus failure counts."""
    tests = load_tests(ground_truth, extra or {})
    if not tests:
        return None
    limits = _limits((extra or {}).get("time_limit_s"))
    program = extract_code(response)
    check_defences(probe_defences())  # before any model code runs
    counts = {"passed": 0, "runtime_errors": 0, "sandbox_errors": 0, "skipped": 0}
    for index, test in enumerate(tests):
        result = run_untrusted(program, stdin=test["stdin"], limits=limits)
        if result.status == "sandbox_error":
            raise RuntimeError(f"code sandbox failed on test {index}: {result.reason}")
        check_defences(result.defences)
        counts["passed"] += _passed(result, test["stdout"])
        counts["runtime_errors"] += result.status == "error"
        counts["sandbox_errors"] += result.status in _STOPPED_BY_SANDBOX
        if result.status == "timeout":
            counts["skipped"] = len(tests) - index - 1
            break
    total = len(tests)
    return {"score": counts["passed"] / total, "total": float(total),
            **{name: float(value) for name, value in counts.items()}}


@functools.lru_cache(maxsize=1)
def probe_defences() -> dict[str, bool]:
    """What the sandbox achieves on this host, learned once per process from a harmless program."""
    result = run_untrusted("pass")
    if result.status != "ok":
        raise RuntimeError(f"code sandbox failed to run an empty program: {result.reason}")
    return dict(result.defences)


def check_defences(defences: dict[str, bool]) -> None:
    """Refuse to score (a reward error) where the kernel refused the namespaces model code needs."""
    missing = [name for name in REQUIRED_DEFENCES if not defences.get(name)]
    if missing and os.environ.get(ALLOW_WEAK_ENV) != "1":
        raise RuntimeError(
            f"code sandbox runs without {', '.join(missing)} here (the kernel refused them), so model code "
            f"would be behind only the audit hook; allow that weaker sandbox with {ALLOW_WEAK_ENV}=1"
        )


def load_tests(ground_truth: str | None, extra: dict[str, Any]) -> list[dict[str, str]]:
    """The test cases from `extra["tests"]`, else from `ground_truth` JSON; [] if neither."""
    tests: Any = extra.get("tests")
    if tests is None and ground_truth:
        try:
            tests = json.loads(ground_truth)
        except ValueError:
            return []  # a plain-text answer: this sample is not a programming task
        if isinstance(tests, dict):
            tests = tests.get("tests")
        elif not isinstance(tests, list):
            return []  # JSON, but a plain answer such as "42"
    if not tests:
        return []
    if not isinstance(tests, list) or not all(_is_test(t) for t in tests):
        raise ValueError(
            'tests must be a list of {"stdin": str, "stdout": str}; got '
            f"{type(tests).__name__} {str(tests)[:100]}"
        )
    return tests


def extract_code(response: str) -> str:
    """Last ```python block, else last unlabelled ``` block, else the whole response."""
    blocks = _FENCE.findall(response)
    for wanted in (lambda label: label.lower() in _PYTHON_LABELS, lambda label: label == ""):
        chosen = [body for label, body in blocks if wanted(label)]
        if chosen:
            return chosen[-1]
    return response


def outputs_match(actual: str, expected: str) -> bool:
    """Equal up to trailing whitespace per line and trailing blank lines."""
    return _normalize(actual) == _normalize(expected)


def _normalize(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _passed(result: SandboxResult, expected: str) -> bool:
    return result.ok and not result.stdout_truncated and outputs_match(result.stdout, expected)


def _is_test(test: Any) -> bool:
    return (isinstance(test, dict) and isinstance(test.get("stdin"), str)
            and isinstance(test.get("stdout"), str))


def _limits(time_limit_s: Any) -> SandboxLimits:
    seconds = DEFAULT_TIME_LIMIT_S if time_limit_s is None else float(time_limit_s)
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"extra['time_limit_s']={time_limit_s!r} must be a positive number")
    cpu = math.ceil(min(seconds, MAX_TIME_LIMIT_S))
    return SandboxLimits(cpu_seconds=cpu, wall_seconds=cpu + 2.0)
