"""A toy reward for smoke runs with the untrained tiny model: the share of the response's
characters that are `TARGET` ("7").

It gives a dense signal in [0, 1] from the first step, so a few seconds of training show
whether a method moves the policy at all. Not a task anyone should care about.
"""

from __future__ import annotations


TARGET = "7"


def score(*, response: str, **_: object) -> float:
    """Fraction of `response` that is TARGET (0 for an empty response)."""
    return response.count(TARGET) / max(1, len(response))
