"""metrics.jsonl and data_ledger.jsonl after a crash: a last line cut short by the kill is
dropped, a broken line before it is an error, and a resumed run rewinds to its checkpoint's rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlkit.tracking.metrics_log import JsonLines, read_metrics

ROWS = [{"step": 1, "reward/mean": 0.1}, {"step": 2, "reward/mean": 0.2}, {"step": 3, "reward/mean": 0.3}]


def written(path: Path, torn: str = "") -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in ROWS) + torn)
    return path


def test_a_torn_last_line_is_left_out(tmp_path: Path) -> None:
    path = written(tmp_path / "metrics.jsonl", torn='{"step": 4, "reward/me')
    assert read_metrics(path) == ROWS


def test_a_broken_line_before_the_last_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n{not json\n" + json.dumps(ROWS[1]) + "\n")
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        read_metrics(path)


def test_resuming_rewinds_to_the_checkpoint_rows_and_drops_the_torn_line(tmp_path: Path) -> None:
    path = written(tmp_path / "metrics.jsonl", torn='{"step": 4, "rew')
    log = JsonLines(path, keep_rows=2)  # the checkpoint was taken after step 2
    assert log.rows == ROWS[:2]
    assert read_metrics(path) == ROWS[:2] and path.read_text().endswith("\n")  # the file itself is rewritten
    log.log(3, {"reward/mean": 0.33})
    assert [row["step"] for row in read_metrics(path)] == [1, 2, 3]


def test_a_file_shorter_than_its_checkpoint_says_is_refused(tmp_path: Path) -> None:
    path = written(tmp_path / "metrics.jsonl")
    with pytest.raises(ValueError, match="fewer than the 5 its checkpoint recorded"):
        JsonLines(path, keep_rows=5)
