"""Calcium (corrected for albumin), vitamin D, phosphate and PTH, and metabolic bone disease
(spec §2). Each reads the latest recent result; calcium, phosphate and PTH are judged against the
lab's limits, else the adult bands (children: the lab's limits only, else unknown). Vitamin D
deficiency and "PTH not suppressed" are thresholds, not intervals: they apply to children too.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, Final

from ..case import Clinical, Lab, PatientInfo
from ..ruleset import UlnBand
from .reference import lab_limits
from .spec import FactSpec as _F
from .spec import collection_order, in_spec_order, latest_recent

METABOLIC_BONE_DIAGNOSES = frozenset(
    {"osteomalacia", "hyperparathyroidism", "vitamin_d_deficiency"}
)
# spec §2: "+ 0.8 x (4.0 - albumin g/dL)", with an albumin collected within 7 days of the calcium.
ALBUMIN_WINDOW_DAYS = 7
ALBUMIN_CORRECTION_FACTOR = 0.8
ALBUMIN_REFERENCE_G_DL = 4.0

SPECS: Final[tuple[_F, ...]] = (
    _F(
        "metabolic_bone_disease",
        "bool",
        "",
        "osteomalacia, hyperparathyroidism or vitamin_d_deficiency",
        False,
    ),
    _F("calcium_latest", "double", "mg/dL", "the latest recent total calcium", 10.8),
    _F("calcium_date", "date", "", "collection date of calcium_latest", "2026-11-01"),
    _F(
        "calcium_albumin",
        "double",
        "g/dL",
        "the recent albumin within 7 days of calcium_latest (the closest) used to correct it",
        3.2,
    ),
    _F(
        "calcium_corrected",
        "double",
        "mg/dL",
        "calcium_latest + 0.8 x (4.0 - calcium_albumin); calcium_latest when no albumin qualifies",
        11.44,
    ),
    _F(
        "calcium_uln",
        "double",
        "mg/dL",
        "calcium ULN (lab, else by age: 10.0 / 10.2 from 60)",
        10.2,
    ),
    _F("calcium_lln", "double", "mg/dL", "calcium LLN (lab, else by age: 8.6 / 8.8 from 60)", 8.8),
    _F("hypercalcaemia", "bool", "", "calcium_corrected > calcium_uln", True),
    _F(
        "hypercalcaemia_urgent",
        "bool",
        "",
        "hypercalcaemia and calcium_corrected ≥ params.urgent_hypercalcaemia_mg_dl",
        False,
    ),
    _F("hypocalcaemia", "bool", "", "calcium_corrected < calcium_lln", False),
    _F("vitamin_d_latest", "double", "ng/mL", "the latest recent 25-OH vitamin D", 14.0),
    _F(
        "vitamin_d_deficient",
        "bool",
        "",
        "vitamin_d_latest < params.vitamin_d_deficient_ng_ml",
        True,
    ),
    _F("phosphate_latest", "double", "mg/dL", "the latest recent phosphate", 2.1),
    _F("phosphate_lln", "double", "mg/dL", "phosphate LLN (lab, else adult 2.5)", 2.5),
    _F("phosphate_low", "bool", "", "phosphate_latest < phosphate_lln", True),
    _F("pth_latest", "double", "pg/mL", "the latest recent intact PTH", 88.0),
    _F("pth_uln", "double", "pg/mL", "PTH ULN (lab, else adult 65)", 65.0),
    _F("pth_elevated", "bool", "", "pth_latest > pth_uln", True),
    _F(
        "pth_not_suppressed",
        "bool",
        "",
        "pth_latest ≥ params.pth_not_suppressed_pg_ml",
        True,
    ),
    _F(
        "bone_liver_tests_abnormal",
        "bool",
        "",
        "any of hypocalcaemia, hypercalcaemia, phosphate_low, pth_elevated, vitamin_d_deficient, "
        "ggt or alt elevated, bilirubin_elevated (tests not done do not count)",
        False,
    ),
)


def _instant(lab: Lab) -> datetime:
    return datetime.combine(*collection_order(lab))


def correcting_albumin(calcium: Lab, albumins: Sequence[Lab]) -> Lab | None:
    """The albumin collected within 7 days of the calcium, before or after, closest first
    (days apart by date; among equals the closest in time, then the later)."""
    candidates = [
        lab
        for lab in albumins
        if abs((lab.collected_on - calcium.collected_on).days) <= ALBUMIN_WINDOW_DAYS
    ]
    if not candidates:
        return None
    return min(
        candidates,
        key=lambda lab: (
            abs((lab.collected_on - calcium.collected_on).days),
            abs((_instant(lab) - _instant(calcium)).total_seconds()),
            -(_instant(lab) - datetime.min).total_seconds(),
        ),
    )


def metabolic_facts(
    clinical: Clinical,
    labs_by_test: dict[str, list[Lab]] | None = None,
    patient: PatientInfo | None = None,
    bands: Sequence[UlnBand] = (),
    *,
    as_of: date | None = None,
    recent_days: float | None = None,
    params: dict[str, float] | None = None,
    liver: dict[str, Any] | None = None,
) -> dict[str, Any]:
    labs_by_test = labs_by_test or {}
    params = params or {}  # the engine's parameters, defaults filled in (facts.ENGINE_DEFAULTS)
    values: dict[str, Any] = {
        "metabolic_bone_disease": not METABOLIC_BONE_DIAGNOSES.isdisjoint(clinical.diagnoses),
    }

    def latest(test: str) -> Lab | None:
        if as_of is None:
            return None
        return latest_recent(labs_by_test.get(test, []), as_of, recent_days)

    def limits(lab: Lab | None) -> tuple[float | None, float | None]:
        if lab is None or patient is None:
            return None, None
        found = lab_limits(lab, bands, patient)
        return found.lln, found.uln

    # Calcium, corrected with a recent albumin (spec §2).
    calcium = latest("calcium")
    albumin = None
    if calcium is not None and as_of is not None:
        recent_albumins = [
            lab
            for lab in labs_by_test.get("albumin", [])
            if latest_recent([lab], as_of, recent_days) is not None
        ]
        albumin = correcting_albumin(calcium, recent_albumins)
    corrected = None
    if calcium is not None:
        corrected = calcium.canonical_value
        if albumin is not None:
            corrected = round(
                corrected
                + ALBUMIN_CORRECTION_FACTOR * (ALBUMIN_REFERENCE_G_DL - albumin.canonical_value),
                6,
            )
    calcium_lln, calcium_uln = limits(calcium)
    hyper = corrected is not None and calcium_uln is not None and corrected > calcium_uln
    values.update(
        calcium_latest=None if calcium is None else calcium.canonical_value,
        calcium_date=None if calcium is None else calcium.collected_on,
        calcium_albumin=None if albumin is None else albumin.canonical_value,
        calcium_corrected=corrected,
        calcium_uln=calcium_uln,
        calcium_lln=calcium_lln,
        hypercalcaemia=hyper,
        hypercalcaemia_urgent=hyper
        and corrected is not None
        and corrected >= params["urgent_hypercalcaemia_mg_dl"],
        hypocalcaemia=corrected is not None and calcium_lln is not None and corrected < calcium_lln,
    )

    vitamin_d = latest("vitamin_d")
    values["vitamin_d_latest"] = None if vitamin_d is None else vitamin_d.canonical_value
    values["vitamin_d_deficient"] = (
        vitamin_d is not None and vitamin_d.canonical_value < params["vitamin_d_deficient_ng_ml"]
    )
    phosphate = latest("phosphate")
    phosphate_lln, _ = limits(phosphate)
    values["phosphate_latest"] = None if phosphate is None else phosphate.canonical_value
    values["phosphate_lln"] = phosphate_lln
    values["phosphate_low"] = (
        phosphate is not None
        and phosphate_lln is not None
        and phosphate.canonical_value < phosphate_lln
    )
    pth = latest("pth")
    _, pth_uln = limits(pth)
    values["pth_latest"] = None if pth is None else pth.canonical_value
    values["pth_uln"] = pth_uln
    values["pth_elevated"] = (
        pth is not None and pth_uln is not None and pth.canonical_value > pth_uln
    )
    values["pth_not_suppressed"] = pth is not None and pth.canonical_value >= params.get(
        "pth_not_suppressed_pg_ml", 20.0
    )
    liver = liver or {}
    values["bone_liver_tests_abnormal"] = (
        values["hypocalcaemia"]
        or values["hypercalcaemia"]
        or values["phosphate_low"]
        or values["pth_elevated"]
        or values["vitamin_d_deficient"]
        or liver.get("ggt") == "elevated"
        or liver.get("alt") == "elevated"
        or bool(liver.get("bilirubin_elevated"))
    )
    return in_spec_order(SPECS, values)
