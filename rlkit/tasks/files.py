"""Command line and files of a task generator: rows as one JSON object per line, as rlkit.data reads them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any
from collections.abc import Iterable


def write_jsonl(rows: Iterable[dict[str, Any]], path: Path, ascii_only: bool = True) -> None:
    """Write `rows` to `path` (folders created). `ascii_only=False` keeps non-ASCII text as is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(row, ensure_ascii=ascii_only) + "\n" for row in rows)
    path.write_text(text, encoding="utf-8")


def task_arguments(doc: str, out: str, train: int, test: int, train_help: str, test_help: str) -> argparse.ArgumentParser:
    """The options every generator takes: --out, --train, --test, --seed (1234, the shipped files')."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out", default=out, help="output folder")
    parser.add_argument("--train", type=int, default=train, help=train_help)
    parser.add_argument("--test", type=int, default=test, help=test_help)
    parser.add_argument("--seed", type=int, default=1234)
    return parser


def write_splits(out: str | Path, splits: dict[str, list[dict[str, Any]]], ascii_only: bool = True) -> None:
    """Write each split as `<out>/<name>.jsonl` and say how many rows went where."""
    for name, rows in splits.items():
        write_jsonl(rows, Path(out) / f"{name}.jsonl", ascii_only)
    print("wrote " + ", ".join(f"{len(rows)} {name} rows" for name, rows in splits.items()) + f" to {out}")
