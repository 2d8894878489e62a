"""WeightSync: learner weights → every rollout engine, without restarting any engine.

The learner gathers its full state dict (ZeRO-3: consolidated) into Ray's object store; the
reference is announced on the store's notice board as the new policy version; every rollout
worker loads it between requests (vLLM: reload_weights + reset_prefix_cache; HF:
load_state_dict) and reports its version. A sync that does not complete in time fails loudly,
naming the workers that lag. The only module that knows both the learner and the engines.
"""

from __future__ import annotations

import time
from typing import Any

import ray


class WeightSyncError(RuntimeError):
    """Weights did not reach every engine in time."""


class WeightSync:
    """Publishes learner weights and waits until every engine runs them."""

    def __init__(self, learners: Any, store: Any, worker_names: list[str], timeout_s: float, dtype: str) -> None:
        self.learners = learners
        self.store = store
        self.worker_names = worker_names
        self.timeout_s = timeout_s
        self.dtype = dtype

    def publish(self, version: int, wait: bool = True) -> float:
        """Send weights as policy `version`; with `wait`, block until every engine loaded them."""
        started = time.perf_counter()
        weights_ref = self.learners.export_weights_ref(self.dtype)
        ray.get(self.store.publish_weights.remote(version, [weights_ref]), timeout=self.timeout_s)
        if wait:
            self.wait(version, deadline=started + self.timeout_s)
        return time.perf_counter() - started

    def wait(self, version: int, deadline: float | None = None) -> None:
        remaining = max(0.0, (deadline or time.perf_counter() + self.timeout_s) - time.perf_counter())
        seen = ray.get(self.store.wait_engines.remote(version, self.worker_names, remaining))
        lagging = {name: v for name, v in seen.items() if v < version}
        if lagging:
            raise WeightSyncError(
                f"weight sync to version {version} did not finish within sync.timeout_s={self.timeout_s:g}s; "
                f"engines still on older weights: {lagging}. A rollout worker may be stuck in a long "
                "generation or dead (see its log); raise sync.timeout_s if generations are legitimately long."
            )
