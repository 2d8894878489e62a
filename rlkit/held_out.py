"""Greedy held-out evaluation through the run's own rollout and reward workers."""

from __future__ import annotations

from rlkit.evaluation import accuracy_metrics
from rlkit.learner.group import resolve_samples
from rlkit.stages import Stages
from rlkit.types import Prompt, RolloutRequest


class HeldOut:
    """The held-out prompts and how many evaluation rounds ran (request ids stay unique across
    a resume)."""

    def __init__(self, prompts: list[Prompt], max_new_tokens: int, timeout_s: float) -> None:
        self.prompts, self.max_new_tokens, self.timeout_s = prompts, max_new_tokens, timeout_s
        self.rounds = 0

    def evaluate(self, stages: Stages) -> dict[str, float]:
        """Accuracy (with its standard error), failures and lengths of one greedy pass; {} when
        there are no held-out prompts."""
        if not self.prompts:
            return {}
        self.rounds += 1
        requests = [RolloutRequest(f"eval{self.rounds}/{p.uid}", p, 1, -1, greedy=True,
                                   max_new_tokens=self.max_new_tokens or None, partition="eval")
                    for p in self.prompts]
        stages.put([{"partition": "eval", "fields": {"request": r}} for r in requests])
        return accuracy_metrics(resolve_samples(stages.take_scored("eval", len(requests), self.timeout_s)))
