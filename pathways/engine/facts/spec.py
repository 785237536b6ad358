"""What every fact group shares: the published entry of one fact, and the arithmetic of change."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, time
from typing import Any

from ..case import Lab


@dataclass(frozen=True)
class FactSpec:
    """One name rule editors may use in a condition or a rationale template."""

    name: str
    type: str
    unit: str
    description: str
    example: Any
    fields: tuple[FactSpec, ...] = ()  # for list<map>: the keys of each map
    unit_fact: str = ""  # the unit is the value of this other fact (bone ALP: mass or activity)


def pct_change(new: float, old: float) -> float | None:
    # Rounded so that exact boundaries (10 %, 25 %) compare as the clinician reads them.
    return None if old == 0 else round((new - old) / old * 100, 6)


def collection_order(lab: Lab) -> tuple[date, time]:
    # A result without a time of day sorts first on its date (stable: document order).
    return (lab.collected_on, lab.collected_time or time.min)


def is_recent(lab: Lab, as_of: date, window_days: float | None) -> bool:
    """spec §2: collected at most `window_days` before as_of (90 days old is recent). A rule set
    without the window (revision 1) treats every result as recent."""
    return window_days is None or (as_of - lab.collected_on).days <= window_days


def latest_recent(labs: Sequence[Lab], as_of: date, window_days: float | None) -> Lab | None:
    """The latest of `labs` (in collection order) if it is recent; an older one is history."""
    if not labs:
        return None
    latest = labs[-1]
    return latest if is_recent(latest, as_of, window_days) else None


def in_spec_order(specs: Sequence[FactSpec], values: dict[str, Any]) -> dict[str, Any]:
    """A group's values in the order of its published entries; a fact computed but not
    published, or published but not computed, is a programming error."""
    names = [spec.name for spec in specs]
    if set(names) != set(values):
        raise KeyError(f"facts and their entries differ: {sorted(set(names) ^ set(values))}")
    return {name: values[name] for name in names}
