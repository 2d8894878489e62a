"""The reward-function contract: what a reward function is called with and may return.

A reward function is a plain Python function, called with keyword arguments only::

    def score(*, prompt: str, response: str, ground_truth: str | None,
              data_source: str, extra: dict, step_rewards: tuple) -> float | dict | None

Which keywords it receives:

- it must accept ``response`` (by name, or through ``**kwargs``);
- every parameter it names must be one of ``prompt``, ``response``, ``ground_truth``,
  ``data_source``, ``extra``, ``step_rewards`` (so a typo such as ``ground_truht`` fails at config time instead of
  never being filled in);
- with ``**kwargs`` it receives all six; without, only the ones it names. ``step_rewards`` holds
  a multi-turn episode's immediate step rewards (empty for single-turn samples).

What it may return:

- a finite number (bool, int, float, numpy scalar) -> that score, status ``ok``;
- a dict with a finite numeric ``"score"`` and optionally other finite numeric entries ->
  the score plus named components;
- ``None`` -> "does not apply to this sample" (status ``not_applicable``), so one reward file
  can serve a batch that mixes tasks;
- anything else (a string, NaN, inf, a dict without ``score``, a list, ...) -> status ``invalid``.

An exception becomes status ``error`` with ``TypeName: message``. Whatever happens, the score
of a failed sample is 0.0 *and* its status says why, so a failure is never a silent zero.

This module stays free of heavy imports (no torch): reward worker processes import it, and
their start-up time is paid again every time one is replaced after a timeout or a crash.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import numbers
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from collections.abc import Callable, Mapping, Sequence

from rlkit.registry import did_you_mean

if TYPE_CHECKING:
    from rlkit.types import Sample

CONTRACT_KEYWORDS: tuple[str, ...] = ("prompt", "response", "ground_truth", "data_source", "extra", "step_rewards")
MESSAGE_LIMIT = 200  # characters kept of an error message or a bad return value's repr

# Values of rlkit.types.RewardStatus, spelled out so worker processes need not import torch
# (rlkit.types does). The parent turns them into the enum, which fails loudly if they drift.
OK = "ok"
NOT_APPLICABLE = "not_applicable"
ERROR = "error"
TIMEOUT = "timeout"
INVALID = "invalid"

# The per-sample time limit (reward.timeout_s), set by the scoring pool in each of its processes.
TIME_BUDGET_ENV = "RLKIT_REWARD_TIMEOUT_S"


def time_budget_s(default: float) -> float:
    """The per-sample time limit of the scoring process this runs in, or `default` outside one.

    A reward function with timeouts of its own (math-verify's) sizes them from this, so they fire
    before the pool kills the process and the sample is scored rather than marked `timeout`. With
    `reward.fns` the limit covers all functions of a sample together."""
    try:
        budget = float(os.environ.get(TIME_BUDGET_ENV, ""))
    except ValueError:
        return default
    return budget if math.isfinite(budget) and budget > 0 else default


@dataclass(frozen=True)
class RewardRequest:
    """One sample to score: the keyword arguments a reward function receives."""

    prompt: str  # prompt text after the chat template
    response: str  # generated text
    ground_truth: str | None = None  # reference answer, None when the dataset has none
    data_source: str = "default"  # task name: lets one reward file serve several tasks
    extra: Mapping[str, Any] = field(default_factory=dict)  # any other dataset columns
    step_rewards: tuple[float, ...] = ()  # immediate rewards of a multi-turn episode's steps

    @classmethod
    def from_sample(cls, sample: Sample, defaults: Mapping[str, Any] | None = None) -> RewardRequest:
        """The request for a rollout sample; `defaults` (the recipe's reward.extra) fill `extra`
        keys the dataset row does not set. A null column counts as not set: a table gives every
        row every column, null where the row had none."""
        prompt, defaults = sample.prompt, dict(defaults or {})
        row = {key: value for key, value in prompt.extra.items() if not (value is None and key in defaults)}
        return cls(
            prompt=prompt.text,
            response=sample.response_text,
            ground_truth=prompt.ground_truth,
            data_source=prompt.data_source,
            extra={**defaults, **row},
            step_rewards=tuple(sample.step_rewards),
        )

    def kwargs(self, keywords: tuple[str, ...] = CONTRACT_KEYWORDS) -> dict[str, Any]:
        """The keyword arguments for a function that accepts `keywords`."""
        return {name: getattr(self, name) for name in keywords}


@dataclass(frozen=True)
class Verdict:
    """Outcome of one call, in plain types so it crosses a process pipe cheaply."""

    status: str  # one of the RewardStatus values above
    score: float = 0.0  # 0.0 unless status is OK
    components: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0


def truncate(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """`text` cut to `limit` characters, marking the cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_exception(exc: BaseException) -> str:
    """'TypeName: message', truncated."""
    message = str(exc)
    return truncate(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)


def signature_problems(fn: Callable[..., Any]) -> list[str]:
    """Why `fn` cannot be called under the contract (empty list: it can)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError) as exc:
        return [f"its signature cannot be read ({exc}); wrap it in a plain `def`"]
    problems = []
    has_var_kwargs = any(p.kind is p.VAR_KEYWORD for p in params)
    for p in params:
        if p.kind is p.POSITIONAL_ONLY and p.default is p.empty:
            problems.append(
                f"parameter {p.name!r} is positional-only, but reward functions are called with "
                "keyword arguments only"
            )
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and (
            p.name not in CONTRACT_KEYWORDS
        ):
            problems.append(
                f"parameter {p.name!r} is not a contract keyword"
                f"{did_you_mean(p.name, list(CONTRACT_KEYWORDS))}; "
                f"allowed: {', '.join(CONTRACT_KEYWORDS)} (or **kwargs)"
            )
    names = {p.name for p in params}
    if "response" not in names and not has_var_kwargs:
        problems.append("it does not accept `response`; add a `response` parameter or **kwargs")
    return problems


def accepted_keywords(fn: Callable[..., Any]) -> tuple[str, ...]:
    """The contract keywords to pass to `fn`: all with **kwargs, else the ones it names."""
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return CONTRACT_KEYWORDS
    names = {p.name for p in params if p.kind is not p.POSITIONAL_ONLY}
    return tuple(name for name in CONTRACT_KEYWORDS if name in names)


def _as_finite_float(value: Any) -> float | None:
    """`value` as a finite float if it is a real number (numpy/torch 0-d values too), else None."""
    if not isinstance(value, numbers.Real) and getattr(value, "shape", None) == ():
        try:
            value = value.item()  # numpy bool_, 0-d arrays and tensors
        except Exception:
            return None
    if not isinstance(value, numbers.Real):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _invalid(what: str) -> Verdict:
    return Verdict(
        status=INVALID,
        error=truncate(
            f"{what}; expected a finite number, a dict with a finite numeric 'score', or None"
        ),
    )


def _show(value: Any) -> str:
    try:
        shown = repr(value)
    except Exception:
        shown = "<unrepresentable>"
    return f"{type(value).__name__} {truncate(shown, 80)}"


def judge(value: Any) -> Verdict:
    """Classify a reward function's return value (see the module docstring)."""
    if value is None:
        return Verdict(status=NOT_APPLICABLE)
    if isinstance(value, Mapping):
        return _judge_dict(value)
    number = _as_finite_float(value)
    if number is None:
        return _invalid(f"returned {_show(value)}")
    return Verdict(status=OK, score=number)


def _judge_dict(value: Mapping[Any, Any]) -> Verdict:
    if "score" not in value:
        return _invalid(f"returned a dict without a 'score' key (keys: {list(value)[:10]})")
    score = _as_finite_float(value["score"])
    if score is None:
        return _invalid(f"returned a dict whose 'score' is {_show(value['score'])}")
    components = {}
    for key, entry in value.items():
        if key == "score":
            continue
        number = _as_finite_float(entry)
        if not isinstance(key, str) or number is None:
            return _invalid(f"returned a dict whose entry {key!r} is {_show(entry)}")
        components[str(key)] = number
    return Verdict(status=OK, score=score, components=components)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def combine(verdicts: Sequence[tuple[str | None, float, Verdict]]) -> Verdict:
    """One verdict from several reward functions' (label, weight, verdict).

    A single unlabeled function's verdict passes through. Otherwise: the first failure (error,
    timeout, invalid) fails the sample, naming the function; functions that return None are left
    out, and if all do the sample is not applicable; the score is Σ weight·score over the others,
    and each function's score and components become components `label` and `label/name`.
    """
    seconds = sum(verdict.seconds for _, _, verdict in verdicts)
    if len(verdicts) == 1 and verdicts[0][0] is None:
        return verdicts[0][2]
    for label, _, verdict in verdicts:
        if verdict.status not in (OK, NOT_APPLICABLE):
            return Verdict(verdict.status, error=truncate(f"{label}: {verdict.error}"), seconds=seconds)
    applicable = [(label, weight, verdict) for label, weight, verdict in verdicts if verdict.status == OK]
    if not applicable:
        return Verdict(NOT_APPLICABLE, seconds=seconds)
    components: dict[str, float] = {}
    for label, _, verdict in applicable:
        components[str(label)] = verdict.score
        components.update({f"{label}/{name}": value for name, value in verdict.components.items()})
    score = sum(weight * verdict.score for _, weight, verdict in applicable)
    return Verdict(OK, score=score, components=components, seconds=seconds)


def call_and_judge(
    fn: Callable[..., Any], request: RewardRequest, keywords: tuple[str, ...]
) -> Verdict:
    """Call `fn` on one request and classify the outcome; never raises for the function's faults.

    `SystemExit` from the function counts as an error too (a stray `sys.exit()` should not cost a
    worker restart); `KeyboardInterrupt` still propagates.
    """
    start = time.perf_counter()
    try:
        value = fn(**request.kwargs(keywords))
        if inspect.isawaitable(value):  # an `async def` reward (e.g. one that calls a service)
            value = asyncio.run(_awaited(value))
    except (Exception, SystemExit) as exc:
        seconds = time.perf_counter() - start
        return Verdict(status=ERROR, error=describe_exception(exc), seconds=seconds)
    seconds = time.perf_counter() - start
    try:
        verdict = judge(value)
    except Exception as exc:  # a hostile object whose __eq__/__float__/keys() raise
        verdict = _invalid(f"returned a value that cannot be inspected ({describe_exception(exc)})")
    return Verdict(verdict.status, verdict.score, verdict.components, verdict.error, seconds)
