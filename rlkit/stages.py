"""Every running actor of a run, started from a resolved config and stopped as one.

The store, the rollout and reward workers, the learner ranks and the weight sync: `Stages.start`
reserves one placement group per stage, starts the actors in it, and `Stages.stop` releases all
of it, after a failure too. Between them the controller takes scored batches (`take_scored`),
and every wait checks that no worker died (`check_health`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from rlkit.config import TrainConfig
from rlkit.learner.group import LearnerGroup
from rlkit.placement import StageDemand, alive_nodes, bundle_strategy, describe, release, reserve
from rlkit.reward.worker import RewardWorker
from rlkit.rollout.worker import RolloutWorker
from rlkit.runtime import actor_env
from rlkit.store.datastore import DataStore, Query
from rlkit.sync import WeightSync

HEALTH_CHECK_S = 5.0  # longest a wait goes without checking that every worker is alive


class StageFailed(RuntimeError):
    """A stage actor died or a batch never arrived."""


def stage_demands(config: TrainConfig) -> list[StageDemand]:
    """Each stage's actors and what one of them needs from the cluster (`config` resolved:
    learner.gpus_per_rank is a number)."""
    rollout, reward, learner = config.rollout, config.reward, config.learner
    return [
        StageDemand("rollout", rollout.num_workers,
                    {"CPU": rollout.cpus_per_worker, "GPU": rollout.gpus_per_worker, **rollout.resources},
                    "rollout.num_workers / cpus_per_worker / gpus_per_worker / resources"),
        StageDemand("reward", reward.num_workers, {"CPU": reward.cpus_per_worker, **reward.resources},
                    "reward.num_workers / cpus_per_worker / resources"),
        StageDemand("learner", learner.num_ranks,
                    {"CPU": learner.cpus_per_rank, "GPU": learner.gpus_per_rank or 0.0, **learner.resources},
                    "learner.num_ranks / cpus_per_rank / gpus_per_rank / resources"),
    ]


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
    def start(config: TrainConfig, model_path: str) -> Stages:
        """Reserve the cluster for every stage and start its actors (`config` resolved)."""
        single_machine = len({node["ip"] for node in alive_nodes()}) == 1
        # The store lives beside the driver, which feeds it prompts and reads every batch from it.
        store = DataStore.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            ray.get_runtime_context().get_node_id(), soft=True)).remote()
        demands = stage_demands(config)
        groups = reserve(demands, config.placement.strategy, config.placement.timeout_s)
        try:
            # Each stage's environment follows the device its actors hold, not the driver's.
            env = {d.stage: actor_env(single_machine, gpu=d.bundle.get("GPU", 0) > 0) for d in demands}
            return Stages._start_actors(config, model_path, env, store, groups)
        except BaseException:
            release(groups)
            raise

    @staticmethod
    def _start_actors(config: TrainConfig, model_path: str, env: dict[str, dict[str, str]], store: Any,
                      groups: dict[str, Any]) -> Stages:
        rollout_cfg, reward_cfg = config.rollout, config.reward
        rollout = [
            ray.remote(RolloutWorker).options(
                num_cpus=rollout_cfg.cpus_per_worker, num_gpus=rollout_cfg.gpus_per_worker,
                resources=dict(rollout_cfg.resources) or None, **bundle_strategy(groups, "rollout", i),
            ).remote(f"rollout-{i}", store, model_path, rollout_cfg, env["rollout"])
            for i in range(rollout_cfg.num_workers)
        ]
        reward = [
            ray.remote(RewardWorker).options(
                num_cpus=reward_cfg.cpus_per_worker, resources=dict(reward_cfg.resources) or None,
                **bundle_strategy(groups, "reward", i),
            ).remote(f"reward-{i}", store, reward_cfg, env["reward"])
            for i in range(reward_cfg.num_workers)
        ]
        learners = LearnerGroup(
            model_path, config.learner, config.algorithm, temperature=rollout_cfg.sampling.temperature,
            on_failure=reward_cfg.on_failure, env=env["learner"],
            rank_options=[bundle_strategy(groups, "learner", rank) for rank in range(config.learner.num_ranks)])
        ray.get([actor.ready.remote() for actor in rollout + reward])
        names = [f"rollout-{i}" for i in range(len(rollout))]
        sync = WeightSync(learners, store, names, config.sync.timeout_s, config.sync.dtype, config.sync.transport,
                          config.sync.bucket_mb)
        if sync.broadcasts:
            sync.connect(rollout)  # before the run loops: every engine joins the group at once
        stages = Stages(store, rollout, reward, learners, sync, groups=groups)
        for index, actor in enumerate(rollout):
            stages.loops[actor.run.remote()] = f"rollout-{index}"
        for index, actor in enumerate(reward):
            stages.loops[actor.run.remote()] = f"reward-{index}"
        return stages

    def put(self, entries: list[dict[str, Any]]) -> None:
        """Add entries (requests, restored samples) to the store."""
        ray.get(self.store.put.remote(entries))

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
        query = Query(task=partition, fields=("sample", "reward"), limit=groups, whole_groups=True, clear=True,
                      partition=partition, min_version=min_version, timeout_s=HEALTH_CHECK_S)
        taken = self.wait_for(lambda: ray.get(self.store.get.remote(query)), timeout_s, stuck)
        self.last_groups = list(dict.fromkeys(item.group for item in taken))
        return [(item.fields["sample"], item.fields["reward"]) for item in taken]

    def snapshot(self, partition: str, groups: int, timeout_s: float) -> dict[str, Any] | None:
        """The store's scored samples of `partition` once `groups` whole groups are there (a
        checkpoint's in-flight batches), or None after `timeout_s`."""
        return ray.get(self.store.snapshot.remote(partition, ["sample", "reward"], groups, timeout_s))

    def store_add_counters(self, counters: dict[str, float]) -> None:
        ray.get(self.store.add_counters.remote(counters))

    def drain_counters(self) -> dict[str, float]:
        """What the workers counted since the last call, and the store's own metrics."""
        counters, store_metrics = ray.get([self.store.drain_counters.remote(), self.store.drain_metrics.remote()])
        return {**counters, **store_metrics}

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
