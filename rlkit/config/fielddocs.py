"""Field docstrings of config dataclasses, read from the source (the string under each field).

They feed `rlkit show-config --docs` and docs/config.md, so the docs cannot drift from code.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing
from functools import cache
from typing import Any
from collections.abc import Iterator


@cache
def field_docs(cls: type) -> dict[str, str]:
    """{field name: docstring} for one dataclass."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    body = ast.parse(source).body[0].body
    docs: dict[str, str] = {}
    for node, following in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if (isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                    and isinstance(following.value.value, str)):
                docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def walk_fields(cls: type, prefix: str = "") -> Iterator[tuple[str, Any, str, Any]]:
    """Yield (dotted key, type, docstring, default) for every leaf field of a nested dataclass."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    instance = cls()
    for spec in dataclasses.fields(cls):
        kind = hints[spec.name]
        key = f"{prefix}{spec.name}"
        if dataclasses.is_dataclass(kind):
            yield from walk_fields(kind, key + ".")
        else:
            yield key, kind, docs.get(spec.name, ""), getattr(instance, spec.name)
