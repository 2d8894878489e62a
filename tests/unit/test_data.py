"""Prompt loading (jsonl/parquet, chat template, row-indexed errors) and the shipped task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlkit.data import DataError, epochs, load_prompts
from rlkit.models import build_tiny_tokenizer
from rlkit.tasks.arithmetic import generate
from rewards.math_answer import score

REPO = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_rows_are_rendered_with_the_chat_template(tmp_path: Path, tokenizer) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "What is 2 + 3?", "answer": 5, "level": "easy"}])
    (prompt,) = load_prompts(path, tokenizer, system_prompt="Be brief.")
    assert prompt.text.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert prompt.text.endswith("<|im_start|>assistant\n")
    assert tokenizer.decode(prompt.prompt_ids) == prompt.text
    assert prompt.ground_truth == "5" and prompt.extra == {"level": "easy"} and prompt.uid == "train-0"


def test_parquet_and_chat_lists_load(tmp_path: Path, tokenizer) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    chat = [{"role": "user", "content": "hi"}]
    pq.write_table(pa.table({"prompt": [chat], "answer": ["1"]}), tmp_path / "d.parquet")
    (prompt,) = load_prompts(tmp_path / "d.parquet", tokenizer)
    assert "<|im_start|>user\nhi<|im_end|>" in prompt.text


@pytest.mark.parametrize(
    "row, message",
    [
        ({"question": "x", "answer": "1"}, "row 1: no 'prompt' value"),
        ({"prompt": "", "answer": "1"}, "row 1: 'prompt' is empty"),
        ({"prompt": 7, "answer": "1"}, "row 1: 'prompt' must be a non-empty string"),
        ({"prompt": "x"}, r"row 1: no 'answer' \(ground truth\)"),
        ({"prompt": "x" * 400, "answer": "1"}, "row 1: prompt is"),
    ],
)
def test_a_malformed_row_is_named_by_its_index(tmp_path: Path, tokenizer, row: dict, message: str) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "fine", "answer": "1"}, row])
    with pytest.raises(DataError, match=message):
        load_prompts(path, tokenizer, max_prompt_tokens=256)


def test_missing_and_unsupported_files(tmp_path: Path, tokenizer) -> None:
    with pytest.raises(DataError, match="dataset file not found"):
        load_prompts(tmp_path / "none.jsonl", tokenizer)
    (tmp_path / "d.csv").write_text("prompt\nx\n")
    with pytest.raises(DataError, match="unsupported file type"):
        load_prompts(tmp_path / "d.csv", tokenizer)


def test_epochs_reshuffle_and_cover_every_prompt(tmp_path: Path, tokenizer) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": f"p{i}", "answer": "1"} for i in range(5)])
    prompts = load_prompts(path, tokenizer)
    stream = epochs(prompts, seed=0)
    first, second = [next(stream).uid for _ in range(5)], [next(stream).uid for _ in range(5)]
    assert sorted(first) == sorted(second) == sorted(p.uid for p in prompts)


def test_arithmetic_task_is_deterministic_disjoint_and_correct() -> None:
    train, test = generate(300, 50, seed=7)
    assert (train, test) == generate(300, 50, seed=7)
    assert not {row["prompt"] for row in train} & {row["prompt"] for row in test}
    for row in train[:50]:
        numbers = [int(n) for n in __import__("re").findall(r"\d+", row["prompt"].split("?")[0])]
        expected = (numbers[0] + numbers[1] if ("+" in row["prompt"] or "more" in row["prompt"] or "total" in row["prompt"])
                    else numbers[0] - numbers[1])
        assert int(row["answer"]) == expected, row
        assert score(response=f"\\boxed{{{row['answer']}}}", ground_truth=row["answer"])["score"] == 1.0


def test_shipped_files_match_the_generator() -> None:
    train, test = generate(5000, 500, seed=1234)
    shipped = [json.loads(line) for line in (REPO / "data" / "arithmetic" / "test.jsonl").read_text().splitlines()]
    assert shipped == test
