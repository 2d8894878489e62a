"""The RISE reward (ALGORITHMS.md §9.1, §9.3): one function for both kinds of trajectory.

- A solution (any data_source but "rise_verification"): 1.0 when its last \\boxed{} answer equals
  the ground truth, −0.5 when it has a boxed answer that is wrong, −1.0 when it has none.
- A verification response (data_source "rise_verification", ground truth "1.0", "-0.5" or
  "-1.0": the verifier's score of the solution it grades): 1.0 when its boxed rating equals that
  score (as math: `\\frac{-1}{2}` is −0.5), −0.5 when it differs, −1.0 when it gives no boxed rating.
"""

from __future__ import annotations

from typing import Any

from rewards.math_answer import answers_match, last_boxed
from rlkit.rise import CORRECT, NO_ANSWER, VERIFICATION_SOURCE, WRONG  # the scale the trainer's critique prompts use



def score(*, response: str, ground_truth: str | None, data_source: str = "default", **kwargs: Any) -> dict[str, float] | None:
    if ground_truth is None:
        return None
    boxed = last_boxed(response)
    if boxed is None:
        value = NO_ANSWER
    elif data_source == VERIFICATION_SOURCE:
        value = CORRECT if _same_rating(boxed, ground_truth) else WRONG
    else:
        value = CORRECT if answers_match(boxed, ground_truth) else WRONG
    return {"score": value, "correct": float(value == CORRECT), "boxed": float(boxed is not None)}


def _same_rating(rating: str, expected: str) -> bool:
    """Whether a boxed rating states the expected score, compared as math like the paper's
    math_equal (`-\\frac12`, `-1/2` and `-0.50` all rate −0.5), not by float(), which reads a
    LaTeX rating as no rating at all."""
    return answers_match(rating, expected)
