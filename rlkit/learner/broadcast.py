"""Rank 0's side of the weight broadcast (`rlkit.collective`): joins the group, and sends each
snapshot from a background thread so the next train step need not wait for the engines.

One broadcast is in flight at a time: a new one waits for the previous to finish, since every
engine must join each broadcast in order. An error in the thread (an engine died, the group
timed out) is raised by the next call.
"""

from __future__ import annotations

import threading
from typing import Callable

import torch

from rlkit.collective import BroadcastNotice, WeightGroup, listen, tensor_spec

GRACE_S = 5.0


class WeightBroadcaster:
    """Opens the group on `host` and sends snapshots to its `world_size - 1` engines."""

    def __init__(self, host: str, world_size: int, backend: str, timeout_s: float, device: torch.device) -> None:
        self.timeout_s = timeout_s
        self._listening = listen(host)
        self.address = (host, self._listening.getsockname()[1])
        self._group: WeightGroup | None = None
        self._error: BaseException | None = None
        # Joining blocks until every engine has joined too, so it runs while the engines are asked to.
        self._thread = self._start(lambda: self._join(world_size, backend, timeout_s, device), "join")

    def _join(self, world_size: int, backend: str, timeout_s: float, device: torch.device) -> None:
        host, port = self.address
        self._group = WeightGroup(0, world_size, host, port, backend, timeout_s, self._listening, device)

    def broadcast(self, state: dict[str, torch.Tensor], dtype: torch.dtype | None, bucket_bytes: int) -> BroadcastNotice:
        """Snapshot `state` (floating tensors cast to `dtype`) and start sending it; returns the
        notice the engines need to receive it."""
        self.wait_idle()
        assert self._group is not None
        notice = BroadcastNotice(tensor_spec(state.items(), dtype), bucket_bytes)
        buffers = self._group.pack(state, notice)
        group = self._group
        self._thread = self._start(lambda: group.send(buffers), "send")
        return notice

    def wait_idle(self) -> None:
        """Block until the join or broadcast in flight is done; raise what it raised."""
        if self._thread is not None:
            self._thread.join(self.timeout_s + GRACE_S)  # the group's own timeout fires first, with its reason
            if self._thread.is_alive():
                raise TimeoutError(f"{self._what()} within sync.timeout_s={self.timeout_s:g}s")
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError(f"{self._what()}: {error}") from error

    def _what(self) -> str:
        host, port = self.address
        if self._thread is not None and self._thread.name.endswith("join") or self._group is None:
            return (f"engines did not join the weight-broadcast group at {host}:{port} (each engine's node must reach "
                    "that address; a firewall?)")
        return ("the previous weight broadcast did not finish: an engine never joined it (stuck in a long "
                "generation, or dead; see the rollout logs)")

    def close(self) -> None:
        if self._group is not None:
            self._group.close()
        self._listening.close()

    def _start(self, work: Callable[[], None], what: str) -> threading.Thread:
        def run() -> None:
            try:
                work()
            except BaseException as error:  # noqa: BLE001 - handed to the caller by wait_idle
                self._error = error

        thread = threading.Thread(target=run, name=f"rlkit-weights-{what}", daemon=True)
        thread.start()
        return thread
