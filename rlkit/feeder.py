"""Admission control: which prompt batches enter the store, and when."""

from __future__ import annotations

from typing import Any
from collections.abc import Callable, Iterator

from rlkit.types import Prompt, RolloutRequest


class RequestFeeder:
    """Batch b's prompts enter the store only once policy version ≥ b − k, so no sample a step
    trains on is more than k versions old (k = sync.max_staleness)."""

    def __init__(self, put: Callable[[list[dict[str, Any]]], None], prompts: Iterator[Prompt],
                 prompts_per_step: int, n: int) -> None:
        self.put, self.prompts, self.prompts_per_step, self.n = put, prompts, prompts_per_step, n
        self.next_batch = 0

    def skip(self, batches: int) -> None:
        """Resume: the first `batches` batches were admitted before the checkpoint (their
        untrained samples come back from it); admit from the next one on."""
        for _ in range(batches * self.prompts_per_step):
            next(self.prompts)
        self.next_batch = batches

    def admit_until(self, batch_index: int) -> None:
        """Admit every batch up to and including `batch_index`."""
        while self.next_batch <= batch_index:
            requests = [RolloutRequest(f"{p.uid}@{self.next_batch}", p, self.n, self.next_batch)
                        for p in (next(self.prompts) for _ in range(self.prompts_per_step))]
            self.put([{"version": r.batch_index, "fields": {"request": r}} for r in requests])
            self.next_batch += 1
