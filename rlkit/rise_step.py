"""RISE's step in the loop: verification trajectories added to a scored training batch.

After a batch's solutions are scored, a few become critique prompts (rlkit.rise); the policy
answers them with the same weights, they are scored, and the step trains on both kinds.
"""

from __future__ import annotations

import random
from typing import Any

from rlkit.learner.group import resolve_samples
from rlkit.rise import RiseConfig, downsample, verification_metrics, verification_prompt
from rlkit.stages import Stages
from rlkit.types import RolloutRequest, ScoredSample


class RiseStep:
    """Chooses solutions with its own seeded RNG (saved in checkpoints) and samples their
    verifications through the run's rollout and reward workers."""

    def __init__(self, config: RiseConfig, tokenizer: Any, n: int, timeout_s: float) -> None:
        self.config, self.tokenizer, self.n, self.timeout_s = config, tokenizer, n, timeout_s
        self.rng = random.Random(config.seed)

    def add_verifications(self, stages: Stages, batch: list[tuple[Any, Any]], step: int
                          ) -> tuple[list[tuple[Any, Any]], dict[str, float]]:
        """The batch with its verification trajectories appended, and RISE's metrics."""
        scored = resolve_samples(batch)
        groups: dict[str, list[ScoredSample]] = {}
        for item in scored:
            groups.setdefault(item.sample.group_uid, []).append(item)
        chosen = downsample(list(groups.values()), self.config.critique_batch_size, self.rng)
        prompts = [verification_prompt(item, self.tokenizer, self.config, f"rise{step}-{index}")
                   for index, item in enumerate(chosen)]
        requests = [RolloutRequest(p.uid, p, self.n, step - 1, partition="rise") for p in prompts if p is not None]
        metrics = {"rise/too_long": float(len(prompts) - len(requests))}
        if not requests:  # nothing gradable this step (every reward failed) or nothing fits
            return batch, {**verification_metrics(scored), **metrics}
        stages.put([{"partition": "rise", "fields": {"request": r}} for r in requests])
        verifications = stages.take_scored("rise", len(requests), self.timeout_s)
        return batch + verifications, {**verification_metrics(scored + resolve_samples(verifications)), **metrics}

    def state(self) -> Any:
        return self.rng.getstate()

    def load_state(self, state: Any) -> None:
        self.rng.setstate(state)  # checkpoints keep tuples as tuples (rlkit.checkpoint.encode)
