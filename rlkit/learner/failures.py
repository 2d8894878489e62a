"""Which rows of a batch the loss trains on, and with what score, when rewards failed.

A failed reward (status error, timeout or invalid) says nothing about the response it was meant
to judge. Scoring it 0 ranks it among real scores: under RISE's −1 / −0.5 / 1 scale a crashed
scorer would rank above a wrong answer, and the policy could learn to make the scorer fail.
So by default such a row leaves the group statistics and the loss, as a `not_applicable` one
always does (`reward.on_failure`, docs/rewards.md):

- `exclude` (default): failed rows leave the group and the loss;
- `minimum`: a failed row counts as its group's lowest successful score (and its components);
  a group with no successful score leaves the loss;
- `zero`: a failed row counts as a score of 0 (rlkit's behaviour before this option).

Whatever the mode, a group left with fewer than 2 rows has no baseline (a group-relative
advantage of one row is its raw score) and leaves the loss as well.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rlkit.reward.options import ON_FAILURE
from rlkit.types import RewardStatus, ScoredSample

MIN_GROUP_ROWS = 2  # rows a group needs to give a baseline


@dataclass(frozen=True)
class TrainableRows:
    """Per-row verdict for one batch, in the batch's row order."""

    kept: Tensor  # [B] bool, rows in the group statistics and the loss
    scores: Tensor  # [B] float64, the score each kept row trains with (0 for the others)
    components: dict[str, Tensor]  # name -> [B] float64, reward components matching `scores`

    @property
    def excluded(self) -> int:
        """Rows left out of the loss, for any reason."""
        return int((~self.kept).sum())


def trainable_rows(scored: list[ScoredSample], on_failure: str = "exclude") -> TrainableRows:
    """Decide, row by row, whether it trains and with which score (see the module docstring)."""
    if on_failure not in ON_FAILURE:
        raise ValueError(f"on_failure={on_failure!r}: valid are {', '.join(ON_FAILURE)}")
    size = len(scored)
    kept = [False] * size
    scores = [0.0] * size
    source: list[int | None] = [None] * size  # the OK row whose components a row takes; None: 0
    groups: dict[str, list[int]] = {}
    for row, item in enumerate(scored):
        groups.setdefault(item.sample.group_uid, []).append(row)
    for rows in groups.values():
        ok = [row for row in rows if scored[row].reward.status == RewardStatus.OK]
        worst = min(ok, key=lambda row: scored[row].reward.score) if ok else None
        members = []
        for row in rows:
            status = scored[row].reward.status
            if status == RewardStatus.OK:
                members.append(row)
                scores[row], source[row] = scored[row].reward.score, row
            elif status == RewardStatus.NOT_APPLICABLE:
                continue
            elif on_failure == "zero":
                members.append(row)
            elif on_failure == "minimum" and worst is not None:
                members.append(row)
                scores[row], source[row] = scored[worst].reward.score, worst
        if len(members) >= MIN_GROUP_ROWS:
            for row in members:
                kept[row] = True
    # Each row's components are those of the row whose score it trains with (itself, or its
    # group's worst under `minimum`); a failed row kept with a score of 0 has none, so 0.
    trained_as = [scored[row] if source[row] is None else scored[source[row]] for row in range(size)]
    kept_rows = torch.tensor(kept, dtype=torch.bool)
    return TrainableRows(
        kept=kept_rows,
        scores=torch.tensor([scores[row] if kept[row] else 0.0 for row in range(size)], dtype=torch.float64),
        components={name: torch.where(kept_rows, values, 0.0) for name, values in reward_components(trained_as).items()},
    )


def reward_components(scored: list[ScoredSample]) -> dict[str, Tensor]:
    """Named reward components [B]. A sample whose scoring failed has none: it gets 0, as its
    score does; a scored sample that lacks a name others return gets NaN (estimators refuse it)."""
    names = sorted({name for item in scored for name in item.reward.components})

    def value(item: ScoredSample, name: str) -> float:
        missing = 0.0 if item.reward.status != RewardStatus.OK else float("nan")
        return float(item.reward.components.get(name, missing))

    return {name: torch.tensor([value(item, name) for item in scored], dtype=torch.float64) for name in names}
