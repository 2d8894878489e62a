"""Name → implementation registries: the only dispatch path for pluggable parts."""

from __future__ import annotations

import difflib
from typing import Generic, TypeVar
from collections.abc import Callable

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A registry lookup failed; the message lists valid names and the closest match."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0])


def did_you_mean(name: str, choices: list[str]) -> str:
    """' (did you mean "x"?)' for the closest choice, or '' if none is close."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f' (did you mean "{close[0]}"?)' if close else ""


class Registry(Generic[T]):
    """A named table of implementations. `@registry.register("name")` adds one."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            return item

        return add

    def get(self, name: str) -> T:
        if name not in self._items:
            raise UnknownNameError(self.unknown_message(name))
        return self._items[name]

    def unknown_message(self, name: str) -> str:
        return (
            f"unknown {self.kind} {name!r}{did_you_mean(name, self.names())}; "
            f"valid: {', '.join(self.names())}"
        )

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
