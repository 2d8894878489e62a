"""The DataStore Ray actor: a StoreIndex behind an asyncio condition.

Producers hand their values to `put`/`set_field`. Small values stay in the store's memory and
travel inside its replies; large ones the store `ray.put`s itself, so it owns them and a producer
that dies loses nothing (rlkit/transport.py; consumers `resolve` what they get). Weights do
not pass through here, only a reference to them. Consumers block on a condition until what they
asked for is ready: no polling. Weights published by the learner are announced here too, so
rollout workers can pick them up between requests.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import ray

from rlkit.store.index import StoreIndex
from rlkit.store.query import Query, Taken
from rlkit.transport import hold


class StoreClosed(RuntimeError):
    """The store was shut down while a consumer waited."""


@ray.remote(num_cpus=0)
class DataStore:
    """Index of sample fields in Ray's object store, plus the weight notice board."""

    def __init__(self) -> None:
        self._index = StoreIndex()
        self._changed = asyncio.Condition()
        self._closed = False
        self._weights: tuple[int, list[Any]] | None = None  # (version, [ref])
        self._engine_versions: dict[str, int] = {}
        self._counters: dict[str, float] = {}

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def put(self, entries: list[dict[str, Any]], counters: dict[str, float] | None = None) -> list[int]:
        """Add entries: each {"group", "group_size", "version", "partition", "fields": {name: value}},
        optionally with "consumed_by" (tasks that already took it: a restored checkpoint's entries),
        and `counters` to the running counters in the same step."""
        ids = [
            self._index.add(
                e.get("group"), int(e.get("group_size", 1)), int(e.get("version", 0)),
                {name: hold(value) for name, value in e["fields"].items()}, e.get("partition", "train"),
                e.get("consumed_by", ()),
            )
            for e in entries
        ]
        self._add(counters or {})
        await self._notify()
        return ids

    async def set_field(self, entry_ids: list[int], name: str, values: list[Any],
                        counters: dict[str, float] | None = None) -> int:
        """Add field `name` (one value per entry) to existing entries, and `counters` to the running
        counters; returns how many entries still existed."""
        written = sum(self._index.set_field(i, name, hold(v)) for i, v in zip(entry_ids, values))
        self._add(counters or {})
        await self._notify()
        return written

    async def get(self, query: Query) -> list[Taken] | None:
        """Wait until `query.min_items` (default `query.limit`) entries or groups are ready, then
        take up to `query.limit`.

        Returns [] on timeout — or early, when weights newer than `query.wake_on_weights_above`
        are published, so an idle rollout worker loads them at once — and None once the store is
        closed (the consumer should stop).
        """
        wanted = query.limit if query.min_items is None else query.min_items
        deadline = None if query.timeout_s is None else time.monotonic() + query.timeout_s

        def new_weights() -> bool:
            above = query.wake_on_weights_above
            return above is not None and self._weights is not None and self._weights[0] > above

        def ready() -> bool:
            if self._closed or new_weights():
                return True
            count = self._index.count_ready(query.task, query.fields, whole_groups=query.whole_groups,
                                            min_version=query.min_version, partition=query.partition, enough=wanted)
            return count >= wanted

        async with self._changed:
            while not ready():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return []
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except asyncio.TimeoutError:
                    return []
        if self._closed:
            return None
        taken = self._index.take(query.task, query.fields, query.limit, whole_groups=query.whole_groups,
                                 min_version=query.min_version, clear=query.clear, partition=query.partition)
        return [Taken(entry_id, fields, group) for (entry_id, fields), group in zip(taken, self._index.last_taken_groups)]

    async def snapshot(self, partition: str, fields: list[str], groups: int, timeout_s: float) -> dict[str, Any] | None:
        """Once `groups` whole groups of `partition` have every field in `fields`: {"entries": its
        entries with their values, oldest first, in the form `put` takes back; "counters": the
        counters not yet drained (what producing them counted)}. None if that does not happen
        within `timeout_s` (something upstream is stuck) or the store closes.

        A checkpoint calls this with the number of groups admitted but not yet trained on, so
        it waits out generations and scoring in flight and saves them, rather than losing them."""
        key = tuple(fields)
        deadline = time.monotonic() + timeout_s

        def settled() -> bool:
            return self._closed or self._index.count_ready(
                "checkpoint", key, whole_groups=True, partition=partition, enough=groups) >= groups

        async with self._changed:
            while not settled():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except asyncio.TimeoutError:
                    return None
        if self._closed:
            return None
        saved = []
        for entry in self._index.entries(partition):
            values = {name: (await handle) if isinstance(handle, ray.ObjectRef) else handle
                      for name, handle in entry.fields.items()}
            saved.append({"group": entry.group, "group_size": entry.group_size, "version": entry.version,
                          "partition": entry.partition, "fields": values, "consumed_by": sorted(entry.consumed_by)})
        return {"entries": saved, "counters": dict(self._counters)}

    async def publish_weights(self, version: int, weights: list[Any]) -> None:
        """Announce new weights ([ref] to a state dict) as policy `version`."""
        self._weights = (version, weights)
        await self._notify()

    async def latest_weights(self, newer_than: int) -> tuple[int, list[Any]] | None:
        """The newest weights if their version is above `newer_than`, else None."""
        if self._weights is not None and self._weights[0] > newer_than:
            return self._weights
        return None

    async def report_engine_version(self, worker: str, version: int) -> None:
        self._engine_versions[worker] = version
        await self._notify()

    async def wait_engines(self, version: int, workers: list[str], timeout_s: float) -> dict[str, int]:
        """Block until every named worker runs `version`; returns the versions seen (check them)."""
        deadline = time.monotonic() + timeout_s

        def done() -> bool:
            return self._closed or all(self._engine_versions.get(w, -1) >= version for w in workers)

        async with self._changed:
            while not done():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except asyncio.TimeoutError:
                    break
        return {w: self._engine_versions.get(w, -1) for w in workers}

    async def add_counters(self, values: dict[str, float]) -> None:
        """Producers add to running counters (e.g. reward failures) that the controller drains."""
        self._add(values)

    def _add(self, counters: dict[str, float]) -> None:
        for name, value in counters.items():
            self._counters[name] = self._counters.get(name, 0.0) + value

    async def drain_counters(self) -> dict[str, float]:
        counters, self._counters = self._counters, {}
        return counters

    async def stats(self) -> dict[str, int]:
        return self._index.stats()

    async def drain_metrics(self) -> dict[str, float]:
        """The store's own metrics since the last call: entries held per field (queue depth),
        how long taken entries had waited per consumer task (ms), and the actor's memory."""
        stats = self._index.stats()
        metrics = {f"store/depth/{key.removeprefix('field/')}": float(value)
                   for key, value in stats.items() if key.startswith("field/")}
        metrics["store/entries"] = float(stats["entries"])
        for task, waits in self._index.drain_waits().items():
            ordered = sorted(waits)
            for name, q in (("p50", 0.5), ("p95", 0.95)):
                metrics[f"store/wait_ms/{task}/{name}"] = 1000.0 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]
        metrics["store/rss_mb"] = _rss_mb()
        return metrics

    async def close(self) -> None:
        """Wake every waiting consumer with None so workers stop cleanly."""
        self._closed = True
        await self._notify()

    async def is_closed(self) -> bool:
        return self._closed


def _rss_mb() -> float:
    """Resident memory of this process (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0
