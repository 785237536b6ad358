"""Bone ALP and the source of an elevated ALP: the latest bone-specific result against the lab's
reference_high, else the mass default (reference-intervals.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from ..case import Lab
from .spec import FactSpec as _F

SPECS: Final[tuple[_F, ...]] = (
    _F("bone_alp", "string", "", "elevated, normal or unknown (not measured)", "unknown"),
    _F("bone_alp_latest", "double", "", "the latest bone ALP", 35.0, unit_fact="bone_alp_unit"),
    _F("bone_alp_unit", "string", "", "ug/L (mass) or U/L (activity)", "ug/L"),
    _F("bone_alp_uln", "double", "", "ULN for bone_alp_latest", 20.0, unit_fact="bone_alp_unit"),
)


def bone_alp_facts(labs: Sequence[Lab], mass_uln: float) -> dict[str, Any]:
    """`labs`: the bone ALP results in collection order; `mass_uln`: params.bone_alp_mass_uln."""
    if not labs:
        return {
            "bone_alp": "unknown",
            "bone_alp_latest": None,
            "bone_alp_unit": None,
            "bone_alp_uln": None,
        }
    latest = labs[-1]
    uln = latest.canonical_reference_high
    if uln is None and latest.canonical_unit == "ug/L":
        uln = mass_uln  # activity (U/L) has no built-in interval (spec §1)
    elevated = uln is not None and latest.canonical_value > uln
    return {
        "bone_alp": "elevated" if elevated else "normal",
        "bone_alp_latest": latest.canonical_value,
        "bone_alp_unit": latest.canonical_unit,
        "bone_alp_uln": uln,
    }
