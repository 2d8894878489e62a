"""A rerun or resume never continues under another config without saying so.

Checkpoints here are real published checkpoint folders (manifest, verified), holding the
trainer state a run writes; only the learner's weights are left out, which the decision never
reads.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from rlkit.checkpoint import Checkpoints, write_json
from rlkit.config import load_config
from rlkit.config.resolve import config_changes, config_hash, resolve_config, training_config
from rlkit.resume import TRAINER_STATE, ConfigChanged, RunRefused, log_forced_changes, plan_run, trainer_state

REPO = Path(__file__).resolve().parents[2]
RECIPE = str(REPO / "recipes" / "tiny_cpu.yaml")


def config_of(*overrides: str, run_dir: Path, steps: int = 4):
    config = load_config(RECIPE, [f"run.output_dir={run_dir}", f"run.steps={steps}", *overrides], semantic=False)
    return resolve_config(config, cluster_has_gpus=False)


def checkpoint(run_dir: Path, config, step: int) -> None:
    checkpoints = Checkpoints(run_dir, keep=2)
    folder = checkpoints.begin(step)
    write_json(folder / TRAINER_STATE, trainer_state(config, step, batches_admitted=step, eval_rounds=1))
    checkpoints.publish(folder, step)


def plan(config):
    return plan_run(config, Checkpoints(Path(config.run.output_dir), config.checkpoint.keep), Path(config.run.output_dir))


def test_an_empty_folder_starts_afresh(tmp_path: Path) -> None:
    assert plan(config_of(run_dir=tmp_path)).kind == "fresh"


def test_the_same_config_resumes_and_a_finished_run_is_complete(tmp_path: Path) -> None:
    config = config_of(run_dir=tmp_path)
    checkpoint(tmp_path, config, 2)
    resumed = plan(config)
    assert (resumed.kind, resumed.step, resumed.changes) == ("resume", 2, {})
    checkpoint(tmp_path, config, 4)
    (tmp_path / "summary.json").write_text("{}")
    assert plan(config).kind == "complete"


def test_operational_settings_may_change_between_a_run_and_its_resume(tmp_path: Path) -> None:
    checkpoint(tmp_path, config_of(run_dir=tmp_path), 2)
    changed = config_of("logging.wandb=false", "rollout.num_workers=2", "eval.num_prompts=7", "run.steps=8",
                        "sync.timeout_s=99", run_dir=tmp_path, steps=8)
    assert plan(changed).kind == "resume"


def test_a_finished_run_rerun_with_another_method_is_refused_naming_every_change(tmp_path: Path) -> None:
    checkpoint(tmp_path, config_of(run_dir=tmp_path), 4)
    (tmp_path / "summary.json").write_text("{}")
    with pytest.raises(ConfigChanged) as refused:
        plan(config_of("algorithm.loss=clip_cov", "learner.lr=3e-6", run_dir=tmp_path))
    message = str(refused.value)
    assert 'algorithm.loss: "grpo" → "clip_cov"' in message
    assert "learner.lr: 0.0001 → 3e-06" in message
    assert "run.output_dir" in message and "checkpoint.resume=force" in message


def test_a_half_finished_run_refuses_a_changed_learning_rate_unless_forced(tmp_path: Path) -> None:
    checkpoint(tmp_path, config_of(run_dir=tmp_path), 2)
    with pytest.raises(ConfigChanged, match=r"learner\.lr"):
        plan(config_of("learner.lr=3e-6", run_dir=tmp_path))
    forced = plan(config_of("learner.lr=3e-6", "checkpoint.resume=force", run_dir=tmp_path))
    assert forced.kind == "resume" and list(forced.changes) == ["learner.lr"]
    log_forced_changes(tmp_path, forced)
    logged = (tmp_path / "config_changes.jsonl").read_text()
    assert '"learner.lr"' in logged and "3e-06" in logged


def test_a_changed_auto_default_counts_as_a_change(tmp_path: Path) -> None:
    """The saved values are the resolved ones: a run that used the response budget as its loss
    scale does not resume under another budget."""
    checkpoint(tmp_path, config_of(run_dir=tmp_path), 2)
    with pytest.raises(ConfigChanged, match=r"algorithm\.loss_scale_factor: 16\.0 → 32\.0"):
        plan(config_of("rollout.sampling.max_new_tokens=32", run_dir=tmp_path))


STREAM_CHANGES = {
    "run.seed": ["run.seed=5"],
    "data.train_path": ["data.train_path=OTHER"],
    "rollout.prompts_per_step": ["rollout.prompts_per_step=2"],
    "rollout.n": ["rollout.n=2"],
    "sync.max_staleness": ["sync.max_staleness=1"],
}


@pytest.mark.parametrize("key", list(STREAM_CHANGES))
def test_a_changed_data_stream_setting_is_refused_even_when_forced(tmp_path: Path, key: str) -> None:
    run_dir = tmp_path / "run"
    checkpoint(run_dir, config_of(run_dir=run_dir), 2)
    other = tmp_path / "other.jsonl"
    shutil.copy(REPO / "data" / "arithmetic" / "train.jsonl", other)
    overrides = [item.replace("OTHER", str(other)) for item in STREAM_CHANGES[key]]
    for mode in ("true", "force"):
        with pytest.raises(ConfigChanged) as refused:
            plan(config_of(*overrides, f"checkpoint.resume={mode}", run_dir=run_dir))
        assert f"{key}:" in str(refused.value) and "not even checkpoint.resume=force" in str(refused.value)


def test_a_checkpoint_past_run_steps_is_refused(tmp_path: Path) -> None:
    checkpoint(tmp_path, config_of(run_dir=tmp_path), 4)
    with pytest.raises(RunRefused, match=r"checkpoint of step 4, past run.steps=3"):
        plan(config_of(run_dir=tmp_path, steps=3))


def test_resume_false_over_old_checkpoints_is_refused(tmp_path: Path) -> None:
    checkpoint(tmp_path, config_of(run_dir=tmp_path), 2)
    with pytest.raises(RunRefused, match="checkpoint.resume=false"):
        plan(config_of("checkpoint.resume=false", run_dir=tmp_path))


def test_a_checkpoint_from_before_config_copies_is_checked_on_its_stream_settings(tmp_path: Path) -> None:
    config = config_of(run_dir=tmp_path)
    checkpoint(tmp_path, config, 2)
    state_file = tmp_path / "checkpoints" / "step_2" / TRAINER_STATE
    state = {key: value for key, value in trainer_state(config, 2).items() if key not in ("config", "config_hash")}
    # Rewrite it as an older run wrote it (and refresh the manifest so it still verifies).
    shutil.rmtree(tmp_path / "checkpoints")
    checkpoints = Checkpoints(tmp_path)
    folder = checkpoints.begin(2)
    write_json(folder / TRAINER_STATE, state)
    checkpoints.publish(folder, 2)
    assert state_file.exists()
    assert plan(config_of("learner.lr=3e-6", run_dir=tmp_path)).kind == "resume"
    with pytest.raises(ConfigChanged, match=r"rollout\.n"):
        plan(config_of("rollout.n=2", run_dir=tmp_path))


def test_resolution_makes_every_auto_value_concrete_and_is_idempotent(tmp_path: Path) -> None:
    config = config_of(run_dir=tmp_path)
    assert config.algorithm.loss_scale_factor == 16.0  # the recipe's response budget
    assert config.algorithm.rollout_correction == "none"
    assert (config.sync.dtype, config.sync.transport) == ("float32", "object_store")
    assert (config.learner.gpus_per_rank, config.learner.backend) == (0.0, "gloo")
    assert config.eval.max_new_tokens == config.rollout.sampling.max_new_tokens
    assert resolve_config(config, cluster_has_gpus=False) == config
    stale = resolve_config(load_config(RECIPE, ["sync.max_staleness=1"], semantic=False), cluster_has_gpus=True)
    assert stale.algorithm.rollout_correction == "tis"
    assert (stale.learner.gpus_per_rank, stale.learner.backend) == (1.0, "nccl")
    explicit = dataclasses.replace(config.learner, gpus_per_rank=None, backend="nccl")
    assert explicit.gpus_for(cluster_has_gpus=False) == 1.0  # nccl needs a GPU whatever the cluster says


def test_training_config_hash_ignores_operational_keys_and_sees_training_ones(tmp_path: Path) -> None:
    base = training_config(config_of(run_dir=tmp_path))
    assert config_hash(base) == config_hash(training_config(config_of("logging.wandb=false", run_dir=tmp_path / "x")))
    changed = training_config(config_of("algorithm.loss_options={clip_ratio_high: 0.3}", run_dir=tmp_path))
    assert config_hash(changed) != config_hash(base)
    assert list(config_changes(base, changed)) == ["algorithm.loss_options"]
