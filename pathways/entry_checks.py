"""Values typed by hand that need a confirmation (reference-intervals.md, the last table).

Typing errors and unit mix-ups (210 typed with µkat/L is 12,600 U/L) are caught by asking the
person entering a value outside these bounds to confirm it before it is saved. They are entry
checks, not clinical thresholds: a confirmed value is stored and assessed like any other.
Results from the lab feed (or FHIR) are never held back by them; the patient page flags them.
Bounds are in the test's canonical unit (a bone ALP activity result has none: the table gives
bounds for the mass assay only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from pathways import engine
from pathways.engine.declaration import CaseField


@dataclass(frozen=True)
class Bounds:
    below: float | None  # confirm a value below this
    above: float | None  # confirm a value above this
    unit: str  # the canonical unit the bounds are in


# reference-intervals.md, "Values typed by hand that need a confirmation".
LAB_BOUNDS: Final[dict[str, Bounds]] = {
    "alp": Bounds(None, 3000, "U/L"),
    "bone_alp": Bounds(None, 300, "ug/L"),  # mass; activity results have no bound
    "ggt": Bounds(None, 2000, "U/L"),
    "alt": Bounds(None, 3000, "U/L"),
    "ctx": Bounds(None, 5000, "ng/L"),
    "creatinine": Bounds(0.2, 15, "mg/dL"),
    "crcl": Bounds(5, 200, "mL/min"),
    "calcium": Bounds(5, 16, "mg/dL"),
    "albumin": Bounds(1.5, 6, "g/dL"),
    "phosphate": Bounds(1, 10, "mg/dL"),
    "pth": Bounds(None, 2000, "pg/mL"),
    "vitamin_d": Bounds(None, 150, "ng/mL"),
    "bilirubin": Bounds(None, 30, "mg/dL"),
}
WEIGHT_BOUNDS: Final = Bounds(2, 300, "kg")


def _outside(value: float, bounds: Bounds, what: str) -> str | None:
    if bounds.below is not None and value < bounds.below:
        side, bound = "below", bounds.below
    elif bounds.above is not None and value > bounds.above:
        side, bound = "above", bounds.above
    else:
        return None
    return (
        f"{value:,.6g} {bounds.unit} is {side} {bound:,g} {bounds.unit}, unusual for {what}: "
        "check the value and its unit, then confirm it to save it"
    )


def within_declared_bounds(item: CaseField, value: float) -> bool:
    """Whether the case can hold ``value`` in the declared field ``item``: a finite number
    within its declared bounds (engine/declaration.py). A value outside them is refused with its
    own error whatever is confirmed, so it is never offered for a confirmation."""
    if not math.isfinite(value):
        return False
    return not (
        (item.minimum is not None and value < item.minimum)
        or (item.above is not None and value <= item.above)
        or (item.maximum is not None and value > item.maximum)
        or (item.below is not None and not value < item.below)
    )


def unusual_lab(test: str, value: float, unit: str) -> str | None:
    """Why a result of ``test`` (``value`` in ``unit``, a valid unit of the test) needs a
    confirmation before it is saved; None when it needs none."""
    bounds = LAB_BOUNDS.get(test)
    if bounds is None:
        return None
    canonical, canonical_unit = engine.to_canonical(test, unit, value)
    if canonical_unit != bounds.unit:
        return None  # bone ALP activity: no bound
    label = next((item.label for item in engine.LAB_TESTS if item.code == test), test)
    return _outside(canonical, bounds, f"a typed {label}")


def unusual_weight(weight_kg: float | None) -> str | None:
    if weight_kg is None:
        return None
    return _outside(weight_kg, WEIGHT_BOUNDS, "a weight")
