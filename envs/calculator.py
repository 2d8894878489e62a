"""A calculator tool for arithmetic word problems.

The model may write `<calc>expression</calc>`; its turn ends there and the environment answers
`<result>value</result>`. A turn without a calculator call is the final answer and ends the
episode. Expressions are parsed, never evaluated as Python: numbers, + − × ÷ // % ** and
parentheses only, with bounds on length, exponents and magnitude.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from typing import Any

from rlkit.environment import ENVIRONMENTS, StepResult

CALL = re.compile(r"<calc>(.*?)</calc>", re.DOTALL)
MAX_EXPRESSION_CHARS = 200
MAX_EXPONENT = 100
MAX_MAGNITUDE = 1e15
OPERATORS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}


class CalculatorError(ValueError):
    """The expression is not one the calculator computes; the message is shown to the model."""


def evaluate(expression: str) -> float | int:
    """The value of an arithmetic expression, or CalculatorError saying why not."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip().replace("×", "*").replace("÷", "/"), mode="eval")
    except (SyntaxError, ValueError):
        raise CalculatorError("not an arithmetic expression") from None
    return _value(tree.body)


def _value(node: ast.AST) -> float | int:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return _bounded(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _value(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise CalculatorError(f"exponent above {MAX_EXPONENT}")
        try:
            return _bounded(OPERATORS[type(node.op)](left, right))
        except ZeroDivisionError:
            raise CalculatorError("division by zero") from None
        except (OverflowError, TypeError):  # e.g. a complex result of a fractional power
            raise CalculatorError("result out of range") from None
    raise CalculatorError("only numbers, + - * / // % ** and parentheses are allowed")


def _bounded(value: Any) -> float | int:
    if isinstance(value, complex) or not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
        raise CalculatorError("result out of range")
    return value


def show(value: float | int) -> str:
    """Integers without a decimal point, other values to 10 significant digits."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value) if isinstance(value, int) else f"{value:.10g}"


@ENVIRONMENTS.register("calculator")
class Calculator:
    """One episode: answer every `<calc>` call; the first turn without one ends the episode."""

    stop = ("</calc>",)

    def __init__(self, call_reward: float = 0.0) -> None:
        self.call_reward = call_reward  # immediate reward per well-formed call (0: outcome only)

    def reset(self, prompt: str, ground_truth: str | None, extra: dict[str, Any]) -> None:
        self.calls = 0

    def step(self, action: str) -> StepResult:
        calls = CALL.findall(action)
        if not calls:
            return StepResult(done=True)
        self.calls += 1
        try:
            answer, reward = show(evaluate(calls[-1])), self.call_reward
        except CalculatorError as error:
            answer, reward = f"error: {error}", 0.0
        return StepResult(observation=f"<result>{answer}</result>\n", reward=reward)
