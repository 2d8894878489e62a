"""Arithmetic word problems with exact integer answers: the default job's task.

`python -m rlkit.tasks.arithmetic --out data/arithmetic` writes train.jsonl and test.jsonl.
The splits are disjoint by construction (a problem's operands and template never appear in
both), and generation is deterministic for a seed. Difficulty is one addition or subtraction
on numbers up to 50 (`--max-operand`): SmolLM2-135M-Instruct answers about 17% of them right
greedily at the start, which leaves a sampled group enough correct answers to learn from on a
CPU in minutes (with numbers up to 99 it starts near 4%, and sampled groups are almost all 0).
"""

from __future__ import annotations

import random

from rlkit.tasks.files import task_arguments, write_splits

NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jo", "Kofi", "Lena"]
ITEMS = ["apples", "books", "coins", "marbles", "pencils", "stamps", "cards", "shells"]

# (template, operation); {a} and {b} are operands, the answer is op(a, b).
TEMPLATES = [
    ("What is {a} + {b}?", "+"),
    ("What is {a} - {b}?", "-"),
    ("{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?", "+"),
    ("{name} has {a} {item} and gives away {b}. How many {item} are left?", "-"),
    ("A box holds {a} {item}. Another box holds {b} {item}. How many {item} are there in total?", "+"),
    ("{name} had {a} {item}, then lost {b} of them. How many {item} does {name} have?", "-"),
]
INSTRUCTION = " Put the final answer in \\boxed{}."


def make_problem(rng: random.Random, index: int, split: str, max_operand: int = 50, ops: str = "+-") -> dict:
    templates = [(template, op) for template, op in TEMPLATES if op in ops]
    template, op = templates[rng.randrange(len(templates))]
    a, b = rng.randint(1, max_operand), rng.randint(1, max_operand)
    if op == "-" and b > a:
        a, b = b, a
    answer = a + b if op == "+" else a - b
    text = template.format(a=a, b=b, name=rng.choice(NAMES), item=rng.choice(ITEMS))
    return {"id": f"{split}-{index}", "prompt": text + INSTRUCTION, "answer": str(answer), "data_source": "arithmetic"}


def generate(num_train: int, num_test: int, seed: int, max_operand: int = 50, ops: str = "+-") -> tuple[list[dict], list[dict]]:
    """Disjoint train/test splits: test problems are drawn first and excluded from train."""
    rng = random.Random(seed)
    test, seen = [], set()
    while len(test) < num_test:
        problem = make_problem(rng, len(test), "test", max_operand, ops)
        if problem["prompt"] not in seen:
            seen.add(problem["prompt"])
            test.append(problem)
    train = []
    while len(train) < num_train:
        problem = make_problem(rng, len(train), "train", max_operand, ops)
        if problem["prompt"] not in seen:
            seen.add(problem["prompt"])
            train.append(problem)
    return train, test


def main(argv: list[str] | None = None) -> None:
    parser = task_arguments(__doc__, "data/arithmetic", 5000, 500, "training problems", "held-out problems")
    parser.add_argument("--max-operand", type=int, default=50, help="largest operand (difficulty)")
    parser.add_argument("--ops", default="+-", help="operations to draw from: + and/or -")
    args = parser.parse_args(argv)
    train, test = generate(args.train, args.test, args.seed, args.max_operand, args.ops)
    write_splits(args.out, {"train": train, "test": test})


if __name__ == "__main__":
    main()
