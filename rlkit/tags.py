"""Reading `<tag>…</tag>` blocks out of model text, shared by rewards and environments.

Plain `str.find`/`rfind` keep every reader linear in the text's length (no regex backtracking
on hostile output), and "last complete block" is found from the last closing tag, so a stray
opening tag earlier in the text cannot swallow a later, complete block.
"""

from __future__ import annotations


def last_tagged_span(text: str, tag: str) -> tuple[int, int] | None:
    """(start, end) of the content of the last complete `<tag>…</tag>`, or None."""
    end = text.rfind(f"</{tag}>")
    if end < 0:
        return None
    start = text.rfind(f"<{tag}>", 0, end)
    return None if start < 0 else (start + len(tag) + 2, end)


def last_tagged(text: str, tag: str) -> str | None:
    """Content of the last complete `<tag>…</tag>`, or None."""
    span = last_tagged_span(text, tag)
    return None if span is None else text[span[0] : span[1]]


def first_tagged(text: str, tag: str) -> str | None:
    """Content between the first `<tag>` and the next `</tag>`, or None."""
    start = text.find(f"<{tag}>")
    if start < 0:
        return None
    end = text.find(f"</{tag}>", start + len(tag) + 2)
    return None if end < 0 else text[start + len(tag) + 2 : end]


def count_tagged(text: str, tag: str) -> int:
    """Number of complete, non-overlapping `<tag>…</tag>` pairs, read left to right."""
    count, position = 0, 0
    while True:
        start = text.find(f"<{tag}>", position)
        if start < 0:
            return count
        end = text.find(f"</{tag}>", start)
        if end < 0:
            return count
        count += 1
        position = end + len(tag) + 3
