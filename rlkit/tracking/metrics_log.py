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
                 tags: list[str], config: dict[str, Any], keep_rows: int | None = None,
                 wandb_id: str | None = None) -> None:
        """`keep_rows`: continue a run from a checkpoint taken when metrics.jsonl had that many
        rows (see JsonLines); None starts afresh. `wandb_id`: the W&B run to continue."""
        self._rows = JsonLines(run_dir / "metrics.jsonl", keep_rows)
        self.path = self._rows.path
        self.history = self._rows.rows
        self._wandb_run = None
        if use_wandb:
            import wandb

            self._wandb_run = wandb.init(
                project=project, name=name, group=group, tags=tags or None, config=config,
                dir=str(run_dir), mode=wandb_mode(), reinit="finish_previous",
                id=wandb_id, resume="allow" if wandb_id else None,
            )

    @property
    def wandb_id(self) -> str | None:
        return None if self._wandb_run is None else self._wandb_run.id

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        record = self._rows.log(step, {key: _clean(value) for key, value in sorted(metrics.items())})
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


class JsonLines:
    """One JSON object per step in a file. `keep_rows`: continue a run from a checkpoint taken
    when the file had that many rows (rows the dead run wrote after it are dropped); None
    starts the file afresh."""

    def __init__(self, path: Path, keep_rows: int | None = None) -> None:
        self.path = path
        rows = read_metrics(path) if keep_rows is not None and path.exists() else []
        if keep_rows is not None and len(rows) < keep_rows:
            raise ValueError(f"{path} has {len(rows)} rows, fewer than the {keep_rows} its checkpoint recorded")
        self.rows = rows[:keep_rows] if keep_rows is not None else []
        partial = path.with_name(path.name + ".partial")
        partial.write_text("".join(json.dumps(row) + "\n" for row in self.rows))
        os.replace(partial, path)  # a crash here leaves the old file or the new one, never half of one

    def log(self, step: int, values: dict[str, Any]) -> dict[str, Any]:
        record = {"step": step, **values}
        self.rows.append(record)
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        return record


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a metrics.jsonl file. A last line cut short (the writer was killed mid-line) is
    left out; a broken line before it is an error."""
    lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    rows = []
    for number, line in enumerate(lines, start=1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise ValueError(f"{path}: line {number} is not JSON: {line[:80]!r}") from None
    return rows
