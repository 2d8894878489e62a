"""Stop a run whose updates keep being skipped for non-finite losses or gradients."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class NumericalFailure(RuntimeError):
    """Training stopped making updates: the loss or gradients stayed non-finite."""


class SkipGuard:
    """Counts steps in a row whose update was skipped (`actor/skipped_steps` > 0); past
    `limit` (run.max_consecutive_skips; 0 = never) the run stops instead of training on."""

    def __init__(self, limit: int, metrics_path: Path) -> None:
        self.limit, self.metrics_path = limit, metrics_path
        self.in_a_row = 0

    def check(self, step: int, metrics: dict[str, Any]) -> None:
        self.in_a_row = self.in_a_row + 1 if metrics.get("actor/skipped_steps", 0) > 0 else 0
        if self.limit and self.in_a_row >= self.limit:
            raise NumericalFailure(
                f"{self.in_a_row} steps in a row (through step {step}) had updates skipped because the loss or a "
                f"gradient was not finite (actor/skipped_steps in {self.metrics_path}). Check rewards and advantages "
                "for extreme values (reward/min and reward/max in the metrics) and the learning rate; a resumed run "
                "keeps the optimizer's settings from its checkpoint, so start changed settings in a new "
                "run.output_dir, or raise run.max_consecutive_skips (0 turns the stop off).")
