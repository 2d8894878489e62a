"""Weights by broadcast: one process group of learner rank 0 and every rollout engine.

The object-store path (`rlkit.transport.put_tensors`) copies the weights into host memory on
the learner's node and every engine pulls them from there: right on CPU, a detour on GPUs. Here
rank 0 broadcasts them to the engines directly, GPU to GPU over NCCL, or over gloo (the same
code, which is how it is tested on CPU).

The group is its own: built from a TCPStore and a ProcessGroup object, not
`torch.distributed.init_process_group`, so it lives beside the learner's DeepSpeed group and
the engines need no default group. Tensors travel as raw bytes packed into buckets, so any
dtype crosses any backend and a bucket is one collective; both sides derive the same bucket
layout from the list of (name, dtype, shape) the learner announces.

Every member takes part in every broadcast, in order. Each engine says on the group's store
that it is ready for version v, and rank 0 starts v's broadcast only once all have: the
collective never waits on an engine still generating (NCCL would tear the process down when
its timeout passed), an engine can never receive the bytes of another version, and an engine
that does not come is named.
"""

from __future__ import annotations

import datetime
import socket
import time
from dataclasses import dataclass
from collections.abc import Iterable, Iterator

import torch
import torch.distributed as dist

ALIGN_BYTES = 16  # every tensor starts on a boundary that any dtype can view
BACKENDS = ("nccl", "gloo")
READY_POLL_S = 0.02


class WeightGroupError(RuntimeError):
    """The group could not form, or a broadcast did not complete."""


@dataclass(frozen=True)
class Slot:
    """Where one tensor lies in its bucket."""

    name: str
    dtype: str  # torch dtype name without the "torch." prefix
    shape: tuple[int, ...]
    offset: int  # bytes from the bucket's start
    nbytes: int


@dataclass(frozen=True)
class BroadcastNotice:
    """What the learner announces in place of an object-store reference: the policy version
    the broadcast carries, its tensors in order, and the bucket size that lays them out."""

    version: int
    spec: tuple[tuple[str, str, tuple[int, ...]], ...]
    bucket_bytes: int

    def buckets(self) -> list[list[Slot]]:
        return layout(self.spec, self.bucket_bytes)


def tensor_spec(tensors: Iterable[tuple[str, torch.Tensor]],
                dtype: torch.dtype | None = None) -> tuple[tuple[str, str, tuple[int, ...]], ...]:
    """(name, dtype, shape) of each tensor as it will travel (floating tensors cast to `dtype`)."""
    return tuple(
        (name, _dtype_name(dtype if dtype is not None and tensor.is_floating_point() else tensor.dtype), tuple(tensor.shape))
        for name, tensor in tensors
    )


