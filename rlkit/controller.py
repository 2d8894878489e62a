"""The controller: builds every stage from the config and runs the learner/sync loop.

    dataset ─► store ─► RolloutWorker(s) ─► store ─► RewardWorker(s) ─► store
                                                                          │ whole scored groups
                  weights ◄── WeightSync ◄── Learner ranks (DeepSpeed) ◄──┘

Rollout and reward workers run on their own, pulling from the store. The loop here names
each stage once: admit prompts → next batch → train step → publish weights → log. It holds
no algorithm math; the only module that wires stages together.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from rlkit import rise
from rlkit.algorithms.options import resolve_rollout_correction
from rlkit.checkpoint import Checkpoints, read_json, write_json
from rlkit.config import TrainConfig, to_yaml
from rlkit.data import epochs, load_prompts
from rlkit.evaluation import accuracy_metrics
from rlkit.learner.group import LearnerGroup, resolve_samples
from rlkit.models import resolve_model
from rlkit.reward.loader import labeled_functions
from rlkit.reward.worker import RewardWorker
from rlkit.rollout.worker import RolloutWorker
from rlkit.placement import StageDemand, alive_nodes, bundle_strategy, cluster_has_gpus, describe, release, reserve
from rlkit.runtime import actor_env, ray_session
from rlkit.store.datastore import DataStore
from rlkit.sync import WeightSync, resolve_transport
from rlkit.tracking.metrics_log import JsonLines, MetricsLog
from rlkit.tracking.plots import plot_curves
from rlkit.tracking.progress import Progress
from rlkit.types import Prompt, RolloutRequest, ScoredSample

HEALTH_CHECK_S = 5.0
LEARNER_TAG = "learner"  # the learner's DeepSpeed files, in checkpoints/step_<N>/learner/
STORE_STATE = "store.json"
TRAINER_STATE = "trainer_state.json"


def stage_demands(config: TrainConfig, gpus: bool) -> list[StageDemand]:
    """Each stage's actors and what one of them needs from the cluster."""
    learner_gpus = config.learner.gpus_per_rank
    if learner_gpus is None:  # as the backend will use them: nccl needs a GPU per rank, gloo none
        backend = config.learner.backend
        learner_gpus = 1.0 if backend == "nccl" or (backend == "auto" and gpus) else 0.0
    return [
        StageDemand("rollout", config.rollout.num_workers,
                    {"CPU": config.rollout.cpus_per_worker, "GPU": config.rollout.gpus_per_worker, **config.rollout.resources},
                    "rollout.num_workers / cpus_per_worker / gpus_per_worker / resources"),
        StageDemand("reward", config.reward.num_workers, {"CPU": config.reward.cpus_per_worker, **config.reward.resources},
                    "reward.num_workers / cpus_per_worker / resources"),
        StageDemand("learner", config.learner.num_ranks,
                    {"CPU": config.learner.cpus_per_rank, "GPU": learner_gpus, **config.learner.resources},
                    "learner.num_ranks / cpus_per_rank / gpus_per_rank / resources"),
    ]


class StageFailed(RuntimeError):
    """A stage actor died or a batch never arrived."""


class NumericalFailure(RuntimeError):
    """Training stopped making updates: the loss or gradients stayed non-finite."""


