"""Asynchronous training on a real local Ray cluster: rollout runs ahead of the learner by at most
k policy versions, stale samples are importance-weighted, and the store reports its own state."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rlkit.config import load_config
from rlkit.controller import train
from rlkit.tracking.metrics_log import read_metrics

REPO = Path(__file__).parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]


@pytest.mark.parametrize("k", [1, 2])
def test_async_run_keeps_every_sample_within_k_versions(k: int, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    run_dir = tmp_path / "run"
    core = min(os.sched_getaffinity(0))
    config = load_config(str(REPO / "recipes" / "tiny_cpu.yaml"), [
        f"sync.max_staleness={k}", f"run.output_dir={run_dir}", "run.steps=6", "data.eval_path=null",
        f"reward.fn.path={REPO / 'rewards' / 'char_fraction.py'}", "reward.fn.name=score",
        f"rollout.cpu_cores=[{core}]", "logging.progress_bar=false", "logging.plots=false",
        "run.save_final_model=false", "logging.wandb=false",
    ])
    train(config)
    rows = [row for row in read_metrics(run_dir / "metrics.jsonl") if "reward/mean" in row]
    assert [row["policy_version"] for row in rows] == list(range(1, 7))
    for row in rows:
        assert 0 <= row["rollout/staleness/mean"] <= row["rollout/staleness/max"] <= k, row
        assert row["rollout/samples"] == 16  # whole groups only, nothing dropped for being late
        # auto → truncated importance weighting against the rollout policy
        assert 0 < row["actor/rollout_is/mean"] <= 2.0 and row["actor/rollout_is/weight_max"] <= 2.0
        assert row["store/entries"] >= 0 and 0 <= row["store/wait_ms/train/p50"] <= row["store/wait_ms/train/p95"]
    # The rollout ran ahead: later batches were generated before the weights they train on.
    assert max(row["rollout/staleness/max"] for row in rows) >= 1
