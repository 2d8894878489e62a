"""Prompts from local jsonl/parquet files, rendered with the tokenizer's chat template.

A malformed row is an error that names the file, the row index and what is wrong with it,
so a bad dataset fails at start-up rather than mid-run.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any
from collections.abc import Iterator

from rlkit.types import Prompt


class DataError(ValueError):
    """A dataset file or row cannot be used."""


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a local .jsonl/.json/.parquet file through `datasets` (offline)."""
    import datasets

    path = Path(path)
    if not path.is_file():
        raise DataError(f"dataset file not found: {path.resolve()}")
    kind = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}.get(path.suffix)
    if kind is None:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use .jsonl, .json or .parquet")
    datasets.disable_progress_bars()
    try:
        table = datasets.load_dataset(kind, data_files=str(path), split="train")
    except Exception as error:
        raise DataError(f"{path}: could not be read as {kind}: {type(error).__name__}: {error}") from None
    return list(table)


def _messages(row: dict[str, Any], prompt_key: str, system_prompt: str | None, where: str) -> list[dict[str, str]]:
    if prompt_key not in row:
        raise DataError(f"{where}: no {prompt_key!r} column (columns: {', '.join(map(str, row))}); set data.prompt_key")
    value = row[prompt_key]
    if value is None:  # `datasets` fills a column that a row lacks with null
        raise DataError(f"{where}: no {prompt_key!r} value (missing or null in this row)")
    if isinstance(value, str):
        if not value.strip():
            raise DataError(f"{where}: {prompt_key!r} is empty")
        messages = [{"role": "user", "content": value}]
    elif isinstance(value, list) and value and all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in value):
        messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in value]
    else:
        raise DataError(f"{where}: {prompt_key!r} must be a non-empty string or a list of {{role, content}} messages, "
                        f"got {type(value).__name__}")
    if system_prompt and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system_prompt}, *messages]
    return messages


def load_prompts(
    path: str | Path,
    tokenizer,
    *,
    prompt_key: str = "prompt",
    answer_key: str | None = "answer",
    data_source_key: str | None = None,
    system_prompt: str | None = None,
    max_prompt_tokens: int = 256,
    split: str = "train",
    limit: int | None = None,
) -> list[Prompt]:
    """Every row of `path` as a Prompt (first `limit` rows if given)."""
    rows = read_rows(path)
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise DataError(f"{path}: the file has no rows")
    prompts = []
    for index, row in enumerate(rows):
        where = f"{path} row {index}"
        messages = _messages(row, prompt_key, system_prompt, where)
        ground_truth = None
        if answer_key is not None:
            if row.get(answer_key) is None:
                raise DataError(f"{where}: no {answer_key!r} (ground truth); fix the row or set data.answer_key=null")
            ground_truth = str(row[answer_key])
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        prompt_ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        if len(prompt_ids) > max_prompt_tokens:
            raise DataError(f"{where}: prompt is {len(prompt_ids)} tokens, over data.max_prompt_tokens={max_prompt_tokens}; "
                            "shorten it or raise the limit")
        source = str(row.get(data_source_key, "default")) if data_source_key else str(row.get("data_source", "default"))
        uid = str(row.get("id", f"{split}-{index}"))
        extra = {k: v for k, v in row.items() if k not in (prompt_key, answer_key, "id")}
        user_text = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        prompts.append(Prompt(uid=uid, text=text, prompt_ids=prompt_ids, ground_truth=ground_truth, data_source=source,
                              extra=extra, user_text=user_text))
    return prompts


def epochs(prompts: list[Prompt], seed: int, shuffle: bool = True) -> Iterator[Prompt]:
    """An endless stream of prompts, reshuffled each epoch."""
    rng = random.Random(seed)
    epoch = 0
    while True:
        order = list(range(len(prompts)))
        if shuffle:
            rng.shuffle(order)
        for index in order:
            yield prompts[index]
        epoch += 1
