"""Math reward for calculator episodes: the built-in math reward on the model's own words.

The transcript holds the calculator's `<result>…</result>` observations; they are removed first,
so the lenient fallback (the last number) can only find a number the model wrote itself.
"""

from __future__ import annotations

import re
from typing import Any

from rewards.math_answer import score as math_score

OBSERVATION = re.compile(r"<result>.*?</result>", re.DOTALL)


def score(*, response: str, ground_truth: str | None, **kwargs: Any) -> dict[str, float] | None:
    """1.0 when the model's final answer (last \\boxed{}, else its last number) is correct."""
    return math_score(response=OBSERVATION.sub(" ", response), ground_truth=ground_truth)
