"""The learner ranks as Ray actors, driven as one object by the controller.

Every call fans out to all ranks (ZeRO collectives need every rank) and waits with a
timeout; a rank that fails or hangs is named in the error.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import ray
import torch

from rlkit.algorithms import AlgorithmOptions
from rlkit.collective import BroadcastNotice
from rlkit.learner.broadcast import WeightBroadcaster
from rlkit.learner.options import LearnerOptions
from rlkit.learner.worker import LearnerWorker, export_dtype
from rlkit.metrics import batch_metrics
from rlkit.placement import cluster_has_gpus
from rlkit.transport import put_tensors, resolve
from rlkit.types import ScoredSample


class LearnerRank(LearnerWorker):
    """LearnerWorker plus the Ray-facing entry points (object refs in, object refs out)."""

    def address(self) -> tuple[str, int]:
        """An address on this actor's node where rank 0 can host the rendezvous."""
        host = ray.util.get_node_ip_address()
        return host, free_port(host)

    def train_step_refs(self, items: list[Any]) -> dict[str, float]:
        """train_step on the samples behind `items` (see `resolve_samples`), plus the batch's
        reward/length statistics (rank 0 has the whole batch anyway)."""
        batch = resolve_samples(items)
        metrics = self.train_step(batch)
        if self.rank == 0:
            metrics.update(batch_metrics(batch))
        return metrics

    def export_weights_ref(self, dtype: str | None) -> list[ray.ObjectRef] | None:
        """Export and put the state dict in the object store from here (rank 0), so it never
        passes through the driver; the ref is wrapped in a list so Ray does not resolve it.
        Read it with `rlkit.transport.get_tensors`."""
        state = self.export_weights(dtype)
        return None if state is None else [put_tensors(state)]

    def open_weight_group(self, world_size: int, backend: str, timeout_s: float) -> tuple[str, int]:
        """Rank 0: host the weight-broadcast group on this node and start joining it (the
        engines join at the address returned; `weight_group_ready` waits for all of them)."""
        if getattr(self, "_broadcaster", None) is not None:
            self._broadcaster.close()
        device = self.device if backend == "nccl" else torch.device("cpu")
        self._broadcaster = WeightBroadcaster(ray.util.get_node_ip_address(), world_size, backend, timeout_s, device)
        return self._broadcaster.address

    def weight_group_ready(self) -> None:
        self._require_broadcaster().wait_idle()

    def broadcast_weights(self, version: int, dtype: str | None, bucket_bytes: int) -> BroadcastNotice | None:
        """Start broadcasting the weights to the engines as `version` (rank 0; every rank must
        call this, as ZeRO-3 gathers the shards). Returns the notice to announce."""
        target = export_dtype(dtype)
        state = self.full_state()
        if state is None:
            return None
        return self._require_broadcaster().broadcast(
            version, state, target, bucket_bytes, state_is_copy=self.options.zero_stage == 3)

    def _require_broadcaster(self) -> WeightBroadcaster:
        broadcaster = getattr(self, "_broadcaster", None)
        if broadcaster is None:
            raise RuntimeError("no weight-broadcast group: call open_weight_group on rank 0 first")
        return broadcaster


