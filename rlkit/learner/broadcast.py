"""Rank 0's side of the weight broadcast (`rlkit.collective`): joins the group, and sends each
version from a background thread so the next train step need not wait for the engines.

What is sent is a snapshot: a state dict that is already a copy (ZeRO-3 gathers one on the
host) is packed bucket by bucket as it goes out; live parameters are packed into buckets
first, one copy of the weights in the transport dtype. On a GPU the sending thread uses a
stream of its own, so the train step's kernels never queue behind a broadcast.

One broadcast is in flight at a time. A failure (an engine never came, the group broke) is
raised by every later call: the group is unusable from then on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import torch

from rlkit.collective import BroadcastNotice, WeightGroup, WeightGroupError, listen, tensor_spec


class WeightBroadcaster:
    """Opens the group on `host` and sends versions to its `world_size - 1` engines."""

    def __init__(self, host: str, world_size: int, backend: str, timeout_s: float, device: torch.device) -> None:
        self.timeout_s = timeout_s
        self._listening = listen(host)
        self.address = (host, self._listening.getsockname()[1])
        self._group: WeightGroup | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._doing = ""
        # Joining blocks until every engine has joined too, so it runs while the engines are asked to.
        self._start(lambda: self._join(world_size, backend, timeout_s, device), "join the group")

    def _join(self, world_size: int, backend: str, timeout_s: float, device: torch.device) -> None:
        host, port = self.address
        self._group = WeightGroup(0, world_size, host, port, backend, timeout_s, self._listening, device)

    def broadcast(self, version: int, state: dict[str, torch.Tensor], dtype: torch.dtype | None, bucket_bytes: int,
                  state_is_copy: bool = False) -> BroadcastNotice:
        """Start sending `state` (floating tensors cast to `dtype`) as `version`; returns the
        notice the engines need to receive it. `state_is_copy`: nothing will change `state`, so
        it is packed as it goes out instead of snapshotted first."""
        self.wait_idle()
        group = self._group
        assert group is not None  # wait_idle raised if the join failed
        notice = BroadcastNotice(version, tensor_spec(state.items(), dtype), bucket_bytes)
        buffers: Iterable[torch.Tensor] = group.packed(state, notice) if state_is_copy else list(group.packed(state, notice))
        packed = None
        if group.device.type == "cuda":
            packed = torch.cuda.Event()
            packed.record()  # the snapshot's copies, queued on the training stream
        self._start(lambda: _send_on_own_stream(group, notice, buffers, packed), f"send weight version {version}")
        return notice

    def wait_idle(self) -> None:
        """Block until the join or broadcast in flight is done; raise if it, or any before it, failed."""
        if self._thread is not None:
            # The thread ends by itself: every wait in it has a timeout of its own.
            self._thread.join()
            self._thread = None
        if self._error is not None:
            host, port = self.address
            raise WeightGroupError(
                f"weight broadcast group ({host}:{port}) failed to {self._doing}: {self._error}") from self._error

    def close(self) -> None:
        if self._group is not None:
            self._group.close()
        self._listening.close()  # a no-op once the group's store owns the socket

    def _start(self, work: Callable[[], None], doing: str) -> None:
        def run() -> None:
            try:
                work()
            except BaseException as error:  # noqa: BLE001 - raised by wait_idle, now and on every later call
                self._error = error

        self._doing = doing
        self._thread = threading.Thread(target=run, name="rlkit-weight-broadcast", daemon=True)
        self._thread.start()


def _send_on_own_stream(group: WeightGroup, notice: BroadcastNotice, buffers: Iterable[torch.Tensor],
                        packed: torch.cuda.Event | None) -> None:
    if packed is None:
        group.send(notice, buffers)
        return
    stream = torch.cuda.Stream(group.device)
    stream.wait_event(packed)
    with torch.cuda.stream(stream):
        group.send(notice, buffers)
