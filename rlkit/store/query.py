"""What a consumer asks the store for, and what it gets back: one typed question, one shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Query:
    """Entries of `partition` whose `fields` are all ready and that consumer `task` has not taken."""

    task: str  # the consumer's name: each task takes an entry once
    fields: tuple[str, ...]  # every one must be ready
    limit: int  # take at most this many entries (or whole groups, with whole_groups)
    min_items: int | None = None  # wait until this many are ready (default: limit)
    whole_groups: bool = False  # count and take complete groups only
    min_version: int | None = None  # only entries stamped with a policy version ≥ this
    clear: bool = False  # drop what was taken from the store (memory stays flat)
    partition: str | None = "train"  # None: any partition
    timeout_s: float | None = None  # give up after this long (returns [])
    wake_on_weights_above: int | None = None  # return [] at once when newer weights are published

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))


@dataclass(frozen=True)
class Taken:
    """One entry a consumer took: its id, the fields it asked for, and its group."""

    entry_id: int
    fields: dict[str, Any]
    group: str | None
