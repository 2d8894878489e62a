"""Exact resume: a run killed with SIGKILL and started again with the same command ends bitwise
identical to a run never interrupted (weights and metrics), and no prompt is lost or used twice.

Both runs are real `python -m rlkit.train` processes on the tiny recipe (CPU, fixed seed), with
their own Ray clusters; the killed one dies after its step-4 checkpoint, in the middle of step 6.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlkit.tracking.metrics_log import read_metrics

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

STEPS = 6
# Wall-clock and store-occupancy figures differ between any two runs; everything else must not.
TIMING_PREFIXES = ("timing/", "throughput/", "store/")


def train_command(out: Path) -> list[str]:
    return [sys.executable, "-m", "rlkit.train", "recipes/tiny_cpu.yaml", f"run.steps={STEPS}", "checkpoint.every=2",
            f"run.output_dir={out}", "logging.progress_bar=false", "eval.num_prompts=4"]


def run_to_end(out: Path) -> str:
    done = subprocess.run(train_command(out), cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def run_and_kill(out: Path, after_step: int) -> None:
    """Start a run and SIGKILL it (no cleanup of any kind) once it has logged `after_step`."""
    process = subprocess.Popen(train_command(out), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    metrics = out / "metrics.jsonl"
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if metrics.exists() and any(row.get("step") == after_step and "reward/mean" in row for row in read_metrics(metrics)):
                break
            time.sleep(0.2)
        assert process.poll() is None, "the run ended before it could be killed"
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)


def comparable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if not k.startswith(TIMING_PREFIXES)} for row in rows]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("resume")
    whole, killed = base / "whole", base / "killed"
    run_to_end(whole)
    run_and_kill(killed, after_step=5)
    output = run_to_end(killed)  # the same command again
    assert "resumed from" in output and "checkpoints/step_4" in output
    return {"whole": whole, "killed": killed}


def test_resumed_run_ends_with_bitwise_identical_weights(runs) -> None:
    whole = (runs["whole"] / "final" / "model.safetensors").read_bytes()
    resumed = (runs["killed"] / "final" / "model.safetensors").read_bytes()
    assert whole == resumed


def test_resumed_run_logs_identical_metrics_once_per_step(runs) -> None:
    whole = comparable(read_metrics(runs["whole"] / "metrics.jsonl"))
    resumed = comparable(read_metrics(runs["killed"] / "metrics.jsonl"))
    assert [row["step"] for row in resumed] == [0, *range(1, STEPS + 1), STEPS]  # eval before, steps, eval after
    assert resumed == whole


def test_no_prompt_is_lost_or_used_twice(runs) -> None:
    whole = read_metrics(runs["whole"] / "data_ledger.jsonl")
    resumed = read_metrics(runs["killed"] / "data_ledger.jsonl")
    assert resumed == whole
    groups = [group for row in resumed for group in row["groups"]]
    assert len(groups) == len(set(groups)) == STEPS * 4
    # Group uids are "<prompt uid>@<batch>": step s trains exactly batch s − 1.
    assert all(group.endswith(f"@{row['step'] - 1}") for row in resumed for group in row["groups"])


def test_checkpoints_are_verified_and_only_the_newest_two_kept(runs) -> None:
    folder = runs["killed"] / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["step_4", "step_6"]
    for step in ("step_4", "step_6"):
        manifest = json.loads((folder / step / "MANIFEST.json").read_text())
        assert {"trainer_state.json", "store.json", "learner/mp_rank_00_model_states.pt"} <= set(manifest["files"])
