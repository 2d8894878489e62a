"""Outcome reward for search-style QA (the `retrieval_qa` environment): exact match of the answer.

1.0 when the last `<answer>…</answer>` of the model's text equals the ground truth after SQuAD-
style normalization (lower case; punctuation, the articles a/an/the and extra whitespace
removed), else 0.0; None when the row has no ground truth. This is Search-R1's outcome reward.

Observations (`<information>…</information>`) are cut out first, so a retrieved document can
neither supply an answer nor count as a search. There is no format or search bonus in the score:
`answered` and `searches` are components for monitoring (is the policy still answering, is it
still searching?), which is the collapse LLDS studies.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from rlkit.tags import count_tagged, last_tagged

_ARTICLES = re.compile(r"\b(a|an|the)\b")


def score(*, response: str, ground_truth: str | None, **kwargs: Any) -> dict[str, float] | None:
    """{"score", "answered", "searches"} for one episode; None when there is no ground truth."""
    if ground_truth is None:
        return None
    own = strip_information(response)
    answer = last_tagged(own, "answer")
    correct = answer is not None and normalize(answer) == normalize(ground_truth)
    return {"score": float(correct), "answered": float(answer is not None), "searches": float(count_tagged(own, "search"))}


def normalize(text: str) -> str:
    """Lower case, punctuation (Unicode too) deleted so "12,400" equals "12400", no articles, single spaces."""
    lowered = text.lower()
    kept = "".join(ch for ch in lowered if not unicodedata.category(ch).startswith("P"))
    return " ".join(_ARTICLES.sub(" ", kept).split())


def strip_information(text: str) -> str:
    """`text` without its `<information>…</information>` blocks (an unclosed one runs to the end)."""
    parts, position = [], 0
    while True:
        start = text.find("<information>", position)
        if start < 0:
            parts.append(text[position:])
            return "".join(parts)
        parts.append(text[position:start])
        end = text.find("</information>", start)
        if end < 0:
            return "".join(parts)
        position = end + len("</information>")
