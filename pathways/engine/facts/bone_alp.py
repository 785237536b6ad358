"""Bone ALP: the latest bone-specific result against the lab's reference_high, else the built-in
band for age, sex and menopause at its collection (reference-intervals.md). A rule set without
bone ALP bands (revision 1) uses its single mass default, params.bone_alp_mass_uln."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from ..case import Lab, PatientInfo
from ..ruleset import UlnBand
from .reference import is_postmenopausal, lab_limits
from .spec import FactSpec as _F
from .spec import in_spec_order

SPECS: Final[tuple[_F, ...]] = (
    _F("bone_alp", "string", "", "elevated, normal or unknown (not measured)", "unknown"),
    _F("bone_alp_latest", "double", "", "the latest bone ALP", 35.0, unit_fact="bone_alp_unit"),
    _F("bone_alp_unit", "string", "", "ug/L (mass) or U/L (activity)", "ug/L"),
    _F("bone_alp_uln", "double", "", "ULN for bone_alp_latest", 20.0, unit_fact="bone_alp_unit"),
    _F(
        "bone_alp_uln_source",
        "string",
        "",
        'lab or "built-in: <band>" (age, sex and menopause at collection)',
        "built-in: female, postmenopausal ≥ 18 y",
    ),
)


def bone_alp_facts(
    labs: Sequence[Lab],
    patient: PatientInfo,
    bands: Sequence[UlnBand],
    *,
    mass_uln: float | None,
    menopause_age: float,
) -> dict[str, Any]:
    """`labs`: the bone ALP results in collection order (the whole history counts, spec §2)."""
    if not labs:
        return {
            "bone_alp": "unknown",
            "bone_alp_latest": None,
            "bone_alp_unit": None,
            "bone_alp_uln": None,
            "bone_alp_uln_source": None,
        }
    latest = labs[-1]
    bone_bands = [band for band in bands if band.test == "bone_alp"]
    uln, source = latest.canonical_reference_high, None
    if uln is not None:
        source = "lab"
    elif latest.canonical_unit == "ug/L":  # activity (U/L) has no built-in interval (spec §1)
        if bone_bands:
            limits = lab_limits(
                latest,
                bone_bands,
                patient,
                postmenopausal=is_postmenopausal(patient, latest.collected_on, menopause_age),
            )
            uln, source = limits.uln, limits.source
        elif mass_uln is not None:
            uln, source = mass_uln, "built-in"
    elevated = uln is not None and latest.canonical_value > uln
    return in_spec_order(
        SPECS,
        {
            "bone_alp": "elevated" if elevated else "normal",  # spec §2: measured, not elevated
            "bone_alp_latest": latest.canonical_value,
            "bone_alp_unit": latest.canonical_unit,
            "bone_alp_uln": uln,
            "bone_alp_uln_source": source,
        },
    )
