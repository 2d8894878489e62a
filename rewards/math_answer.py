"""Verifiable math reward: 1.0 when the response's final answer equals the ground truth, else 0.0.

The final answer is the content of the last complete ``\\boxed{...}`` (nested braces allowed),
or, when there is none, the last number in the response (``-3``, ``0.5``, ``3/4``, ``1,234``).
Answers are compared with math-verify (``\\frac{1}{2}`` equals ``0.5``); when math-verify cannot
parse one side, a normalized string / exact-number comparison decides.

There is deliberately no bonus for using ``\\boxed{}``: a flat format bonus was gamed within
minutes in experiments (``\\boxed{}\\boxed{84}``: 100% boxed, 12% correct). The ``boxed``
component is reported for monitoring only; pay format, if at all, only together with correctness.

Pathological answers (``\\boxed{10^{10^{10}}}``) can keep sympy busy for a long time: run this in
``rlkit.reward.isolation.ScoringPool``, whose per-sample timeout kills the worker. There the
function runs in a process's main thread, so math-verify's own ``signal.alarm`` timeouts stay on,
sized to end well inside that per-sample timeout (`math_verify_timeouts`): a slow answer is then
scored as not matching instead of being killed as a `timeout`, which the trainer would leave out
of the loss. Called from any other thread they cannot work and are switched off.
"""

from __future__ import annotations

import re
import threading
from fractions import Fraction
from typing import Any

from math_verify import parse, verify

from rlkit.reward.contract import time_budget_s

_BOXED = re.compile(r"\\boxed\s*\{")
# A number not glued to a word: optional minus, digits with optional thousands separators,
# optional decimals, optional "/denominator".
_NUMBER = re.compile(r"(?<!\w)-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?")
MATH_VERIFY_SHARE = 0.8  # of the per-sample budget that math-verify's alarms may take, all together
ALARMS_PER_MATCH = 3  # parse(ground truth), parse(answer), verify (only its sympy-sympy pair can be slow)
DEFAULT_BUDGET_S = 10.0  # reward.timeout_s's default, for calls outside a scoring process


def score(*, response: str, ground_truth: str | None, **kwargs: Any) -> dict[str, float] | None:
    """{"score", "correct", "boxed"} for one response; None when there is no ground truth."""
    if ground_truth is None:
        return None
    boxed = last_boxed(response)
    answer = boxed if boxed is not None else last_number(response)
    correct = answer is not None and answers_match(answer, ground_truth)
    return {
        "score": 1.0 if correct else 0.0,
        "correct": 1.0 if correct else 0.0,
        "boxed": 0.0 if boxed is None else 1.0,
    }



def score_boxed(*, response: str, ground_truth: str | None, **kwargs: Any) -> dict[str, float] | None:
    """Strict form: only a correct answer inside the last ``\\boxed{}`` scores 1.

    Format is paid only together with correctness (a box around a wrong answer, or a correct
    number outside a box, scores 0), so it cannot be gamed the way a flat format bonus was.
    This is the strict-match accuracy the default job trains and reports.
    """
    verdict = score(response=response, ground_truth=ground_truth)
    if verdict is None:
        return None
    strict = verdict["correct"] * verdict["boxed"]
    return {"score": strict, "correct": verdict["correct"], "boxed": verdict["boxed"]}

def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` whose braces close, or None."""
    closing = _matching_braces(text)
    for match in reversed(list(_BOXED.finditer(text))):
        close = closing.get(match.end() - 1)
        if close is not None:
            return text[match.end() : close]
    return None


def _matching_braces(text: str) -> dict[int, int]:
    """Position of each '{' that closes → position of its '}' (one pass, any nesting)."""
    opened: list[int] = []
    pairs: dict[int, int] = {}
    for position, char in enumerate(text):
        if char == "{":
            opened.append(position)
        elif char == "}" and opened:
            pairs[opened.pop()] = position
    return pairs


def last_number(text: str) -> str | None:
    """The last number in `text`, thousands separators removed, or None."""
    numbers = _NUMBER.findall(text)
    return numbers[-1].replace(",", "") if numbers else None


def answers_match(answer: str, ground_truth: str) -> bool:
    """Whether `answer` equals `ground_truth`: math-verify, else a normalized comparison."""
    parsing, verifying = _math_verify_timeouts()
    gold = parse(_as_math(ground_truth), parsing_timeout=parsing)
    predicted = parse(_as_math(answer), parsing_timeout=parsing)
    if gold and predicted:
        return bool(verify(gold, predicted, timeout_seconds=verifying))
    return _plain_equal(answer, ground_truth)


def _as_math(text: str) -> str:
    """A bare answer wrapped in $...$, so math-verify reads it as LaTeX (`10^{10}`, `A`)."""
    return text if "$" in text or "\\boxed" in text else f"${text.strip()}$"


def math_verify_timeouts(budget_s: float) -> tuple[int | None, int | None]:
    """(parse, verify) timeouts in whole seconds (math-verify's alarms take no fractions) for a
    per-sample budget: the three alarms of one `answers_match` end within MATH_VERIFY_SHARE of it,
    so math-verify gives up before the pool kills the process. None (off) when even 1 s each
    does not fit: the pool's timeout is then the only limit (keep reward.timeout_s ≥ 4 s)."""
    window = int(MATH_VERIFY_SHARE * budget_s / ALARMS_PER_MATCH)
    return (window, window) if window >= 1 else (None, None)


def _math_verify_timeouts() -> tuple[int | None, int | None]:
    """Sized to the scoring process's per-sample budget in a main thread; off elsewhere
    (signal.alarm would raise)."""
    if threading.current_thread() is threading.main_thread():
        return math_verify_timeouts(time_budget_s(DEFAULT_BUDGET_S))
    return None, None


def _normalize(text: str) -> str:
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text.strip().strip("$").strip())
    return re.sub(r"\s+", "", text).rstrip(".").lower()


def _as_fraction(text: str) -> Fraction | None:
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None


def _plain_equal(answer: str, ground_truth: str) -> bool:
    a, b = _normalize(answer), _normalize(ground_truth)
    fa, fb = _as_fraction(a), _as_fraction(b)
    if fa is not None and fb is not None:
        return fa == fb
    return a == b
