"""Writing a generated task's rows: one JSON object per line, as rlkit.data reads them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable


def write_jsonl(rows: Iterable[dict[str, Any]], path: Path, ascii_only: bool = True) -> None:
    """Write `rows` to `path` (folders created). `ascii_only=False` keeps non-ASCII text as is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(row, ensure_ascii=ascii_only) + "\n" for row in rows)
    path.write_text(text, encoding="utf-8")
