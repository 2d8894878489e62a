"""`ray job submit --working-dir . -- python -m rlkit.train recipes/tiny_cpu.yaml`, exactly as the README says."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlkit.tracking.metrics_log import read_metrics
from wandb_files import offline_runs, read_run

REPO = Path(__file__).parents[2]
pytestmark = pytest.mark.slow


def load_launcher():
    spec = importlib.util.spec_from_file_location("local_cluster", REPO / "launch" / "local_cluster.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    state = tmp_path_factory.mktemp("head") / "cluster.json"
    launcher = load_launcher()
    info = launcher.start(num_cpus=4, state=state)
    yield info
    launcher.stop(info, state=state)
    with pytest.raises(ProcessLookupError):
        os.killpg(int(info["pgid"]), 0)  # the whole head process group is gone


def submit(address: str, *command: str, timeout_s: float = 900) -> subprocess.CompletedProcess:
    ray = str(Path(sys.executable).parent / "ray")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update({"RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
    args = [ray, "job", "submit", "--address", address, "--working-dir", ".", "--", *command]
    for _ in range(5):  # right after start the job agent may not be up yet
        result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s)
        if "No available agent" not in result.stdout + result.stderr:
            return result
        time.sleep(3)
    return result


def test_job_submit_runs_the_tiny_recipe(ray_head, tmp_path: Path) -> None:
    run_dir = tmp_path / "job-run"
    result = submit(ray_head["address"], "python", "-m", "rlkit.train", "recipes/tiny_cpu.yaml",
                    f"run.output_dir={run_dir}", "run.steps=2", "eval.num_prompts=4", "logging.progress_bar=false")
    output = result.stdout[-4000:] + result.stderr[-4000:]
    assert result.returncode == 0, output
    assert "succeeded" in output
    rows = [row for row in read_metrics(run_dir / "metrics.jsonl") if "reward/mean" in row]
    assert [row["step"] for row in rows] == [1, 2]


def test_failing_job_makes_submit_fail(ray_head) -> None:
    result = submit(ray_head["address"], "python", "-m", "rlkit.train", "recipes/tiny_cpu.yaml", "rollout.n=1")
    assert result.returncode != 0
    assert "group-relative advantages need at least 2 samples" in result.stdout + result.stderr


@pytest.mark.timeout(1500)  # two training runs as Ray jobs, then compare
def test_sweep_as_ray_jobs_groups_runs_in_wandb_and_compares(ray_head, tmp_path: Path) -> None:
    """`rlkit sweep --submit`: one Ray job per method, W&B (offline) runs named, grouped and
    tagged per method, then `rlkit compare` on the sweep folder."""
    out = tmp_path / "sweep"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "WANDB_API_KEY")}
    env.update({"RAY_AUTH_MODE": "disabled", "WANDB_MODE": "offline"})
    rlkit = [sys.executable, "-m", "rlkit.cli"]
    done = subprocess.run([*rlkit, "sweep", "recipes/tiny_cpu.yaml", "--methods", "grpo,steer", "--name", "tiny-cmp",
                           "--out", str(out), "--submit", ray_head["address"], "run.steps=2", "eval.num_prompts=4",
                           "logging.wandb=true", "logging.progress_bar=false"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    manifest = __import__("json").loads((out / "sweep.json").read_text())
    assert [(run["method"], run["status"]) for run in manifest["runs"]] == [("grpo", "ok"), ("steer", "ok")]
    for method in ("grpo", "steer"):
        run_dir = out / method / "seed0"
        assert [row["step"] for row in read_metrics(run_dir / "metrics.jsonl") if "reward/mean" in row] == [1, 2]
        (folder,) = offline_runs(run_dir)
        run = read_run(folder)  # what W&B itself recorded, as `wandb sync` would upload it
        assert (run.name, run.group, run.tags) == (f"tiny-cmp-{method}-s0", "tiny-cmp", [method, "seed0", "tiny-cmp"])
        assert run.config["algorithm"]["loss"] == ("steer" if method == "steer" else "grpo")
        assert [row["_step"] for row in run.history if "reward/mean" in row] == [1, 2]
    compared = subprocess.run([*rlkit, "compare", str(out), "--out", str(tmp_path / "cmp")], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
    assert compared.returncode == 0, compared.stderr
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| grpo | 1 |" in table and "| steer | 1 |" in table
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 10_000