def layout(spec: Iterable[tuple[str, str, tuple[int, ...]]], bucket_bytes: int) -> list[list[Slot]]:
    """Pack tensors, in order, into buckets of at most `bucket_bytes` (a larger tensor gets a
    bucket of its own). Deterministic: sender and receivers compute it alike."""
    buckets: list[list[Slot]] = [[]]
    used = 0
    for name, dtype, shape in spec:
        nbytes = _numel(shape) * _element_size(dtype)
        offset = -(-used // ALIGN_BYTES) * ALIGN_BYTES
        if buckets[-1] and offset + nbytes > bucket_bytes:
            buckets.append([])
            offset = 0
        buckets[-1].append(Slot(name, dtype, tuple(shape), offset, nbytes))
        used = offset + nbytes
    return [bucket for bucket in buckets if bucket]


def bucket_size(bucket: list[Slot]) -> int:
    last = bucket[-1]
    return last.offset + last.nbytes


def view(buffer: torch.Tensor, slot: Slot) -> torch.Tensor:
    """The tensor `slot` describes, as a view of the uint8 `buffer`."""
    return buffer[slot.offset:slot.offset + slot.nbytes].view(getattr(torch, slot.dtype)).reshape(slot.shape)


def listen(host: str, port: int = 0) -> socket.socket:
    """A listening socket on `host` (an interface of this node, not every interface) for a
    TCPStore to serve on (`master_listen_fd`); port 0 picks a free one, held while it is open."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


class WeightGroup:
    """One member of the broadcast group; rank 0 (the learner) sends, the others receive.

    Construction is collective: it returns once all `world_size` members have joined, or
    raises after `timeout_s`. Rank 0 passes the socket from `listen` (its TCPStore serves on
    it); the others pass the host and port of that socket.
    """

    def __init__(
        self,
        rank: int,
        world_size: int,
        host: str,
        port: int,
        backend: str,
        timeout_s: float,
        listening: socket.socket | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"weight group backend {backend!r}: use one of {', '.join(BACKENDS)}")
        self.device = _indexed(torch.device(device))
        if backend == "nccl" and (not hasattr(dist, "ProcessGroupNCCL") or self.device.type != "cuda"):
            if listening is not None:
                listening.close()
            raise WeightGroupError(
                f"the nccl weight group needs a CUDA build of torch and a GPU on every member (this member: "
                f"{self.device}); use sync.transport=gloo or object_store on CPU")
        self.rank, self.world_size, self.backend, self.timeout_s = rank, world_size, backend, timeout_s
        timeout = datetime.timedelta(seconds=timeout_s)
        store = dist.TCPStore(
            host, port, world_size, rank == 0, timeout,
            # The store owns (and closes, even when it fails) the descriptor from here on.
            master_listen_fd=listening.detach() if listening is not None else None,
        )
        self._store = dist.PrefixStore("rlkit-weights", store)
        if backend == "gloo":
            options = dist.ProcessGroupGloo._Options()
            options._timeout = timeout
            # Gloo talks from the interface this node is reached on (the rendezvous host for
            # rank 0; the interface that reaches it for the others), not whatever the hostname resolves to.
            options._devices = [dist.ProcessGroupGloo.create_device(hostname=_local_address(host, port) if rank else host)]
            self._group = dist.ProcessGroupGloo(self._store, rank, world_size, options)
        else:
            torch.cuda.set_device(self.device)
            options = dist.ProcessGroupNCCL.Options()
            options._timeout = timeout
            self._group = dist.ProcessGroupNCCL(self._store, rank, world_size, options)

    def packed(self, tensors: dict[str, torch.Tensor], notice: BroadcastNotice) -> Iterator[torch.Tensor]:
        """`tensors` copied into byte buckets on this member's device, cast to the dtypes `notice`
        names, one bucket at a time (`list(...)` of it is a snapshot of the whole state)."""
        for bucket in notice.buckets():
            buffer = torch.empty(bucket_size(bucket), dtype=torch.uint8, device=self.device)
            with torch.no_grad():
                for slot in bucket:
                    view(buffer, slot).copy_(tensors[slot.name])
            yield buffer

    def send(self, notice: BroadcastNotice, buffers: Iterable[torch.Tensor]) -> None:
        """Rank 0: once every engine is ready for `notice.version`, broadcast the buckets; returns
        when the last one is out of this member's hands."""
        self._wait_ready(notice.version)
        for buffer in buffers:
            self._broadcast(buffer)

    def receive(self, notice: BroadcastNotice) -> list[tuple[str, torch.Tensor]]:
        """The tensors of `notice`'s broadcast, as views of buffers on this member's device.
        All of them, and only then, since an engine must load a layer's weights in one call (vLLM
        rebuilds each layer it is given weights for)."""
        self._store.set(_ready_key(notice.version, self.rank), "1")
        received = []
        for bucket in notice.buckets():
            buffer = torch.empty(bucket_size(bucket), dtype=torch.uint8, device=self.device)
            self._broadcast(buffer)
            received.extend((slot.name, view(buffer, slot)) for slot in bucket)
        return received

    def _wait_ready(self, version: int) -> None:
        keys = {rank: _ready_key(version, rank) for rank in range(1, self.world_size)}
        deadline = time.monotonic() + self.timeout_s
        while keys:
            keys = {rank: key for rank, key in keys.items() if not self._store.check([key])}
            if keys and time.monotonic() > deadline:
                raise WeightGroupError(
                    f"engine(s) of group rank {sorted(keys)} did not come for weight version {version} within "
                    f"{self.timeout_s:g}s: stuck in a long generation, or dead (see the rollout logs); "
                    "raise sync.timeout_s if generations are legitimately that long")
            if keys:
                time.sleep(READY_POLL_S)
        for rank in range(1, self.world_size):
            self._store.delete_key(_ready_key(version, rank))

    def _broadcast(self, buffer: torch.Tensor) -> None:
        options = dist.BroadcastOptions()
        options.rootRank = 0
        self._group.broadcast([buffer], options).wait()
        if buffer.is_cuda:  # NCCL's wait only orders the current stream; the host must see the bytes
            torch.cuda.current_stream(buffer.device).synchronize()

    def close(self) -> None:
        """Tear the group down (members blocked in a broadcast with it fail instead of waiting)."""
        abort = getattr(self._group, "abort", None)
        if callable(abort):
            try:
                abort()
            except RuntimeError:
                pass
        self._group = None
        self._store = None


def _ready_key(version: int, rank: int) -> str:
    return f"ready/{version}/{rank}"


def _indexed(device: torch.device) -> torch.device:
    """`cuda` → `cuda:<current>`: NCCL and set_device need the index."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _local_address(host: str, port: int) -> str:
    """The address of this node's interface that reaches `host`:`port` (what gloo should bind)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((host, port))  # UDP: picks the route, sends nothing
        return probe.getsockname()[0]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _element_size(dtype: str) -> int:
    return torch.empty((), dtype=getattr(torch, dtype)).element_size()


def _numel(shape: Iterable[int]) -> int:
    count = 1
    for size in shape:
        count *= int(size)
    return count
