"""What a run writes as it goes: metrics.jsonl (and W&B), the data ledger and the progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlkit.config import TrainConfig
from rlkit.config.resolve import plain_config
from rlkit.tracking.metrics_log import JsonLines, MetricsLog
from rlkit.tracking.progress import Progress


class RunLogs:
    """Opened afresh, or continued from a checkpoint's row counts (rows a dead run wrote after
    its checkpoint are dropped)."""

    def __init__(self, run_dir: Path, config: TrainConfig, first_step: int, state: dict[str, Any] | None) -> None:
        logging = config.logging
        self.metrics = MetricsLog(
            run_dir, use_wandb=logging.wandb, project=logging.wandb_project, name=config.run.name,
            group=logging.wandb_group, tags=list(logging.wandb_tags), config=plain_config(config),
            keep_rows=None if state is None else state["metrics_rows"],
            wandb_id=None if state is None else state.get("wandb_id"))
        # Which prompt groups each step trained on: a resumed run shows that none was lost or used twice.
        self.ledger = JsonLines(run_dir / "data_ledger.jsonl", keep_rows=None if state is None else state["ledger_rows"])
        self.progress = Progress(config.run.steps, logging.progress_bar, start=first_step - 1)

    def step(self, step: int, metrics: dict[str, Any]) -> None:
        self.metrics.log(step, metrics)
        self.progress.update(metrics)

    def held_out(self, step: int, when: str, metrics: dict[str, float]) -> None:
        """An evaluation outside a training step (before or after training)."""
        self.metrics.log(step, {**metrics, "policy_version": step})
        self.progress.held_out(when, metrics)

    def counts(self) -> dict[str, Any]:
        """Row counts and the W&B run id, as a checkpoint records them."""
        return {"metrics_rows": len(self.metrics.history), "ledger_rows": len(self.ledger.rows),
                "wandb_id": self.metrics.wandb_id}

    def eval_before(self) -> dict[str, float] | None:
        """The logged evaluation before training (a resumed run's summary keeps it)."""
        rows = [row for row in self.metrics.history if row["step"] == 0 and "eval/accuracy" in row]
        return {key: value for key, value in rows[0].items() if key.startswith("eval/")} if rows else None

    def close(self) -> None:
        self.progress.close()
        self.metrics.close()

