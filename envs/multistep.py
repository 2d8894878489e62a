"""Chained arithmetic, one operation per turn, with rule-based step critics: the G-RA setting.

The episode's chain comes from the dataset row (`extra["start"]`, `extra["ops"]`, written by
rlkit.tasks.multistep). Each model turn is one `<step>a op b = c</step>`; the environment
answers with the next operation, and a turn with `<answer>c</answer>` ends the episode. Whether
that answer is right is the outcome r^high, judged by the reward function (rewards/gra.py
`final_answer_outcome`), not here; this environment only gives the immediate rewards r^low_t:

    valid      +0.1  the step parses and its arithmetic holds (a op b = c)
    wrong       0.0  it parses but the arithmetic is false
    malformed  −0.1  no parsable step or answer, or a step after the last operation
    answer      0.0  a numeric `<answer>` (−0.1 if its content is not a number); ends the episode

The critic is local on purpose, like the paper's format and tool-use critics: by default it does
not check that the step is the instructed one, so `<step>1 + 1 = 2</step>` also earns +0.1. That
is the misalignment G-RA exists for: D-RA pays for such steps even when the answer is wrong.
`strict_steps=True` also requires the instructed operator and operand applied to the current value.
The magnitudes keep Σ r^low (at most +0.3 on a 3-step chain) below the outcome's 1.

Any parsed step (valid or wrong) moves to the next operation, and its c becomes the current
value; a malformed turn repeats the instruction. Parsing is regex only (never eval), bounded in
digits, and linear in the turn's length, so garbage of any size costs the malformed reward and
nothing else. No randomness or clock: the same reset arguments and actions give the same results,
which the host relies on when it replays episodes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from rlkit.environment import ENVIRONMENTS, StepResult
from rlkit.tags import last_tagged_span
from rlkit.tasks.multistep import (
    ANSWER_CLOSE,
    DONE_TEXT,
    FORMAT_ERROR,
    apply,
    final_value,
    last_answer,
    next_instruction,
    parse_number,
    parse_op,
)

STEP_TAG = "step"
STEP_CLOSE = f"</{STEP_TAG}>"
_INT = r"[+\-−]?[0-9]{1,9}"
_STEP_BODY = re.compile(rf"\s*({_INT})\s*([-+*×xX−])\s*([0-9]{{1,9}})\s*=\s*({_INT})\s*")
_OPERATOR = {"+": "+", "-": "-", "−": "-", "*": "*", "×": "*", "x": "*", "X": "*"}

VALID, WRONG, MALFORMED = "valid", "wrong", "malformed"
ANSWER_REWARD = 0.0  # a numeric answer earns nothing here: its correctness is the outcome, judged once


@dataclass(frozen=True)
class Step:
    """One parsed `<step>a op b = c</step>` (op normalised to + - *)."""

    a: int
    op: str
    b: int
    c: int


def _int(text: str) -> int:
    return int(text.replace("−", "-"))


def parse_step(turn: str) -> Step | None:
    """The last `<step>` block that closes in `turn`, or None. Text before it is tolerated."""
    span = last_tagged_span(turn, STEP_TAG)
    if span is None:
        return None
    match = _STEP_BODY.fullmatch(turn, *span)
    if match is None:
        return None
    a, op, b, c = match.groups()
    return Step(_int(a), _OPERATOR[op], int(b), _int(c))


def judge_step(step: Step | None, value: int, instructed: tuple[str, int] | None, strict: bool) -> str:
    """VALID, WRONG or MALFORMED for one step, given the current value and this turn's operation
    (None: the chain is finished, so any step is off-protocol)."""
    if step is None or instructed is None:
        return MALFORMED
    if apply(step.a, step.op, step.b) != step.c:
        return WRONG
    if strict and (step.a, step.op, step.b) != (value, *instructed):
        return WRONG
    return VALID


@ENVIRONMENTS.register("multistep")
class MultiStep:
    """One episode of a chain: steps until `<answer>`; rewards per step as in the module docstring."""

    stop = (STEP_CLOSE, ANSWER_CLOSE)

    def __init__(
        self,
        valid_reward: float = 0.1,
        wrong_reward: float = 0.0,
        malformed_reward: float = -0.1,
        strict_steps: bool = False,
    ) -> None:
        self.rewards = {VALID: float(valid_reward), WRONG: float(wrong_reward), MALFORMED: float(malformed_reward)}
        if not all(math.isfinite(r) for r in self.rewards.values()):
            raise ValueError(f"multistep step rewards must be finite numbers, got {self.rewards}")
        self.strict_steps = bool(strict_steps)
        self._ops: list[tuple[str, int]] = []
        self._value = 0
        self._position = 0  # index of the next operation
        self._done = True  # until reset

    def reset(self, prompt: str, ground_truth: str | None, extra: dict[str, Any]) -> None:
        """Read the chain from the row; a row without one, or one that disagrees with its ground
        truth, is a data error and fails loudly."""
        try:
            start = int(extra["start"])
            ops = [parse_op(op) for op in extra["ops"]]
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(
                f"multistep needs dataset columns start (an integer) and ops (e.g. ['+ 7', '* 2']), "
                f"as written by `python -m rlkit.tasks.multistep`: {error}"
            ) from None
        if not ops:
            raise ValueError("multistep: the row's ops column is empty; a chain needs at least one operation")
        if ground_truth is not None and parse_number(str(ground_truth)) != final_value(start, ops):
            raise ValueError(f"multistep: ground truth {ground_truth!r} is not the chain's result {final_value(start, ops)}")
        self._ops, self._value, self._position, self._done = ops, start, 0, False

    def step(self, action: str) -> StepResult:
        """Judge one turn: an answer ends the episode, a parsed step advances the chain, anything
        else costs the malformed reward and repeats the instruction."""
        if self._done:
            raise RuntimeError("multistep: step() after the episode ended (or before reset)")
        turn = str(action)
        if ANSWER_CLOSE in turn:
            answer = last_answer(turn)
            well_formed = answer is not None and parse_number(answer) is not None
            self._done = True
            return StepResult("", ANSWER_REWARD if well_formed else self.rewards[MALFORMED], True)
        instructed = self._ops[self._position] if self._position < len(self._ops) else None
        parsed = parse_step(turn)
        verdict = judge_step(parsed, self._value, instructed, self.strict_steps)
        if verdict == MALFORMED or parsed is None:
            return StepResult(self._reminder(error=instructed is not None), self.rewards[MALFORMED])
        self._value, self._position = parsed.c, self._position + 1
        return StepResult(self._reminder(error=False), self.rewards[verdict])

    def _reminder(self, error: bool) -> str:
        """The next operation, or the request for the answer; prefixed by the format error."""
        if self._position < len(self._ops):
            text = next_instruction(*self._ops[self._position])
        else:
            text = DONE_TEXT
        return FORMAT_ERROR + text if error else text
