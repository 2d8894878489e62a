"""Every "auto" or unset value of a config made concrete, in one place, once per run.

A run writes the resolved config as `config.yaml` and compares it with its checkpoints', so the
saved file always names the values the run used (which loss scale, which importance
correction, which weight transport, how many GPUs per rank) and a changed default can never
resume silently.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from typing import Any

from rlkit.config.schema import TrainConfig

# Keys that decide how a run is operated, not what it computes: they may change between a run
# and its resume (more workers, another W&B project, a longer timeout) without a refusal.
# Everything else is training-relevant, including keys added later, unless listed here.
OPERATIONAL_KEYS = (
    "run.name", "run.output_dir", "run.steps", "run.save_final_model", "run.max_consecutive_skips",
    "checkpoint", "eval", "logging", "ray", "placement", "data.eval_path",
    "rollout.num_workers", "rollout.cpus_per_worker", "rollout.gpus_per_worker", "rollout.resources",
    "rollout.cpu_cores", "rollout.batch_timeout_s", "rollout.prompts_per_request",
    "rollout.engine_options.num_threads",
    "reward.num_workers", "reward.processes_per_worker", "reward.cpus_per_worker", "reward.resources",
    "reward.cpu_cores",
    "learner.cpus_per_rank", "learner.resources", "learner.cpu_cores", "learner.num_threads",
    "sync.timeout_s", "sync.transport", "sync.bucket_mb",
)

# The settings the checkpoint's data cursor and in-flight batches were drawn with: even a forced
# resume cannot continue across a change of these (the saved groups would not fit the new ones).
STREAM_KEYS = ("run.seed", "data.train_path", "data.shuffle", "rollout.prompts_per_step", "rollout.n",
               "sync.max_staleness")


def resolve_config(config: TrainConfig, cluster_has_gpus: bool) -> TrainConfig:
    """`config` with every auto/unset value decided for a cluster with (or without) GPUs.

    Idempotent: resolving a resolved config changes nothing.
    """
    from rlkit.algorithms.options import resolve_rollout_correction
    from rlkit.sync import resolve_transport

    gpus = config.learner.gpus_for(cluster_has_gpus)
    backend = config.learner.backend if config.learner.backend != "auto" else ("nccl" if gpus > 0 else "gloo")
    learner = dataclasses.replace(config.learner, gpus_per_rank=gpus, backend=backend)

    algorithm = config.algorithm
    if algorithm.loss_scale_factor is None:  # Dr.GRPO's constant: the response budget
        env = config.rollout.env
        budget = env.max_episode_tokens if env.name else config.rollout.sampling.max_new_tokens
        algorithm = dataclasses.replace(algorithm, loss_scale_factor=float(budget))
    algorithm = resolve_rollout_correction(algorithm, config.sync.max_staleness)

    sync = config.sync
    dtype = config.rollout.engine_options.dtype if sync.dtype == "auto" else sync.dtype
    transport = resolve_transport(sync.transport, config.rollout.gpus_per_worker, gpus)
    sync = dataclasses.replace(sync, dtype=dtype, transport=transport)

    evaluation = config.eval
    if not evaluation.max_new_tokens:
        evaluation = dataclasses.replace(evaluation, max_new_tokens=config.rollout.sampling.max_new_tokens)
    return dataclasses.replace(config, learner=learner, algorithm=algorithm, sync=sync, eval=evaluation)


def plain_config(config: TrainConfig) -> dict[str, Any]:
    """The config as nested plain data (JSON types), as W&B and checkpoints record it."""
    from omegaconf import OmegaConf

    return json.loads(json.dumps(OmegaConf.to_container(OmegaConf.structured(config), resolve=True)))


def flat_config(config: TrainConfig) -> dict[str, Any]:
    """Dotted key → value for every field; a field that is a mapping or list of values (loss
    options, resources) is one value, so adding an option shows as that field changing."""
    flat: dict[str, Any] = {}

    def walk(node: dict[str, Any], prefix: str, section: type) -> None:
        hints = typing.get_type_hints(section)
        for key, value in node.items():
            kind = hints.get(key)
            if isinstance(value, dict) and dataclasses.is_dataclass(kind):
                walk(value, f"{prefix}{key}.", kind)
            else:
                flat[f"{prefix}{key}"] = value

    walk(plain_config(config), "", TrainConfig)
    return flat


def _operational(key: str) -> bool:
    return any(key == prefix or key.startswith(prefix + ".") for prefix in OPERATIONAL_KEYS)


def training_config(config: TrainConfig) -> dict[str, Any]:
    """The training-relevant part of a resolved config: every key that changes what is computed."""
    return {key: value for key, value in flat_config(config).items() if not _operational(key)}


def config_hash(training: dict[str, Any]) -> str:
    """A stable digest of `training_config(...)`."""
    text = json.dumps(training, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Every key whose value differs between two `training_config` dicts: key → (old, new); a
    key one side lacks shows as `<unset>`."""
    missing = "<unset>"
    return {key: (old.get(key, missing), new.get(key, missing))
            for key in sorted(set(old) | set(new)) if old.get(key, missing) != new.get(key, missing)}


def describe_changes(changes: dict[str, tuple[Any, Any]]) -> str:
    """One line per changed key: `key: old → new`."""
    return "\n".join(f"  {key}: {_show(was)} → {_show(now)}" for key, (was, now) in changes.items())


def _show(value: Any) -> str:
    return value if value == "<unset>" else json.dumps(value)
