"""WeightSync: learner weights → every rollout engine, without restarting any engine.

Two transports (`sync.transport`):
- object_store: rank 0 puts its full state dict (ZeRO-3: consolidated) in Ray's object store
  and the reference is announced on the store's notice board; every rollout worker loads it
  between requests. Right on CPU, where weights live in host memory anyway.
- collective: rank 0 and the engines form one broadcast group (`rlkit.collective`): NCCL when
  both hold GPUs, so weights go GPU to GPU, gloo otherwise. The notice board then announces
  what the broadcast in flight carries, and each engine joins it between requests.

Either way engines load between requests (vLLM: reload_weights + reset_prefix_cache; HF:
copy into the parameters) and report their version. A sync that does not complete in time
fails loudly, naming the workers that lag. The only module that knows both the learner and the engines.
"""

from __future__ import annotations

import time
from typing import Any

import ray

TRANSPORTS = ("auto", "object_store", "collective")


class WeightSyncError(RuntimeError):
    """Weights did not reach every engine in time."""


def resolve_transport(transport: str, rollout_gpus: float, learner_gpus: float) -> tuple[str, str | None]:
    """(transport, collective backend) for the recipe's `sync.transport` and where the stages
    run: auto broadcasts over NCCL when learner and engines hold GPUs, else uses the object store."""
    on_gpus = rollout_gpus > 0 and learner_gpus > 0
    if transport == "auto":
        transport = "collective" if on_gpus else "object_store"
    if transport == "collective":
        return transport, "nccl" if on_gpus else "gloo"
    return transport, None


class WeightSync:
    """Publishes learner weights and waits until every engine runs them."""

    def __init__(
        self,
        learners: Any,
        store: Any,
        worker_names: list[str],
        timeout_s: float,
        dtype: str,
        transport: str = "object_store",
        bucket_mb: float = 256.0,
    ) -> None:
        if transport not in ("object_store", "collective"):
            raise ValueError(f"WeightSync transport {transport!r}: use object_store or collective (see resolve_transport)")
        self.learners = learners
        self.store = store
        self.worker_names = worker_names
        self.timeout_s = timeout_s
        self.dtype = dtype
        self.transport = transport
        self.bucket_bytes = int(bucket_mb * (1 << 20))

    def connect(self, workers: list[Any], backend: str) -> None:
        """Collective transport: form the broadcast group of learner rank 0 and `workers` (before
        their run loops start: joining is a collective call every member makes at once)."""
        world_size = len(workers) + 1
        host, port = self.learners.open_weight_group(world_size, backend, self.timeout_s)
        joins = [worker.join_weight_group.remote(host, port, rank, world_size, backend, self.timeout_s)
                 for rank, worker in enumerate(workers, start=1)]
        try:
            self.learners.weight_group_ready(self.timeout_s)
            ray.get(joins, timeout=self.timeout_s)
        except Exception as error:
            raise WeightSyncError(
                f"the weight-broadcast group ({backend}, learner rank 0 at {host}:{port}, {len(workers)} engines) did not "
                f"form within sync.timeout_s={self.timeout_s:g}s: {error}. Engines must reach that address (a firewall "
                "between nodes?); sync.transport=object_store avoids the group."
            ) from error

    def publish(self, version: int, wait: bool = True) -> float:
        """Send weights as policy `version`; with `wait`, block until every engine loaded them."""
        started = time.perf_counter()
        if self.transport == "collective":
            weights = self.learners.broadcast_weights(self.dtype, self.bucket_bytes)
        else:
            weights = self.learners.export_weights_ref(self.dtype)
        ray.get(self.store.publish_weights.remote(version, [weights]), timeout=self.timeout_s)
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
