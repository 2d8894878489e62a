"""Exact resume: a run killed with SIGKILL and started again with the same command ends bitwise
identical to a run never interrupted (weights and metrics), and no prompt is lost or used twice.

Both runs are real `python -m rlkit.train` processes on the tiny recipe (CPU, fixed seed), with
their own Ray clusters; the killed one dies after its step-4 checkpoint, in the middle of step 6.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlkit.tracking.metrics_log import read_metrics

sys.path.insert(0, str(Path(__file__).resolve().parent))
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


def start_and_wait_for_step(out: Path, step: int) -> subprocess.Popen:
    """Start a run; return once it has logged `step` (the next step is then under way)."""
    process = subprocess.Popen(train_command(out), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 600
    metrics = out / "metrics.jsonl"
    while time.monotonic() < deadline and process.poll() is None:
        if metrics.exists() and any(row.get("step") == step and "reward/mean" in row for row in read_metrics(metrics)):
            return process
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"the run ended or stalled before step {step}: {process.communicate()[0][-3000:]}")


def run_and_kill(out: Path, after_step: int) -> None:
    """Start a run and SIGKILL it (no cleanup of any kind) once it has logged `after_step`."""
    process = start_and_wait_for_step(out, after_step)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)


def actor_processes(root: int, title: str) -> list[int]:
    """Processes under `root` whose title (Ray sets it to the actor class) starts with `title`."""
    from test_security import descendants

    found = []
    for pid in descendants(root):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if command.startswith(title):
            found.append(pid)
    return found


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


# One process of each stage, killed with SIGKILL while step 6 runs. The run stops with the
# message docs/reliability.md promises for it (the first `quoted` text of its row in the fault
# table); the same command then resumes from the step-4 checkpoint and ends exactly like the run
# that was never interrupted.
KILLS = {
    "reward worker": ("ray::RewardWorker", "a reward worker is killed"),
    "rollout worker": ("ray::RolloutWorker", "a rollout worker is killed"),
    "store": ("ray::DataStore", "the store actor is killed"),
    "learner rank": ("ray::LearnerRank", "a learner rank is killed"),
}


def promised_message(fault: str) -> str:
    """The message docs/reliability.md's fault table promises for `fault`, as a pattern: `N`
    stands for a number, a trailing `…` for whatever follows."""
    row = next(line for line in (REPO / "docs" / "reliability.md").read_text().splitlines()
               if line.startswith(f"| {fault}"))
    message = row.split("|")[2].split("`")[1]
    return re.sub(r"(?<= )N\b", "[0-9]+", " ".join(re.escape(word) for word in message.rstrip("… ").split(" ")))


def test_the_promised_messages_are_read_from_the_docs() -> None:
    assert promised_message("a reward worker is killed") == "StageFailed: reward\\-0 failed:"
    assert promised_message("the store actor is killed") == "DataStore"
    assert promised_message("a learner rank is killed").endswith(" on rank [0-9]+")  # N: the rank's number


@pytest.mark.parametrize("victim", list(KILLS))
def test_a_killed_stage_process_stops_the_run_and_the_rerun_ends_as_if_nothing_happened(runs, tmp_path, victim) -> None:
    title, fault = KILLS[victim]
    named = promised_message(fault)
    out = tmp_path / "run"
    process = start_and_wait_for_step(out, 5)
    pids = actor_processes(process.pid, title)
    assert pids, f"no {title} process under the driver"
    os.kill(pids[-1], signal.SIGKILL)
    output, _ = process.communicate(timeout=300)
    assert process.returncode != 0, f"the run went on without its {victim}"
    assert re.search(named, output), output[-3000:]

    resumed = run_to_end(out)
    assert "resumed from" in resumed and "checkpoints/step_4" in resumed
    assert (out / "final" / "model.safetensors").read_bytes() == (runs["whole"] / "final" / "model.safetensors").read_bytes()
    assert comparable(read_metrics(out / "metrics.jsonl")) == comparable(read_metrics(runs["whole"] / "metrics.jsonl"))
    assert read_metrics(out / "data_ledger.jsonl") == read_metrics(runs["whole"] / "data_ledger.jsonl")


def rerun(out: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([*train_command(out), *overrides], cwd=REPO, capture_output=True, text=True, timeout=900)


def test_config_yaml_holds_the_values_the_run_used(runs) -> None:
    import yaml

    saved = yaml.safe_load((runs["whole"] / "config.yaml").read_text())
    assert saved["algorithm"]["loss_scale_factor"] == 16.0 and saved["algorithm"]["rollout_correction"] == "none"
    assert (saved["sync"]["dtype"], saved["sync"]["transport"]) == ("float32", "object_store")
    assert (saved["learner"]["gpus_per_rank"], saved["learner"]["backend"]) == (0.0, "gloo")


def test_rerunning_a_finished_run_with_another_method_is_refused_and_changes_nothing(runs) -> None:
    folder = runs["whole"]
    before = {name: (folder / name).read_bytes() for name in ("config.yaml", "summary.json", "metrics.jsonl")}
    done = rerun(folder, "algorithm.loss=clip_cov")
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert 'algorithm.loss: "grpo" → "clip_cov"' in done.stderr
    assert "run.output_dir" in done.stderr and "checkpoint.resume=force" in done.stderr
    assert "run already complete" not in done.stdout + done.stderr
    assert {name: (folder / name).read_bytes() for name in before} == before


def test_a_forced_resume_with_a_changed_learning_rate_is_logged_and_saved(runs, tmp_path) -> None:
    import shutil

    import yaml

    out = tmp_path / "forced"
    shutil.copytree(runs["whole"], out)
    shutil.rmtree(out / "checkpoints" / "step_6")  # as if it had stopped after its step-4 checkpoint
    (out / "summary.json").unlink()
    # Without force this is refused (tests/unit/test_run_plan.py); evaluation is operational, so it may be dropped.
    done = rerun(out, "learner.lr=3e-4", "checkpoint.resume=force", "data.eval_path=null", "run.save_final_model=false")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "checkpoint.resume=force: continuing" in done.stdout and "resumed from" in done.stdout
    logged = [json.loads(line) for line in (out / "config_changes.jsonl").read_text().splitlines()]
    assert logged[0]["step"] == 4 and logged[0]["changed"] == {"learner.lr": [0.0001, 0.0003]}
    assert yaml.safe_load((out / "config.yaml").read_text())["learner"]["lr"] == 0.0003
    steps = [row["step"] for row in read_metrics(out / "metrics.jsonl") if "reward/mean" in row]
    assert steps == list(range(1, STEPS + 1))
