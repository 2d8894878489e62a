"""Chained arithmetic done one operation per turn: the task of the G-RA recipes.

`python -m rlkit.tasks.multistep --out data/multistep` writes train.jsonl and test.jsonl. A row
is a start value and 2–3 operations (`+ n`, `- n`, `* n`); the model writes one
`<step>a op b = c</step>` per turn, the `multistep` environment (envs/multistep.py) answers
with the next operation, and the episode ends with `<answer>c</answer>`. Columns: `id`,
`prompt`, `answer` (the final value, the ground truth), `data_source` ("multistep"), and the
chain itself as `start` and `ops` (["+ 7", "* 2"]), which the environment reads from `extra`.

This module owns the turn format: the prompt's worked example is written with the same
observation strings the environment sends, so the two cannot drift apart. Splits are disjoint
(no chain appears in both) and generation is deterministic for a seed.
"""

from __future__ import annotations

import random
import re
from fractions import Fraction

from rlkit.tags import last_tagged
from rlkit.tasks.files import task_arguments, write_splits

DATA_SOURCE = "multistep"
OPERATORS = ("+", "-", "*")
MAX_VALUE = 200  # intermediate values stay in [0, MAX_VALUE]: small numbers for a 135M model
DONE_TEXT = "\nAll steps done. Now the final answer.\n"
FORMAT_ERROR = "\nFormat error."
ANSWER_TAG = "answer"  # the episode ends with <answer>c</answer>
ANSWER_CLOSE = f"</{ANSWER_TAG}>"
_NUMBER = re.compile(r"\s*([+\-−]?[0-9]{1,30}(?:\.[0-9]{1,30})?)\s*")  # bounded: huge digit strings are not answers


def last_answer(text: str) -> str | None:
    """The content of the last complete `<answer>…</answer>`, or None."""
    return last_tagged(text, ANSWER_TAG)


def parse_number(text: str) -> Fraction | None:
    """An answer as an exact number ('19', '-3', '19.0'), or None for anything else."""
    match = _NUMBER.fullmatch(text)
    return None if match is None else Fraction(match.group(1).replace("−", "-"))


def apply(value: int, op: str, operand: int) -> int:
    """One operation of a chain (`op` is one of OPERATORS)."""
    if op == "+":
        return value + operand
    if op == "-":
        return value - operand
    if op == "*":
        return value * operand
    raise ValueError(f"unknown operator {op!r}; expected one of {', '.join(OPERATORS)}")


def format_op(op: str, operand: int) -> str:
    """'+ 7': how an operation appears in prompts, observations and the `ops` column."""
    return f"{op} {operand}"


def parse_op(text: str) -> tuple[str, int]:
    """The inverse of format_op; ValueError for anything else (bad dataset rows)."""
    parts = str(text).split()
    if len(parts) != 2 or parts[0] not in OPERATORS or not parts[1].lstrip("-").isdigit():
        raise ValueError(f"operation {text!r} is not '<op> <integer>' with op in {' '.join(OPERATORS)}")
    return parts[0], int(parts[1])


def final_value(start: int, ops: list[tuple[str, int]]) -> int:
    """The chain's result: the ground truth."""
    value = start
    for op, operand in ops:
        value = apply(value, op, operand)
    return value


def next_instruction(op: str, operand: int) -> str:
    """The observation that announces the next operation."""
    return f"\nNext: {format_op(op, operand)}\n"


EXAMPLE_START, EXAMPLE_OPS = 5, [("+", 3), ("*", 2)]


def worked_example() -> str:
    """A full episode transcript, built from the environment's own observation strings."""
    lines, value = [], EXAMPLE_START
    for index, (op, operand) in enumerate(EXAMPLE_OPS):
        result = apply(value, op, operand)
        lines.append(f"<step>{value} {op} {operand} = {result}</step>")
        later = EXAMPLE_OPS[index + 1 :]
        lines.append((next_instruction(*later[0]) if later else DONE_TEXT).strip("\n"))
        value = result
    lines.append(f"<answer>{value}</answer>")
    return "\n".join(lines)


