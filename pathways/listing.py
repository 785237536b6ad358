"""A list cut short for reading says how many more there are: never cut in silence."""

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def listed(items: Sequence[T], limit: int, more: Callable[[int], T]) -> list[T]:
    """The first ``limit`` items, then ``more(n)`` for the ``n`` left out (none: all of them)."""
    if len(items) <= limit:
        return list(items)
    return [*items[:limit], more(len(items) - limit)]
