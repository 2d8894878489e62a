"""W&B through MetricsLog, with the real wandb client and no network: the online/offline
decision (online with an API key, offline without, an explicit WANDB_MODE first), and an offline
run read back from W&B's own run files.

The online branch is tested at the decision only: given a key, wandb 0.31 picks its server from
the key's form as well as WANDB_BASE_URL, and a test must never reach out to the internet."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlkit.tracking.metrics_log import MetricsLog, read_metrics, wandb_mode
from wandb_files import offline_runs, read_run


@pytest.fixture
def no_wandb_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """As a user's shell: no W&B mode or key (tests/conftest.py sets WANDB_MODE=offline)."""
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_mode_follows_the_key_and_an_explicit_mode_wins(no_wandb_env: pytest.MonkeyPatch) -> None:
    assert wandb_mode() == "offline"
    no_wandb_env.setenv("WANDB_API_KEY", "0" * 40)
    assert wandb_mode() == "online"
    no_wandb_env.setenv("WANDB_MODE", "disabled")
    assert wandb_mode() == "disabled"
    no_wandb_env.delenv("WANDB_API_KEY")
    no_wandb_env.setenv("WANDB_MODE", "online")
    assert wandb_mode() == "online"


def metrics_log(run_dir: Path) -> MetricsLog:
    return MetricsLog(run_dir, use_wandb=True, project="rlkit-tests", name="cmp-grpo-s1", group="cmp",
                      tags=["grpo", "seed1", "cmp"], config={"learner": {"lr": 2e-5}, "rollout": {"n": 8}})


def test_without_a_key_the_run_is_written_offline_with_its_name_group_tags_and_values(
        no_wandb_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    log = metrics_log(tmp_path)
    log.log(1, {"reward/mean": 0.25, "eval/accuracy": 0.41, "entropy/mean": float("nan")})
    log.log(2, {"reward/mean": 0.5})
    log.summary({"eval_after/accuracy": 0.41})
    log.close()

    (folder,) = offline_runs(tmp_path)
    run = read_run(folder)
    assert (run.project, run.name, run.group, run.tags) == ("rlkit-tests", "cmp-grpo-s1", "cmp", ["grpo", "seed1", "cmp"])
    assert run.config["learner"] == {"lr": 2e-5} and run.config["rollout"] == {"n": 8}
    logged = [{k: v for k, v in row.items() if not k.startswith("_")} for row in run.history]
    # A non-finite value is left out of W&B (metrics.jsonl writes it as null).
    assert logged == [{"reward/mean": 0.25, "eval/accuracy": 0.41}, {"reward/mean": 0.5}]
    assert [row["_step"] for row in run.history] == [1, 2]
    assert run.summary["eval_after/accuracy"] == 0.41
    assert read_metrics(tmp_path / "metrics.jsonl")[0]["entropy/mean"] is None