def build_prompt(start: int, ops: list[tuple[str, int]]) -> str:
    """The user message: the chain, the exact turn format, and a worked example."""
    chain = ", ".join(format_op(op, operand) for op, operand in ops)
    example_chain = ", ".join(format_op(op, operand) for op, operand in EXAMPLE_OPS)
    return (
        f"Start with {start} and apply these operations in order: {chain}.\n"
        "Do one operation per turn, written exactly as <step>a op b = c</step>, where a is the "
        "current value and c the result. After each step you are told the next operation. "
        "When no operations are left, reply <answer>c</answer> with the final value.\n"
        f"Example: start with {EXAMPLE_START} and apply {example_chain}.\n"
        f"{worked_example()}"
    )


def make_chain(rng: random.Random, num_steps: int) -> tuple[int, list[tuple[str, int]]]:
    """A start value and `num_steps` operations whose intermediate values stay in [0, MAX_VALUE]."""
    start = rng.randint(2, 20)
    value, ops = start, []
    for _ in range(num_steps):
        op = OPERATORS[rng.randrange(len(OPERATORS))]
        if op == "-" and value < 2 or op == "*" and not 2 <= value <= MAX_VALUE // 2:
            op = "+"  # nothing to subtract; a product that would be trivial (× 0, × 1) or too large
        if op == "*":
            operand = rng.randint(2, min(5, MAX_VALUE // value))
        elif op == "-":
            operand = rng.randint(1, min(20, value))
        else:
            operand = rng.randint(1, 20)
        if op == "+" and value + operand > MAX_VALUE:
            op, operand = "-", rng.randint(1, min(20, value))
        value = apply(value, op, operand)
        ops.append((op, operand))
    return start, ops


def make_row(start: int, ops: list[tuple[str, int]], row_id: str) -> dict:
    return {
        "id": row_id,
        "prompt": build_prompt(start, ops),
        "answer": str(final_value(start, ops)),
        "data_source": DATA_SOURCE,
        "start": start,
        "ops": [format_op(op, operand) for op, operand in ops],
    }


def generate(num_train: int, num_test: int, seed: int, min_steps: int = 2, max_steps: int = 3) -> tuple[list[dict], list[dict]]:
    """Disjoint splits: test chains are drawn first and never reused for train."""
    if not 1 <= min_steps <= max_steps:
        raise ValueError(f"need 1 ≤ min_steps ≤ max_steps, got {min_steps}, {max_steps}")
    rng = random.Random(seed)
    seen: set[tuple[int, tuple[tuple[str, int], ...]]] = {(EXAMPLE_START, tuple(EXAMPLE_OPS))}  # never the example itself

    def draw(count: int, split: str) -> list[dict]:
        rows: list[dict] = []
        while len(rows) < count:
            start, ops = make_chain(rng, rng.randint(min_steps, max_steps))
            key = (start, tuple(ops))
            if key not in seen:
                seen.add(key)
                rows.append(make_row(start, ops, f"{split}-{len(rows)}"))
        return rows

    test = draw(num_test, "test")
    return draw(num_train, "train"), test


def main(argv: list[str] | None = None) -> None:
    parser = task_arguments(__doc__, "data/multistep", 2000, 200, "training chains", "held-out chains")
    parser.add_argument("--min-steps", type=int, default=2, help="fewest operations per chain")
    parser.add_argument("--max-steps", type=int, default=3, help="most operations per chain (recipes: max_turns ≥ this + 1)")
    args = parser.parse_args(argv)
    train, test = generate(args.train, args.test, args.seed, args.min_steps, args.max_steps)
    write_splits(args.out, {"train": train, "test": test})


if __name__ == "__main__":
    main()
