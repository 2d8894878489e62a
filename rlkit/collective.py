"""Weights by broadcast: one process group of learner rank 0 and every rollout engine.

The object-store path (`rlkit.transport.put_tensors`) copies the weights into host memory on
the learner's node and every engine pulls them from there: right on CPU, a detour on GPUs. Here
rank 0 broadcasts them to the engines directly, GPU to GPU over NCCL when both sides hold GPUs
and over gloo otherwise (the same code, which is how it is tested on CPU).

The group is its own: built from a TCPStore and a ProcessGroup object, not
`torch.distributed.init_process_group`, so it lives beside the learner's DeepSpeed group and
the engines need no default group. Tensors travel as raw bytes packed into buckets, so any
dtype crosses any backend and a bucket is one collective; both sides derive the same bucket
layout from the list of (name, dtype, shape) the learner announces.

A broadcast is a collective: every member joins each one, in order. The learner announces
version v only after v − 1's broadcast finished, so an engine that sees an announcement always
joins the broadcast in flight.
"""

from __future__ import annotations

import datetime
import socket
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as dist

ALIGN_BYTES = 16  # every tensor starts on a boundary that any dtype can view


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
    """What the learner announces in place of an object-store reference: the tensors, in
    order, that the broadcast in flight carries, and the bucket size that lays them out."""

    spec: tuple[tuple[str, str, tuple[int, ...]], ...]
    bucket_bytes: int

    def buckets(self) -> list[list[Slot]]:
        return layout(self.spec, self.bucket_bytes)


def tensor_spec(tensors: Iterable[tuple[str, torch.Tensor]], dtype: torch.dtype | None = None) -> tuple[tuple[str, str, tuple[int, ...]], ...]:
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


def listen(host: str) -> socket.socket:
    """A listening socket on `host` (an interface of this node, not every interface) for the
    group's TCPStore; its port is free for as long as the socket is open."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, 0))
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
        if backend not in ("gloo", "nccl"):
            raise ValueError(f"weight group backend {backend!r}: use 'gloo' or 'nccl'")
        self.rank, self.world_size, self.backend = rank, world_size, backend
        self.device = torch.device(device)
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
            if not hasattr(dist, "ProcessGroupNCCL") or self.device.type != "cuda":
                raise RuntimeError("the nccl weight group needs a CUDA build of torch and a GPU on every member; "
                                   "use sync.transport=object_store (or gloo) on CPU")
            torch.cuda.set_device(self.device)
            options = dist.ProcessGroupNCCL.Options()
            options._timeout = timeout
            self._group = dist.ProcessGroupNCCL(self._store, rank, world_size, options)

    def pack(self, tensors: dict[str, torch.Tensor], notice: BroadcastNotice) -> list[torch.Tensor]:
        """Copy `tensors` into byte buckets on this member's device, cast to the dtypes `notice`
        names: a snapshot, so training may go on while `send` broadcasts it."""
        buffers = []
        with torch.no_grad():
            for bucket in notice.buckets():
                buffer = torch.empty(bucket_size(bucket), dtype=torch.uint8, device=self.device)
                for slot in bucket:
                    view(buffer, slot).copy_(tensors[slot.name])
                buffers.append(buffer)
        return buffers

    def send(self, buffers: list[torch.Tensor]) -> None:
        """Broadcast packed buckets (rank 0); returns once every member has them."""
        for buffer in buffers:
            self._broadcast(buffer)

    def receive(self, notice: BroadcastNotice) -> list[tuple[str, torch.Tensor]]:
        """The tensors of the broadcast in flight, as views of buffers on this member's device.
        All of them, and only then, since an engine must load a layer's weights in one call (vLLM
        rebuilds each layer it is given weights for)."""
        received = []
        for bucket in notice.buckets():
            buffer = torch.empty(bucket_size(bucket), dtype=torch.uint8, device=self.device)
            self._broadcast(buffer)
            received.extend((slot.name, view(buffer, slot)) for slot in bucket)
        return received

    def _broadcast(self, buffer: torch.Tensor) -> None:
        options = dist.BroadcastOptions()
        options.rootRank = 0
        work = self._group.broadcast([buffer], options)
        work.wait()
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
