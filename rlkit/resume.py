"""Whether a run folder starts afresh, continues or is already done, and the trainer's part of
a checkpoint (written and read back).

A run never continues from a checkpoint trained with another config without saying so: each
checkpoint holds a copy and a hash of the training-relevant config (rlkit.config.resolve), and a
rerun whose config differs is refused, naming every changed key, unless it asks for
`checkpoint.resume=force` (then the change is printed and written to config_changes.jsonl).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlkit.checkpoint import Checkpoints, read_json, write_json
from rlkit.config import TrainConfig
from rlkit.config.resolve import STREAM_KEYS, config_changes, config_hash, describe_changes, training_config

LEARNER_TAG = "learner"  # the learner's DeepSpeed files, in checkpoints/step_<N>/learner/
STORE_STATE = "store.json"
TRAINER_STATE = "trainer_state.json"
CHANGES_LOG = "config_changes.jsonl"


class RunRefused(ValueError):
    """The run folder holds a run this config must not continue or overwrite."""


class ConfigChanged(RunRefused):
    """A rerun or resume whose training config differs from its checkpoint's."""


@dataclass(frozen=True)
class RunPlan:
    """What a run folder holds: nothing to continue (`fresh`), a checkpoint to continue from
    (`resume`), or a finished run (`complete`)."""

    kind: str
    step: int = 0
    folder: Path | None = None
    state: dict[str, Any] = field(default_factory=dict)  # the checkpoint's trainer state
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # forced config changes


def plan_run(config: TrainConfig, checkpoints: Checkpoints, run_dir: Path) -> RunPlan:
    """Decide how `config` (resolved) runs in `run_dir`, or raise why it cannot."""
    resume = config.checkpoint.resume
    if checkpoints.published() and resume is False:
        raise RunRefused(
            f"{run_dir} holds checkpoints ({checkpoints.root}) and checkpoint.resume=false: a fresh run there "
            "would mix its files with the old ones. Use another run.output_dir, delete "
            f"{checkpoints.root}, or set checkpoint.resume=true to continue the old run.")
    found = checkpoints.latest_valid()
    if found is None:
        if checkpoints.published():
            print(f"no valid checkpoint in {checkpoints.root} (see the warnings above): starting afresh")
        return RunPlan("fresh")
    step, folder = found
    if step > config.run.steps:
        raise RunRefused(f"{run_dir} holds a checkpoint of step {step}, past run.steps={config.run.steps}: "
                         "raise run.steps to continue it, or use another run.output_dir")
    state = read_json(folder / TRAINER_STATE)
    changes = _changes_since(state, config)
    stream = {key: change for key, change in changes.items() if key in STREAM_KEYS}
    if stream:
        raise ConfigChanged(
            f"cannot continue {run_dir} from {folder}: the settings its data order and in-flight batches were "
            f"drawn with changed, so not even checkpoint.resume=force can continue it:\n{describe_changes(stream)}\n"
            "Put them back, or start a new run in another run.output_dir.")
    if changes and resume != "force":
        raise ConfigChanged(
            f"cannot continue {run_dir} from {folder}: its training config differs from the one the "
            f"checkpoint was trained with:\n{describe_changes(changes)}\n"
            "Start a new run in another folder (run.output_dir=...), or continue this one with the new values "
            "anyway (checkpoint.resume=force; the change is logged in config_changes.jsonl).")
    complete = step == config.run.steps and (run_dir / "summary.json").exists()
    return RunPlan("complete" if complete else "resume", step, folder, state, changes)


def _changes_since(state: dict[str, Any], config: TrainConfig) -> dict[str, tuple[Any, Any]]:
    now = training_config(config)
    saved = state.get("config")
    if saved is None:  # a checkpoint from before config copies: only its stream settings are known
        return config_changes(state.get("stream", {}), {key: now[key] for key in state.get("stream", {})})
    return config_changes(saved, now)


def log_forced_changes(run_dir: Path, plan: RunPlan) -> None:
    """Say that a forced resume continues with a changed config, on the console and in the run folder."""
    if not plan.changes:
        return
    print(f"checkpoint.resume=force: continuing {plan.folder} with a changed training config:\n"
          f"{describe_changes(plan.changes)}")
    with (run_dir / CHANGES_LOG).open("a") as handle:
        handle.write(json.dumps({"step": plan.step, "time": time.time(),
                                 "changed": {key: list(change) for key, change in plan.changes.items()}}) + "\n")


def trainer_state(config: TrainConfig, step: int, **values: Any) -> dict[str, Any]:
    """The trainer's part of a checkpoint: its cursor and counters, plus the config it trained with."""
    training = training_config(config)
    stream = {key: training[key] for key in STREAM_KEYS}
    return {"step": step, "policy_version": step, **values, "stream": stream,
            "config": training, "config_hash": config_hash(training)}


def write_checkpoint(checkpoints: Checkpoints, step: int, learners: Any, store_state: dict[str, Any],
                     state: dict[str, Any]) -> Path:
    """Publish `checkpoints/step_<step>/` atomically: the learner's files, the store's samples
    admitted but not trained on, and the trainer's state."""
    folder = checkpoints.begin(step)
    learners.save_checkpoint(str(folder), LEARNER_TAG)
    write_json(folder / STORE_STATE, store_state)
    write_json(folder / TRAINER_STATE, state)
    return checkpoints.publish(folder, step)


def read_store_state(folder: Path) -> dict[str, Any]:
    return read_json(folder / STORE_STATE)
