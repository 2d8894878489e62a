"""Arithmetic word problems with exact integer answers: the default job's task.

`python -m rlkit.tasks.arithmetic --out data/arithmetic` writes train.jsonl and test.jsonl.
The splits are disjoint by construction (a problem's operands and template never appear in
both), and generation is deterministic for a seed. Difficulty is kept to one operation on
numbers under 100, the level a 135M model can learn to do reliably on a CPU in minutes.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

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
INSTRUCTION = " Give the final answer as \\boxed{{answer}}."


def make_problem(rng: random.Random, index: int, split: str) -> dict:
    template, op = TEMPLATES[rng.randrange(len(TEMPLATES))]
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    if op == "-" and b > a:
        a, b = b, a
    answer = a + b if op == "+" else a - b
    text = template.format(a=a, b=b, name=rng.choice(NAMES), item=rng.choice(ITEMS))
    return {"id": f"{split}-{index}", "prompt": text + INSTRUCTION.format(), "answer": str(answer), "data_source": "arithmetic"}


def generate(num_train: int, num_test: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Disjoint train/test splits: test problems are drawn first and excluded from train."""
    rng = random.Random(seed)
    test, seen = [], set()
    while len(test) < num_test:
        problem = make_problem(rng, len(test), "test")
        if problem["prompt"] not in seen:
            seen.add(problem["prompt"])
            test.append(problem)
    train = []
    while len(train) < num_train:
        problem = make_problem(rng, len(train), "train")
        if problem["prompt"] not in seen:
            seen.add(problem["prompt"])
            train.append(problem)
    return train, test


def write_jsonl(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/arithmetic", help="output folder")
    parser.add_argument("--train", type=int, default=5000, help="training problems")
    parser.add_argument("--test", type=int, default=500, help="held-out problems")
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args(argv)
    train, test = generate(args.train, args.test, args.seed)
    write_jsonl(train, Path(args.out) / "train.jsonl")
    write_jsonl(test, Path(args.out) / "test.jsonl")
    print(f"wrote {len(train)} train and {len(test)} test problems to {args.out}")


if __name__ == "__main__":
    main()
