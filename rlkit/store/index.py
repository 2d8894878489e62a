"""Bookkeeping of the data store, free of Ray so it can be tested directly.

Each entry is one sample (or one prompt request) with named fields, each field an opaque
handle (an object-store reference in production). A consumer task asks for entries whose
fields are all ready and that it has not consumed yet; optionally only whole groups, only
entries at or above a policy version, and optionally clears what it took.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable, Iterable


@dataclass
class Entry:
    """One stored item and what is known about it."""

    entry_id: int
    group: str | None  # entries of one group are handed out together when asked for whole groups
    group_size: int
    version: int  # policy version that produced it (or batch index for prompt requests)
    partition: str = "train"  # "train", "eval", ...: consumers read one partition at a time
    fields: dict[str, Any] = field(default_factory=dict)  # field name -> handle
    consumed_by: set[str] = field(default_factory=set)
    ready_at: dict[str, float] = field(default_factory=dict)  # field name -> when it was written (clock)


class StoreIndex:
    """Which entries exist, which fields each has, which task took which."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: dict[int, Entry] = {}
        self._groups: dict[str, list[int]] = {}
        self._next_id = 0
        self.cleared = 0
        self._clock = clock
        self._waits: dict[str, list[float]] = defaultdict(list)  # task -> seconds from ready to taken

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, group: str | None, group_size: int, version: int, fields: dict[str, Any], partition: str = "train",
            consumed_by: Iterable[str] = ()) -> int:
        now = self._clock()
        entry = Entry(self._next_id, group, group_size, version, partition, dict(fields), set(consumed_by),
                      ready_at=dict.fromkeys(fields, now))
        self._next_id += 1
        self._entries[entry.entry_id] = entry
        if group is not None:
            self._groups.setdefault(group, []).append(entry.entry_id)
        return entry.entry_id

    def set_field(self, entry_id: int, name: str, handle: Any) -> bool:
        """Add a field to an entry; False if the entry is gone (already cleared)."""
        entry = self._entries.get(entry_id)
        if entry is None:
            return False
        entry.fields[name] = handle
        entry.ready_at[name] = self._clock()
        return True

    def _ready(self, entry: Entry, task: str, fields: tuple[str, ...], min_version: int | None, partition: str | None) -> bool:
        return (
            (partition is None or entry.partition == partition)
            and task not in entry.consumed_by
            and all(name in entry.fields for name in fields)
            and (min_version is None or entry.version >= min_version)
        )

    def take(
        self,
        task: str,
        fields: tuple[str, ...],
        limit: int,
        *,
        whole_groups: bool = False,
        min_version: int | None = None,
        clear: bool = False,
        partition: str | None = None,
    ) -> list[tuple[int, dict[str, Any]]]:
        """Up to `limit` ready entries (or `limit` complete groups), marked consumed by `task`.

        `partition=None` reads every partition (e.g. a reward worker scores train and eval alike).
        """
        if whole_groups:
            chosen = []
            for members in self._groups.values():
                if len(chosen) >= limit:
                    break
                entries = [self._entries[i] for i in members]
                if (len(entries) == entries[0].group_size
                        and all(self._ready(e, task, fields, min_version, partition) for e in entries)):
                    chosen.append(entries)
            picked = [entry for group in chosen for entry in group]
        else:
            picked = []
            for entry in self._entries.values():
                if len(picked) >= limit:
                    break
                if self._ready(entry, task, fields, min_version, partition):
                    picked.append(entry)
        result = []
        self.last_taken_groups: list[str | None] = []
        now = self._clock()
        for entry in picked:
            self._waits[task].append(now - max(entry.ready_at[name] for name in fields) if fields else 0.0)
            entry.consumed_by.add(task)
            self.last_taken_groups.append(entry.group)
            result.append((entry.entry_id, {name: entry.fields[name] for name in fields}))
            if clear:
                self._remove(entry)
        return result

    def count_ready(
        self, task: str, fields: tuple[str, ...], *, whole_groups: bool = False, min_version: int | None = None,
        partition: str | None = None, enough: int | None = None,
    ) -> int:
        """Ready entries (or complete ready groups) for `task`; stops counting at `enough`, so a
        consumer's wake-up check costs what it needs, not a scan of everything held."""
        limit = enough if enough is not None else len(self._entries) + 1
        count = 0
        if not whole_groups:
            for entry in self._entries.values():
                if count >= limit:
                    break
                count += self._ready(entry, task, fields, min_version, partition)
            return count
        for members in self._groups.values():
            if count >= limit:
                break
            entries = [self._entries[i] for i in members]
            if (len(entries) == entries[0].group_size
                    and all(self._ready(e, task, fields, min_version, partition) for e in entries)):
                count += 1
        return count

    def _remove(self, entry: Entry) -> None:
        del self._entries[entry.entry_id]
        self.cleared += 1
        if entry.group is not None:
            members = self._groups[entry.group]
            members.remove(entry.entry_id)
            if not members:
                del self._groups[entry.group]

    def entries(self, partition: str) -> list[Entry]:
        """Every entry of `partition`, oldest first (what a checkpoint saves)."""
        return [entry for entry in self._entries.values() if entry.partition == partition]

    def drain_waits(self) -> dict[str, list[float]]:
        """Per consumer task, how long each entry it took had been ready (its last requested
        field written → taken), since the last call."""
        waits, self._waits = dict(self._waits), defaultdict(list)
        return waits

    def stats(self) -> dict[str, int]:
        """Counts for metrics and for error messages when a consumer waits too long."""
        counts: dict[str, int] = {"entries": len(self._entries), "groups": len(self._groups), "cleared": self.cleared}
        for entry in self._entries.values():
            for name in entry.fields:
                counts[f"field/{name}"] = counts.get(f"field/{name}", 0) + 1
            for task in entry.consumed_by:
                counts[f"consumed/{task}"] = counts.get(f"consumed/{task}", 0) + 1
        return counts