@dataclass
class Stages:
    """Every running actor of a run."""

    store: Any
    rollout: list[Any]
    reward: list[Any]
    learners: LearnerGroup
    sync: WeightSync
    loops: dict[Any, str] = field(default_factory=dict)  # run() ref -> worker name
    last_groups: list[str] = field(default_factory=list)  # group uids of the last batch taken
    groups: dict[str, Any] = field(default_factory=dict)  # stage -> its placement group

    def describe(self) -> dict[str, Any]:
        """Where each stage's actors run and how weights reach the engines (placement.json)."""
        return {**describe(self.groups), "weight_sync": self.sync.transport}

    @staticmethod
    def start(config: TrainConfig, model_path: str) -> "Stages":
        single_machine = len({node["ip"] for node in alive_nodes()}) == 1
        # The store lives beside the driver, which feeds it prompts and reads every batch from it.
        store = DataStore.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            ray.get_runtime_context().get_node_id(), soft=True)).remote()
        demands = stage_demands(config, cluster_has_gpus())
        groups = reserve(demands, config.placement.strategy, config.placement.timeout_s)
        try:
            # Each stage's environment follows the device its actors hold, not the driver's.
            env = {d.stage: actor_env(single_machine, gpu=d.bundle.get("GPU", 0) > 0) for d in demands}
            return Stages._start_actors(config, model_path, env, store, demands, groups)
        except BaseException:
            release(groups)
            raise

    @staticmethod
    def _start_actors(config: TrainConfig, model_path: str, env: dict[str, dict[str, str]], store: Any,
                      demands: list[StageDemand], groups: dict[str, Any]) -> "Stages":
        need = {demand.stage: demand.bundle for demand in demands}
        rollout_options = {"num_cpus": need["rollout"]["CPU"], "num_gpus": need["rollout"].get("GPU", 0),
                           "resources": dict(config.rollout.resources) or None}
        reward_options = {"num_cpus": need["reward"]["CPU"], "resources": dict(config.reward.resources) or None}
        rollout = [
            ray.remote(RolloutWorker).options(**rollout_options, **bundle_strategy(groups, "rollout", i)).remote(
                f"rollout-{i}", store, model_path, config.rollout.engine, config.rollout.engine_options,
                config.rollout.sampling, config.rollout.prompts_per_request, env["rollout"], config.rollout.env,
                list(config.rollout.cpu_cores))
            for i in range(config.rollout.num_workers)
        ]
        reward = [
            ray.remote(RewardWorker).options(**reward_options, **bundle_strategy(groups, "reward", i)).remote(
                f"reward-{i}", store, labeled_functions(config.reward.fn, config.reward.fns), config.reward.timeout_s,
                config.reward.processes_per_worker, env=env["reward"], extra=dict(config.reward.extra),
                cpu_cores=list(config.reward.cpu_cores))
            for i in range(config.reward.num_workers)
        ]
        algorithm = config.algorithm
        if algorithm.loss_scale_factor is None:  # Dr.GRPO's constant: the response budget
            budget = config.rollout.env.max_episode_tokens if config.rollout.env.name else config.rollout.sampling.max_new_tokens
            algorithm = dataclasses.replace(algorithm, loss_scale_factor=float(budget))
        algorithm = resolve_rollout_correction(algorithm, config.sync.max_staleness)
        learners = LearnerGroup(
            model_path, config.learner, algorithm, config.rollout.sampling.temperature, env=env["learner"],
            num_cpus_per_rank=need["learner"]["CPU"], num_gpus_per_rank=need["learner"].get("GPU", 0),
            rank_options=[{**bundle_strategy(groups, "learner", rank),
                           **({"resources": dict(config.learner.resources)} if config.learner.resources else {})}
                          for rank in range(config.learner.num_ranks)])
        ray.get([actor.ready.remote() for actor in rollout + reward])
        dtype = config.rollout.engine_options.dtype if config.sync.dtype == "auto" else config.sync.dtype
        names = [f"rollout-{i}" for i in range(len(rollout))]
        transport = resolve_transport(config.sync.transport, need["rollout"].get("GPU", 0), need["learner"].get("GPU", 0))
        sync = WeightSync(learners, store, names, config.sync.timeout_s, dtype, transport, config.sync.bucket_mb)
        if sync.broadcasts:
            sync.connect(rollout)  # before the run loops: every engine joins the group at once
        stages = Stages(store, rollout, reward, learners, sync, groups=groups)
        for index, actor in enumerate(rollout):
            stages.loops[actor.run.remote()] = f"rollout-{index}"
        for index, actor in enumerate(reward):
            stages.loops[actor.run.remote()] = f"reward-{index}"
        return stages

    def check_health(self) -> None:
        """Raise if any worker loop ended (its exception, if it raised)."""
        done, _ = ray.wait(list(self.loops), timeout=0, num_returns=len(self.loops))
        for ref in done:
            name = self.loops[ref]
            try:
                ray.get(ref)
            except Exception as error:
                raise StageFailed(f"{name} failed: {error}") from error
            raise StageFailed(f"{name} stopped although the store is still open")

    def take_scored(self, partition: str, groups: int, timeout_s: float, min_version: int | None = None) -> list[tuple[Any, Any]]:
        """Wait for `groups` complete scored groups; returns (sample_ref, reward_ref) pairs."""
        def stuck() -> StageFailed:
            stats = ray.get(self.store.stats.remote())
            return StageFailed(
                f"no batch of {groups} scored groups ({partition}) within {timeout_s:g}s; store state: {stats}. "
                "Rollout or reward is too slow or stuck; check the worker logs or raise rollout.batch_timeout_s."
            )

        # The consumer task is named after the partition it drains.
        taken = self.wait_for(lambda: ray.get(self.store.get.remote(
            partition, ["sample", "reward"], groups, whole_groups=True, clear=True, partition=partition,
            min_version=min_version, timeout_s=HEALTH_CHECK_S, with_groups=True)), timeout_s, stuck)
        self.last_groups = list(dict.fromkeys(group for _, _, group in taken))
        return [(fields["sample"], fields["reward"]) for _, fields, _ in taken]

    def wait_for(self, ask: Callable[[], Any], timeout_s: float, stuck: Callable[[], Exception]) -> Any:
        """Call `ask` (a store call that waits up to HEALTH_CHECK_S) until it returns something;
        between calls a dead worker fails the run at once, and after `timeout_s` `stuck()` is raised."""
        deadline = time.monotonic() + timeout_s
        while not (answer := ask()):
            self.check_health()
            if time.monotonic() > deadline:
                raise stuck()
        return answer

    def stop(self) -> None:
        try:
            ray.get(self.store.close.remote())
            ray.wait(list(self.loops), num_returns=len(self.loops), timeout=30)
        finally:
            self.learners.shutdown()
            for actor in self.rollout + self.reward:
                ray.kill(actor, no_restart=True)
            release(self.groups)  # the cluster's resources are free for the next run even after a failure


