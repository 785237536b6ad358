"""What every fact group shares: the published entry of one fact, and the arithmetic of change."""

from __future__ import annotations

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
