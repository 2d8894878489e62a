"""The controller: one training run, from a config to a trained model.

    dataset ─► store ─► RolloutWorker(s) ─► store ─► RewardWorker(s) ─► store
                                                                          │ whole scored groups
                  weights ◄── WeightSync ◄── Learner ranks (DeepSpeed) ◄──┘

Rollout and reward workers run on their own, pulling from the store (rlkit.stages starts them).
The loop in `Trainer._train` names each stage once: take a scored batch → train → publish the
weights → admit the next prompts → log. Everything else lives beside it: opening the run
(`_open`: resume decision, logs, evaluation before), finishing it (`_finish`), step metrics
(rlkit.metrics.step_metrics), the non-finite-skip stop (rlkit.skip_guard) and RISE
(rlkit.rise_step). It holds no algorithm math.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rlkit.checkpoint import Checkpoints
from rlkit.config import TrainConfig, to_yaml
from rlkit.config.resolve import resolve_config
from rlkit.data import epochs, load_prompts
from rlkit.feeder import RequestFeeder
from rlkit.held_out import HeldOut
from rlkit.metrics import step_metrics
from rlkit.models import resolve_model
from rlkit.placement import cluster_has_gpus
from rlkit.resume import RunPlan, log_forced_changes, plan_run, read_store_state, trainer_state, write_checkpoint
from rlkit.resume import LEARNER_TAG
from rlkit.rise_step import RiseStep
from rlkit.run_logs import RunLogs
from rlkit.runtime import ray_session
from rlkit.skip_guard import SkipGuard
from rlkit.stages import HEALTH_CHECK_S, Stages, StageFailed
from rlkit.tracking.plots import plot_curves


class Trainer:
    """One training run, from config to final model."""

    def __init__(self, config: TrainConfig) -> None:
        from transformers import AutoTokenizer

        self.config = config
        self.run_dir = Path(config.run.output_dir)
        self.model_path = str(resolve_model(config.model.path))
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        data = config.data
        options = dict(prompt_key=data.prompt_key, answer_key=data.answer_key, data_source_key=data.data_source_key,
                       system_prompt=data.system_prompt, max_prompt_tokens=data.max_prompt_tokens)
        self.train_prompts = load_prompts(data.train_path, self.tokenizer, split="train", **options)
        eval_prompts = (load_prompts(data.eval_path, self.tokenizer, split="eval", limit=config.eval.num_prompts, **options)
                        if data.eval_path else [])
        self.held_out = HeldOut(eval_prompts, config.eval.max_new_tokens, config.rollout.batch_timeout_s)
        self.rise = (RiseStep(config.rise, self.tokenizer, config.rollout.n, config.rollout.batch_timeout_s)
                     if config.rise.enable else None)
        self.checkpoints = Checkpoints(self.run_dir, config.checkpoint.keep)

    def run(self) -> dict[str, Any]:
        with ray_session(self.config.ray.address, self.config.ray.num_cpus):
            # Every auto value decided once; the run folder's config.yaml names what this run uses.
            self.config = config = resolve_config(self.config, cluster_has_gpus())
            plan = plan_run(config, self.checkpoints, self.run_dir)
            if plan.kind == "complete":
                print(f"run already complete: {self.run_dir} has its checkpoint of step {plan.step} of {config.run.steps}")
                return json.loads((self.run_dir / "summary.json").read_text())
            self.run_dir.mkdir(parents=True, exist_ok=True)
            log_forced_changes(self.run_dir, plan)
            (self.run_dir / "config.yaml").write_text(to_yaml(config))
            stages = Stages.start(config, self.model_path)
            try:
                (self.run_dir / "placement.json").write_text(json.dumps(stages.describe(), indent=2))
                return self._train(stages, plan)
            finally:
                stages.stop()

    def _train(self, stages: Stages, plan: RunPlan) -> dict[str, Any]:
        config, k = self.config, self.config.sync.max_staleness
        first_step, summary = self._open(stages, plan)
        last_batch = config.run.steps - 1  # batches past the last step would never be trained on
        self.feeder.admit_until(min(first_step - 1 + k, last_batch))
        for step in range(first_step, config.run.steps + 1):
            started = time.perf_counter()
            batch = stages.take_scored("train", config.rollout.prompts_per_step, config.rollout.batch_timeout_s,
                                       min_version=step - 1 - k)
            waited_s = time.perf_counter() - started
            self.logs.ledger.log(step, {"groups": stages.last_groups})
            batch, extra = self.rise.add_verifications(stages, batch, step) if self.rise else (batch, {})
            learned = {**stages.learners.train_step(batch), **extra}
            sync_s = stages.sync.publish(step, wait=k == 0, check=stages.check_health)
            self.feeder.admit_until(min(step + k, last_batch))
            metrics = step_metrics(step, learned, stages.drain_counters(), samples=len(batch), wait_s=waited_s,
                                   step_s=time.perf_counter() - started, sync_s=sync_s, elapsed_s=self._elapsed())
            if config.eval.every and step % config.eval.every == 0 and step < config.run.steps:
                metrics.update(self.held_out.evaluate(stages))
            self.logs.step(step, metrics)
            self.skip_guard.check(step, metrics)
            if config.checkpoint.every and step % config.checkpoint.every == 0 and step < config.run.steps:
                self.checkpoint(stages, step)
        return self._finish(stages, summary, trained=first_step <= config.run.steps)

    def _open(self, stages: Stages, plan: RunPlan) -> tuple[int, dict[str, Any]]:
        """Put every stage where the checkpoint left it (or at the start), open the logs, evaluate
        before training and start the prompt feeder. Returns the first step and the summary so far."""
        config = self.config
        state = self._resume(stages, plan) if plan.kind == "resume" else None
        first_step = plan.step + 1
        self.logs = RunLogs(self.run_dir, config, first_step, state)
        self.skip_guard = SkipGuard(config.run.max_consecutive_skips, self.logs.metrics.path)
        self.elapsed_before = state["elapsed_s"] if state else 0.0
        self.started = time.perf_counter()
        summary: dict[str, Any] = {"run_dir": str(self.run_dir)}
        if state is None and config.eval.before and self.held_out.prompts:
            summary["eval_before"] = self.held_out.evaluate(stages)
            self.logs.held_out(0, "before training", summary["eval_before"])
        elif state is not None and (before := self.logs.eval_before()):
            summary["eval_before"] = before
        self.feeder = RequestFeeder(stages.put, epochs(self.train_prompts, config.run.seed, config.data.shuffle),
                                    config.rollout.prompts_per_step, config.rollout.n)
        if state is not None:
            self.feeder.skip(state["batches_admitted"])
        return first_step, summary

    def _resume(self, stages: Stages, plan: RunPlan) -> dict[str, Any]:
        """Load the checkpoint of `plan.step` into every stage; returns the trainer's state."""
        assert plan.folder is not None
        state = plan.state
        stages.learners.load_checkpoint(str(plan.folder), LEARNER_TAG)
        saved = read_store_state(plan.folder)  # samples admitted but not trained on, and what producing them counted
        stages.put(saved["entries"])
        stages.store_add_counters(saved["counters"])
        if self.rise is not None:
            self.rise.load_state(state["rise_rng"])
        self.held_out.rounds = state["eval_rounds"]
        stages.sync.publish(plan.step, wait=True, check=stages.check_health)  # engines continue from its weights
        print(f"resumed from {plan.folder} (step {plan.step}, "
              f"{state['batches_admitted'] - plan.step} batches in flight restored)")
        return state

    def _finish(self, stages: Stages, summary: dict[str, Any], trained: bool) -> dict[str, Any]:
        """Final checkpoint, evaluation after training, final model, plots and summary.json."""
        config, steps = self.config, self.config.run.steps
        self.logs.progress.close()
        summary["train_s"] = self._elapsed()
        if trained:  # else the checkpoint resumed from is this one
            self.checkpoint(stages, steps)
        if self.held_out.prompts:
            summary["eval_after"] = self.held_out.evaluate(stages)
            self.logs.held_out(steps, "after training", summary["eval_after"])
        if config.run.save_final_model:
            stages.learners.save_pretrained(str(self.run_dir / "final"))
            summary["final_model"] = str(self.run_dir / "final")
        if config.logging.plots:
            summary["plots"] = str(plot_curves(self.logs.metrics.history, self.run_dir / "plots.png", config.run.name))
        self.logs.metrics.summary({f"{part}/{key.removeprefix('eval/')}": value
                                   for part in ("eval_before", "eval_after") if part in summary
                                   for key, value in summary[part].items() if key in ("eval/accuracy", "eval/accuracy_se")})
        self.logs.close()
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary

    def _elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def checkpoint(self, stages: Stages, step: int) -> Path:
        """Everything a resume needs, published atomically as `checkpoints/step_<step>/`: the
        learner (weights, optimizer, RNG), the store's samples admitted but not yet trained on
        (in-flight ones are waited for, not dropped), the data cursor, the trainer's RNG and
        the training config it ran with."""
        pending_groups = (self.feeder.next_batch - step) * self.config.rollout.prompts_per_step
        timeout_s = self.config.rollout.batch_timeout_s
        saved = stages.wait_for(
            lambda: stages.snapshot("train", pending_groups, HEALTH_CHECK_S), timeout_s,
            lambda: StageFailed(
                f"checkpoint of step {step}: the {pending_groups} groups in flight were not all generated and scored "
                f"within rollout.batch_timeout_s={timeout_s:g}s; rollout or reward is stuck"))
        state = trainer_state(
            self.config, step, batches_admitted=self.feeder.next_batch, eval_rounds=self.held_out.rounds,
            rise_rng=self.rise.state() if self.rise else None, elapsed_s=self._elapsed(), **self.logs.counts())
        return write_checkpoint(self.checkpoints, step, stages.learners, saved, state)


def train(config: TrainConfig) -> dict[str, Any]:
    """Run training as configured; returns a summary (accuracies, paths, wall time)."""
    return Trainer(config).run()
