"""One JSON object per step in `metrics.jsonl`, mirrored to W&B when enabled.

W&B runs online when WANDB_API_KEY is set and offline otherwise (sync later with
`wandb sync <run_dir>/wandb/offline-run-*`); `logging.wandb=false` turns it off. The key itself
is never read into the config, logged or saved.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD")


def wandb_mode() -> str:
    """online with an API key, offline without; an explicit WANDB_MODE wins."""
    explicit = os.environ.get("WANDB_MODE")
    if explicit:
        return explicit
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLog:
    """Appends step metrics to metrics.jsonl and, optionally, to a W&B run."""

    def __init__(self, run_dir: Path, *, use_wandb: bool, project: str, name: str, group: str | None,
                 tags: list[str], config: dict[str, Any]) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.history: list[dict[str, Any]] = []
        self._wandb_run = None
        if use_wandb:
            import wandb

            self._wandb_run = wandb.init(
                project=project, name=name, group=group, tags=tags or None, config=config,
                dir=str(run_dir), mode=wandb_mode(), reinit="finish_previous",
            )

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        record = {"step": step, **{key: _clean(value) for key, value in sorted(metrics.items())}}
        self.history.append(record)
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self._wandb_run is not None:
            self._wandb_run.log({k: v for k, v in record.items() if v is not None and k != "step"}, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        """Final numbers (e.g. held-out accuracy before/after) on the W&B run summary."""
        if self._wandb_run is not None:
            for key, value in values.items():
                self._wandb_run.summary[key] = value

    def close(self) -> None:
        if self._wandb_run is not None:
            self._wandb_run.finish()
            self._wandb_run = None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a metrics.jsonl file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