class RequestFeeder:
    """Admission control: batch b's prompts enter the store only once policy version ≥ b − k."""

    def __init__(self, store: Any, prompts: Iterator[Prompt], prompts_per_step: int, n: int) -> None:
        self.store, self.prompts, self.prompts_per_step, self.n = store, prompts, prompts_per_step, n
        self.next_batch = 0

    def skip(self, batches: int) -> None:
        """Resume: the first `batches` batches were admitted before the checkpoint (their
        untrained samples come back from it); admit from the next one on."""
        for _ in range(batches * self.prompts_per_step):
            next(self.prompts)
        self.next_batch = batches

    def admit_until(self, batch_index: int) -> None:
        while self.next_batch <= batch_index:
            requests = [RolloutRequest(f"{p.uid}@{self.next_batch}", p, self.n, self.next_batch)
                        for p in (next(self.prompts) for _ in range(self.prompts_per_step))]
            ray.get(self.store.put.remote([{"version": r.batch_index, "fields": {"request": r}} for r in requests]))
            self.next_batch += 1


class Trainer:
    """One training run, from config to final model."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.run_dir = Path(config.run.output_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(to_yaml(config))
        self.model_path = str(resolve_model(config.model.path))
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.tokenizer = tokenizer
        self.rise_rng = random.Random(config.rise.seed)
        data = config.data
        options = dict(prompt_key=data.prompt_key, answer_key=data.answer_key, data_source_key=data.data_source_key,
                       system_prompt=data.system_prompt, max_prompt_tokens=data.max_prompt_tokens)
        self.train_prompts = load_prompts(data.train_path, tokenizer, split="train", **options)
        self.eval_prompts = (load_prompts(data.eval_path, tokenizer, split="eval", limit=config.eval.num_prompts, **options)
                             if data.eval_path else [])
        self.eval_rounds = 0
        self.checkpoints = Checkpoints(self.run_dir, config.checkpoint.keep)
        self.wandb_id: str | None = None

    def evaluate(self, stages: Stages) -> dict[str, float]:
        """Greedy accuracy on the held-out prompts, through the same rollout and reward workers."""
        if not self.eval_prompts:
            return {}
        self.eval_rounds += 1
        budget = self.config.eval.max_new_tokens or None
        requests = [RolloutRequest(f"eval{self.eval_rounds}/{p.uid}", p, 1, -1, greedy=True, max_new_tokens=budget, partition="eval")
                    for p in self.eval_prompts]
        ray.get(stages.store.put.remote([{"partition": "eval", "fields": {"request": r}} for r in requests]))
        pairs = stages.take_scored("eval", len(requests), self.config.rollout.batch_timeout_s)
        return accuracy_metrics(resolve_samples(pairs))

    def add_verifications(
        self, stages: Stages, batch: list[tuple[Any, Any]], step: int
    ) -> tuple[list[tuple[Any, Any]], dict[str, float]]:
        """RISE: turn a few of this batch's scored solutions into critique prompts, sample
        verifications with the current policy, and return both kinds of trajectory together."""
        config = self.config
        scored = resolve_samples(batch)
        groups: dict[str, list[ScoredSample]] = {}
        for item in scored:
            groups.setdefault(item.sample.group_uid, []).append(item)
        chosen = rise.downsample(list(groups.values()), config.rise.critique_batch_size, self.rise_rng)
        prompts = [rise.verification_prompt(item, self.tokenizer, config.rise, f"rise{step}-{index}")
                   for index, item in enumerate(chosen)]
        requests = [RolloutRequest(p.uid, p, config.rollout.n, step - 1, partition="rise") for p in prompts if p is not None]
        metrics = {"rise/too_long": float(len(prompts) - len(requests))}
        if not requests:  # nothing gradable this step (every reward failed) or nothing fits
            return batch, {**rise.verification_metrics(scored), **metrics}
        ray.get(stages.store.put.remote([{"partition": "rise", "fields": {"request": r}} for r in requests]))
        verifications = stages.take_scored("rise", len(requests), config.rollout.batch_timeout_s)
        verified = resolve_samples(verifications)
        return batch + verifications, {**rise.verification_metrics(scored + verified), **metrics}

    def run(self) -> dict[str, Any]:
        config = self.config
        resume = self._checkpoint_to_resume()
        if resume is not None and resume[0] > config.run.steps:
            raise ValueError(f"{self.run_dir} holds a checkpoint of step {resume[0]}, past run.steps={config.run.steps}: "
                             "raise run.steps to continue it, or use another run.output_dir")
        if resume is not None and resume[0] == config.run.steps and (self.run_dir / "summary.json").exists():
            print(f"run already complete: {self.run_dir} has its checkpoint of step {resume[0]} of {config.run.steps}")
            return json.loads((self.run_dir / "summary.json").read_text())
        with ray_session(config.ray.address, config.ray.num_cpus):
            stages = Stages.start(config, self.model_path)
            try:
                (self.run_dir / "placement.json").write_text(json.dumps(stages.describe(), indent=2))
                return self._loop(stages, resume)
            finally:
                stages.stop()

    def _checkpoint_to_resume(self) -> tuple[int, Path] | None:
        if self.checkpoints.published() and not self.config.checkpoint.resume:
            raise FileExistsError(
                f"{self.run_dir} holds checkpoints ({self.checkpoints.root}) and checkpoint.resume=false: "
                "a fresh run there would mix its files with the old ones. Use another run.output_dir, delete "
                f"{self.checkpoints.root}, or set checkpoint.resume=true to continue the old run.")
        found = self.checkpoints.latest_valid()
        if found is None and self.checkpoints.published():
            print(f"no valid checkpoint in {self.checkpoints.root} (see the warnings above): starting afresh")
        return found

    def _resume(self, stages: Stages, step: int, folder: Path) -> dict[str, Any]:
        """Put every stage back where the checkpoint of `step` left it; returns the trainer's state."""
        state = read_json(folder / TRAINER_STATE)
        now = self._stream_settings()
        changed = {key: (was, now.get(key)) for key, was in state.get("stream", {}).items() if now.get(key) != was}
        if changed:
            raise ValueError(
                f"cannot resume {folder}: settings that decide which prompts come next changed since it was written "
                f"({'; '.join(f'{key}: {was!r} → {now!r}' for key, (was, now) in changed.items())}). Put them back, or "
                "start a new run in another run.output_dir.")
        stages.learners.load_checkpoint(str(folder), LEARNER_TAG)
        saved = read_json(folder / STORE_STATE)  # samples admitted but not trained on, and what producing them counted
        ray.get([stages.store.put.remote(saved["entries"]), stages.store.add_counters.remote(saved["counters"])])
        self.rise_rng.setstate(state["rise_rng"])
        self.eval_rounds = state["eval_rounds"]
        self.wandb_id = state.get("wandb_id")
        stages.sync.publish(step, wait=True, check=stages.check_health)  # the engines continue from the checkpoint's weights
        print(f"resumed from {folder} (step {step}, {state['batches_admitted'] - step} batches in flight restored)")
        return state

    def _stream_settings(self) -> dict[str, Any]:
        """The settings a checkpoint's data cursor and in-flight batches only make sense with."""
        config = self.config
        return {"run.seed": config.run.seed, "data.train_path": config.data.train_path, "data.shuffle": config.data.shuffle,
                "rollout.prompts_per_step": config.rollout.prompts_per_step, "rollout.n": config.rollout.n,
                "sync.max_staleness": config.sync.max_staleness}

    def _loop(self, stages: Stages, resume: tuple[int, Path] | None = None) -> dict[str, Any]:
        config, k = self.config, self.config.sync.max_staleness
        first_step, state = 1, None
        if resume is not None:
            state = self._resume(stages, *resume)
            first_step = resume[0] + 1
        log = MetricsLog(self.run_dir, use_wandb=config.logging.wandb, project=config.logging.wandb_project,
                         name=config.run.name, group=config.logging.wandb_group, tags=list(config.logging.wandb_tags),
                         config=json.loads(json.dumps(_plain(config))),
                         keep_rows=None if state is None else state["metrics_rows"], wandb_id=self.wandb_id)
        self.wandb_id = log.wandb_id
        # Which prompt groups each step trained on: a resumed run shows that none was lost or used twice.
        ledger = JsonLines(self.run_dir / "data_ledger.jsonl", keep_rows=None if state is None else state["ledger_rows"])
        self.logs = (log, ledger)
        progress = Progress(config.run.steps, config.logging.progress_bar, start=first_step - 1)
        summary: dict[str, Any] = {"run_dir": str(self.run_dir)}
        if resume is None and config.eval.before and self.eval_prompts:
            summary["eval_before"] = self.evaluate(stages)
            progress.write(f"held-out accuracy before training: {summary['eval_before']['eval/accuracy']:.3f}")
            log.log(0, {**summary["eval_before"], "policy_version": 0})
        elif resume is not None:
            before = [row for row in log.history if row["step"] == 0 and "eval/accuracy" in row]
            if before:
                summary["eval_before"] = {key: value for key, value in before[0].items() if key.startswith("eval/")}
        feeder = RequestFeeder(stages.store, epochs(self.train_prompts, config.run.seed, config.data.shuffle),
                               config.rollout.prompts_per_step, config.rollout.n)
        if state is not None:
            feeder.skip(state["batches_admitted"])
        last_batch = config.run.steps - 1  # batches past the last step would never be trained on
        feeder.admit_until(min(first_step - 1 + k, last_batch))
        started = time.perf_counter() - (state["elapsed_s"] if state else 0.0)
        skips_in_a_row = 0
        for step in range(first_step, config.run.steps + 1):
            step_started = time.perf_counter()
            batch = stages.take_scored("train", config.rollout.prompts_per_step, config.rollout.batch_timeout_s,
                                       min_version=step - 1 - k)
            wait_s = time.perf_counter() - step_started
            ledger.log(step, {"groups": stages.last_groups})
            rise_metrics: dict[str, float] = {}
            if config.rise.enable:
                batch, rise_metrics = self.add_verifications(stages, batch, step)
            metrics = stages.learners.train_step(batch)
            metrics.update(rise_metrics)
            sync_s = stages.sync.publish(step, wait=k == 0, check=stages.check_health)
            feeder.admit_until(min(step + k, last_batch))
            step_s = time.perf_counter() - step_started
            counters, store_metrics = ray.get([stages.store.drain_counters.remote(), stages.store.drain_metrics.remote()])
            metrics.update(counters)
            metrics.update(store_metrics)
            if counters.get("timing/rollout_generate_s"):
                metrics["throughput/generate_tokens_per_s"] = counters["rollout/generated_tokens"] / counters["timing/rollout_generate_s"]
            if "rollout/policy_version_min" in metrics:  # versions behind the weights it trains (step − 1)
                metrics["rollout/staleness/max"] = step - 1 - metrics["rollout/policy_version_min"]
                metrics["rollout/staleness/mean"] = step - 1 - metrics["rollout/policy_version_mean"]
            metrics.update({
                "policy_version": step,
                "timing/step_s": step_s, "timing/wait_batch_s": wait_s, "timing/sync_s": sync_s,
                "throughput/samples_per_s": len(batch) / step_s,
                "throughput/elapsed_s": time.perf_counter() - started,
            })
            if config.eval.every and step % config.eval.every == 0 and step < config.run.steps:
                metrics.update(self.evaluate(stages))
            log.log(step, metrics)
            progress.update(metrics)
            skips_in_a_row = skips_in_a_row + 1 if metrics.get("actor/skipped_steps", 0) > 0 else 0
            if config.run.max_consecutive_skips and skips_in_a_row >= config.run.max_consecutive_skips:
                raise NumericalFailure(
                    f"{skips_in_a_row} steps in a row (through step {step}) had updates skipped because the loss or a "
                    f"gradient was not finite (actor/skipped_steps in {log.path}). Check rewards and advantages for "
                    "extreme values (reward/min and reward/max in the metrics) and the learning rate; a resumed run "
                    "keeps the optimizer's settings from its checkpoint, so start changed settings in a new run.output_dir, "
                    "or raise run.max_consecutive_skips (0 turns the stop off).")
            if config.checkpoint.every and step % config.checkpoint.every == 0 and step < config.run.steps:
                self.checkpoint(stages, step, feeder, time.perf_counter() - started)
        progress.close()
        train_s = time.perf_counter() - started
        if first_step <= config.run.steps:  # else the checkpoint resumed from is this one
            self.checkpoint(stages, config.run.steps, feeder, train_s)
        if self.eval_prompts:
            summary["eval_after"] = self.evaluate(stages)
            log.log(config.run.steps, {**summary["eval_after"], "policy_version": config.run.steps})
            progress.write(f"held-out accuracy after training: {summary['eval_after']['eval/accuracy']:.3f}")
        summary["train_s"] = train_s
        if config.run.save_final_model:
            stages.learners.save_pretrained(str(self.run_dir / "final"))
            summary["final_model"] = str(self.run_dir / "final")
        if config.logging.plots:
            summary["plots"] = str(plot_curves(log.history, self.run_dir / "plots.png", config.run.name))
        log.summary({f"{part}/accuracy": summary[part]["eval/accuracy"]
                     for part in ("eval_before", "eval_after") if part in summary})
        log.close()
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary

    def checkpoint(self, stages: Stages, step: int, feeder: RequestFeeder, elapsed_s: float) -> Path:
        """Everything a resume needs, published atomically as `checkpoints/step_<step>/`: the
        learner (weights, optimizer, RNG), the store's samples admitted but not yet trained on
        (in-flight ones are waited for, not dropped), the data cursor and the trainer's RNG."""
        pending_groups = (feeder.next_batch - step) * self.config.rollout.prompts_per_step
        timeout_s = self.config.rollout.batch_timeout_s
        saved = stages.wait_for(
            lambda: ray.get(stages.store.snapshot.remote("train", ["sample", "reward"], pending_groups, HEALTH_CHECK_S)),
            timeout_s, lambda: StageFailed(
                f"checkpoint of step {step}: the {pending_groups} groups in flight were not all generated and scored "
                f"within rollout.batch_timeout_s={timeout_s:g}s; rollout or reward is stuck"))
        folder = self.checkpoints.begin(step)
        stages.learners.save_checkpoint(str(folder), LEARNER_TAG)
        write_json(folder / STORE_STATE, saved)
        write_json(folder / TRAINER_STATE, {
            "step": step, "policy_version": step, "batches_admitted": feeder.next_batch,
            "rise_rng": self.rise_rng.getstate(), "eval_rounds": self.eval_rounds, "elapsed_s": elapsed_s,
            "wandb_id": self.wandb_id, "stream": self._stream_settings(),
            "metrics_rows": len(self.logs[0].history), "ledger_rows": len(self.logs[1].rows),
        })
        return self.checkpoints.publish(folder, step)


def _plain(config: TrainConfig) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.structured(config), resolve=True)


def train(config: TrainConfig) -> dict[str, Any]:
    """Run training as configured; returns a summary (accuracies, paths, wall time)."""
    return Trainer(config).run()
