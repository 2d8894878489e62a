"""A progress bar with step, reward, samples/s and ETA, and held-out accuracy lines."""

from __future__ import annotations

import sys
from typing import Any

from rlkit.evaluation import format_accuracy


class Progress:
    """tqdm over training steps; silent when disabled or when stderr is not wanted."""

    def __init__(self, total: int, enabled: bool, start: int = 0) -> None:
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=start, desc="train", unit="step", file=sys.stderr, dynamic_ncols=True,
                             mininterval=0)

    def update(self, metrics: dict[str, Any]) -> None:
        if self._bar is None:
            return
        postfix = {
            "reward": f"{metrics.get('reward/mean', float('nan')):.3f}",
            "samples_s": f"{metrics.get('throughput/samples_per_s', float('nan')):.1f}",
            "v": metrics.get("policy_version"),
        }
        if "eval/accuracy" in metrics:  # a step with a held-out evaluation: shown with its noise
            postfix["held_out"] = format_accuracy(metrics)
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(1)

    def held_out(self, when: str, metrics: dict[str, Any]) -> str:
        """Print `held-out accuracy <when>: 0.410 ± 0.028 (n=300)`; returns the line."""
        line = f"held-out accuracy {when}: {format_accuracy(metrics)}"
        self.write(line)
        return line

    def write(self, message: str) -> None:
        if self._bar is not None:
            self._bar.write(message)
        else:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