def resolve_samples(items: list[Any]) -> list[ScoredSample]:
    """The batch behind `items`. Each item is a (sample, reward) pair as the store hands them out
    (values, or references to large ones), or a ref to a ScoredSample (or to a list of them)."""
    flat = [ref for item in items for ref in (item if isinstance(item, (tuple, list)) else (item,))]
    values = iter(resolve(flat))
    samples: list[ScoredSample] = []
    for item in items:
        if isinstance(item, (tuple, list)):
            sample, reward = next(values), next(values)
            samples.append(ScoredSample(sample=sample, reward=reward))
        else:
            value = next(values)
            samples.extend(value if isinstance(value, (list, tuple)) else [value])
    return samples


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class LearnerGroup:
    """`options.num_ranks` LearnerRank actors forming one DeepSpeed data-parallel group."""

    def __init__(
        self,
        model_path: str,
        options: LearnerOptions,
        algorithm: AlgorithmOptions,
        *,
        temperature: float = 1.0,
        on_failure: str = "exclude",
        env: dict[str, str] | None = None,
        rank_options: list[dict[str, Any]] | None = None,
        setup_timeout_s: float = 600.0,
        step_timeout_s: float = 3600.0,
    ) -> None:
        """Start the ranks and wait until every one has built its engine.

        `options` is the recipe's learner section (its cpus_/gpus_per_rank reserve each rank's
        CPUs and GPUs; an unset GPU count follows the cluster); `algorithm` the algorithm
        section; `temperature` the rollout's sampling temperature (log-probs are of logits / T);
        `on_failure` what a failed reward means for the loss (reward.on_failure); `env` the
        environment variables of the rank processes; `rank_options` extra Ray actor options per
        rank (its placement-group bundle).
        """
        problems = options.check()
        if problems:
            raise ValueError("invalid learner options: " + "; ".join(problems))
        self.options = options
        self.step_timeout_s = step_timeout_s
        common = {"num_cpus": options.cpus_per_rank, "num_gpus": options.gpus_for(cluster_has_gpus()),
                  "resources": dict(options.resources) or None,
                  "runtime_env": {"env_vars": dict(env)} if env else None}
        per_rank = rank_options or [{} for _ in range(options.num_ranks)]
        self.ranks = [
            ray.remote(LearnerRank).options(**common, **per_rank[rank]).remote(
                rank, options.num_ranks, None, None, str(model_path), options, algorithm, temperature,
                on_failure=on_failure)
            for rank in range(options.num_ranks)
        ]
        try:
            master_addr, master_port = self._gather([self.ranks[0].address.remote()], "address", setup_timeout_s)[0]
            self._gather([rank.setup.remote(master_addr, master_port) for rank in self.ranks], "setup", setup_timeout_s)
        except BaseException:
            self.shutdown()  # no half-started group left holding CPUs/GPUs
            raise

    def train_step(self, batch_refs: list[Any]) -> dict[str, float]:
        """One train step on the samples behind `batch_refs` ((sample_ref, reward_ref) pairs or
        refs to ScoredSamples). Refs nested in a list are not resolved by Ray on the way in:
        every rank fetches the samples itself, the driver never holds them."""
        return self._call_all("train_step_refs", list(batch_refs), name="train_step")[0]

    def export_weights_ref(self, dtype: str | None = None) -> ray.ObjectRef:
        """A ref to rank 0's full state dict in the object store (not pulled into the driver)."""
        return self._call_all("export_weights_ref", dtype)[0][0]

    def open_weight_group(self, world_size: int, backend: str, timeout_s: float) -> tuple[str, int]:
        """Rank 0 hosts a broadcast group of itself and `world_size - 1` engines; its address."""
        return self._gather([self._rank0().open_weight_group.remote(world_size, backend, timeout_s)],
                            "open_weight_group", timeout_s)[0]

    def weight_group_ready_ref(self) -> ray.ObjectRef:
        """Resolves once every engine has joined the broadcast group (raises what joining raised)."""
        return self._rank0().weight_group_ready.remote()

    def broadcast_weights(self, version: int, dtype: str | None, bucket_bytes: int) -> BroadcastNotice:
        """Start broadcasting the weights to the engines as `version`; the notice they need to receive them."""
        return self._call_all("broadcast_weights", version, dtype, bucket_bytes)[0]

    def logprobs(self, prompt_ids: list[int], response_ids: list[int]) -> list[float]:
        """The learner's log-probs of a fixed sequence (weight-sync checks)."""
        return self._call_all("logprobs", list(prompt_ids), list(response_ids))[0]

    def save_pretrained(self, path: str) -> None:
        self._call_all("save_pretrained", str(path))

    def save_checkpoint(self, directory: str, tag: str) -> None:
        self._call_all("save_checkpoint", str(directory), tag)

    def load_checkpoint(self, directory: str, tag: str) -> None:
        self._call_all("load_checkpoint", str(directory), tag)

    def _rank0(self) -> Any:
        if not self.ranks:
            raise RuntimeError("LearnerGroup: the group was shut down")
        return self.ranks[0]

    def shutdown(self) -> None:
        """Kill the rank actors (their process group dies with them)."""
        for rank in self.ranks:
            ray.kill(rank, no_restart=True)
        self.ranks = []

    def _call_all(self, method: str, *args: Any, name: str | None = None) -> list[Any]:
        """`method` on every rank; errors call it `name` (the group's own method, by default `method`)."""
        name = name or method
        if not self.ranks:
            raise RuntimeError(f"LearnerGroup.{name}: the group was shut down")
        refs = [getattr(rank, method).remote(*args) for rank in self.ranks]
        return self._gather(refs, name, self.step_timeout_s)

    def _gather(self, refs: list[ray.ObjectRef], method: str, timeout_s: float) -> list[Any]:
        """Results in rank order. Fails fast on the first rank that raises (the others may be
        blocked in a collective waiting for it) and names the ranks still running on timeout."""
        deadline = time.monotonic() + timeout_s
        index = {ref: rank for rank, ref in enumerate(refs)}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                ranks = sorted(index[ref] for ref in pending)
                raise TimeoutError(
                    f"learner {method}: rank(s) {ranks} did not finish within {timeout_s:.0f}s; a rank may be "
                    "stuck in a collective (another rank died?) or the step is larger than the timeout allows. "
                    "The ranks are out of step now: shut the group down and start a new one."
                )
            try:
                ray.get(ready[0])
            except Exception as error:
                raise RuntimeError(
                    f"learner {method} failed on rank {index[ready[0]]} (the other ranks may now wait in a "
                    f"collective: shut the group down and start a new one): {error}"
                ) from error
        return ray.get(list(refs))
