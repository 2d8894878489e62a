"""RewardWorker: scores samples whose response is ready and reward is not.

Scoring runs in killable processes (`ScoringPool`), so a reward function that hangs, crashes
or returns garbage costs one sample's verdict, never the run. Failures are counted by status
and reported through the store's counters. It knows the store only as an actor handle.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import ray

from rlkit.reward.contract import RewardRequest
from rlkit.reward.isolation import ScoringPool
from rlkit.reward.loader import labeled_functions
from rlkit.reward.options import RewardConfig
from rlkit.runtime import pin_cpus
from rlkit.store.query import Query, Taken
from rlkit.transport import resolve
from rlkit.types import Reward, RewardStatus, Sample

POLL_S = 5.0


class RewardWorker:
    """A pool of scoring processes fed from the store. Wrapped with `ray.remote` by the controller."""

    def __init__(self, name: str, store: Any, reward: RewardConfig, env: dict[str, str] | None = None,
                 batch_size: int = 64) -> None:
        """`reward` is the recipe's reward section; `env` the environment variables of its bundle."""
        os.environ.update(env or {})
        pin_cpus(list(reward.cpu_cores), "reward")  # before the scoring processes start: they inherit it
        self.name = name
        self.store = store
        self.batch_size = batch_size
        self.extra = dict(reward.extra)  # recipe-level settings for the reward function (reward.extra)
        spec = labeled_functions(reward.fn, reward.fns)
        self.pool = ScoringPool(spec, num_processes=reward.processes_per_worker, timeout_s=reward.timeout_s)
        self.scored = 0

    def ready(self) -> str:
        return self.name

    def run(self) -> dict[str, float]:
        """Score until the store closes."""
        try:
            while True:
                taken = ray.get(self.store.get.remote(Query(
                    task="reward", fields=("sample",), limit=self.batch_size, min_items=1, partition=None,
                    timeout_s=POLL_S)))
                if taken is None:
                    return {"scored": self.scored}
                if taken:
                    self._score(taken)
        finally:
            self.pool.close()

    def _score(self, taken: list[Taken]) -> None:
        samples = resolve([item.fields["sample"] for item in taken])
        # An episode its environment broke is a failed sample, like a reward that raised.
        healthy = [index for index, sample in enumerate(samples) if sample.env_status in ("none", "ok")]
        scored = iter(self.pool.score([RewardRequest.from_sample(samples[index], self.extra) for index in healthy]))
        rewards = [
            next(scored) if sample.env_status in ("none", "ok") else _environment_failure(sample)
            for sample in samples
        ]
        # All scored samples, evaluation included; batch-level status counts come from the learner.
        statuses = Counter(reward.status.value for reward in rewards)
        counters = {f"reward_worker/{status}": float(count) for status, count in statuses.items()}
        counters["timing/reward_score_s"] = sum(reward.seconds for reward in rewards)
        # One call: a checkpoint that sees the rewards also sees what scoring them counted.
        ray.get(self.store.set_field.remote([item.entry_id for item in taken], "reward", rewards, counters))
        self.scored += len(rewards)


def _environment_failure(sample: Sample) -> Reward:
    status = RewardStatus.TIMEOUT if sample.env_status == "timeout" else RewardStatus.ERROR
    return Reward(score=0.0, status=status, error=sample.env_error or f"environment {sample.env_status}")
