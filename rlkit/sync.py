"""WeightSync: learner weights → every rollout engine, without restarting any engine.

Three transports (`sync.transport`):
- object_store: rank 0 puts its full state dict (ZeRO-3: consolidated) in Ray's object store
  and the reference is announced on the store's notice board; every rollout worker loads it
  between requests. Right on CPU, where weights live in host memory anyway.
- nccl / gloo: rank 0 and the engines form one broadcast group (`rlkit.collective`); with NCCL
  weights go GPU to GPU. The notice board then announces what the next broadcast carries, and
  each engine joins it between requests.
auto is nccl when the learner and every engine hold whole GPUs, else object_store.

Either way engines load between requests (vLLM: reload_weights + reset_prefix_cache; HF:
copy into the parameters) and report their version. A sync that does not complete in time
fails loudly, naming the workers that lag. The only module that knows both the learner and the engines.
"""

from __future__ import annotations

import time
from typing import Any
from collections.abc import Callable

import ray

TRANSPORTS = ("auto", "object_store", "nccl", "gloo")
CHECK_EVERY_S = 5.0  # how often a waiting sync asks whether a worker died


class WeightSyncError(RuntimeError):
    """Weights did not reach every engine in time."""


def resolve_transport(transport: str, rollout_gpus: float, learner_gpus: float) -> str:
    """The transport for the recipe's `sync.transport` and the GPUs each rollout worker and
    learner rank holds: object_store, nccl or gloo. NCCL needs a whole GPU per member (it
    refuses two members on one device)."""
    whole_gpus = rollout_gpus >= 1 and learner_gpus >= 1
    if transport == "auto":
        return "nccl" if whole_gpus else "object_store"
    if transport == "nccl" and not whole_gpus:
        raise ValueError(
            f"sync.transport=nccl needs a whole GPU for every rollout worker and learner rank (they hold "
            f"{rollout_gpus:g} and {learner_gpus:g}); use sync.transport=gloo or object_store, or give each "
            "a GPU (rollout.gpus_per_worker, learner.gpus_per_rank)")
    return transport


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
        if transport not in TRANSPORTS[1:]:
            raise ValueError(f"WeightSync transport {transport!r}: use one of {', '.join(TRANSPORTS[1:])} "
                             "(see resolve_transport)")
        self.learners = learners
        self.store = store
        self.worker_names = worker_names
        self.timeout_s = timeout_s
        self.dtype = dtype
        self.transport = transport
        self.bucket_bytes = int(bucket_mb * (1 << 20))

    @property
    def broadcasts(self) -> bool:
        return self.transport != "object_store"

    def connect(self, workers: list[Any]) -> None:
        """nccl / gloo: form the broadcast group of learner rank 0 and `workers` (before their run
        loops start: joining is a collective call every member makes at once)."""
        world_size = len(workers) + 1
        host, port = self.learners.open_weight_group(world_size, self.transport, self.timeout_s)
        joins = {worker.join_weight_group.remote(host, port, rank, world_size, self.transport, self.timeout_s): name
                 for rank, (worker, name) in enumerate(zip(workers, self.worker_names), start=1)}
        joins[self.learners.weight_group_ready_ref()] = "learner rank 0"
        pending = list(joins)
        deadline = time.monotonic() + self.timeout_s + 30  # each member's own timeout fires first, with its reason
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
            if not done:
                raise WeightSyncError(f"the weight-broadcast group at {host}:{port} did not form: "
                                      f"{', '.join(joins[ref] for ref in pending)} never finished joining")
            try:
                ray.get(done[0])
            except Exception as error:
                reason = getattr(error, "cause", None) or error  # the actor's own exception, not Ray's traceback
                raise WeightSyncError(
                    f"{joins[done[0]]} could not join the {self.transport} weight-broadcast group at {host}:{port}: {reason}. "
                    "Every engine's node must reach that address; sync.transport=object_store needs no group."
                ) from error

    def publish(self, version: int, wait: bool = True, check: Callable[[], None] | None = None) -> float:
        """Send weights as policy `version`; with `wait`, block until every engine loaded them.
        `check` is called while waiting (it raises if a worker died, so a dead engine fails the
        run at once rather than at the timeout)."""
        started = time.perf_counter()
        if self.broadcasts:
            weights = self.learners.broadcast_weights(version, self.dtype, self.bucket_bytes)
        else:
            weights = self.learners.export_weights_ref(self.dtype)
        ray.get(self.store.publish_weights.remote(version, [weights]), timeout=self.timeout_s)
        if wait:
            self.wait(version, deadline=started + self.timeout_s, check=check)
        return time.perf_counter() - started

    def wait(self, version: int, deadline: float | None = None, check: Callable[[], None] | None = None) -> None:
        deadline = deadline or time.perf_counter() + self.timeout_s
        while True:
            remaining = max(0.0, deadline - time.perf_counter())
            seen = ray.get(self.store.wait_engines.remote(version, self.worker_names, min(remaining, CHECK_EVERY_S)))
            lagging = {name: v for name, v in seen.items() if v < version}
            if not lagging:
                return
            if check is not None:
                check()
            if time.perf_counter() >= deadline:
                raise WeightSyncError(
                    f"weight sync to version {version} did not finish within sync.timeout_s={self.timeout_s:g}s; "
                    f"engines still on older weights: {lagging}. A rollout worker may be stuck in a long "
                    "generation or dead (see its log); raise sync.timeout_s if generations are legitimately long."
                )
