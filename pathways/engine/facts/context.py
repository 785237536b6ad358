"""Clinical context: the diagnoses, symptoms and imaging as entered, and whether they explain
an elevated ALP (spec §2)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, time
from operator import attrgetter
from typing import Any, Final

from ..case import Clinical, Lab
from .metabolic import METABOLIC_BONE_DIAGNOSES
from .spec import FactSpec as _F
from .spec import in_spec_order

CURRENT_FRACTURES = frozenset({"pathological", "impending"})

# spec §2: diagnoses (or a fracture) that explain an elevated ALP.
ETIOLOGY_DIAGNOSES = frozenset(
    {
        "paget",
        "bone_metastases",
        "primary_bone_tumour",
        *METABOLIC_BONE_DIAGNOSES,
        "liver_disease",
        "sepsis",
        "hiv_aids",
    }
)

# Facts that are the clinical field of the same name, as entered.
_AS_ENTERED_SPECS = (
    _F("cancer", "string", "", "known solid cancer or null", "breast"),
    _F("cancer_treated", "bool", "", "the cancer has been treated", False),
    _F("bone_pain", "bool", "", "bone pain", False),
    _F("osteolytic_pain", "bool", "", "pain due to osteolytic disease", False),
    _F("bone_scan", "string", "", "not_done, normal, focal_lesions or diffuse", "not_done"),
    _F("fracture", "string", "", "none, healing, pathological or impending", "none"),
    _F("dental_exam_done", "bool", "", "dental examination done", False),
)
_AS_ENTERED = tuple(spec.name for spec in _AS_ENTERED_SPECS)
_read_as_entered = attrgetter(*_AS_ENTERED)

SPECS: Final[tuple[_F, ...]] = (
    _F("diagnoses", "list<string>", "", "clinical.diagnoses", ["paget"]),
    *_AS_ENTERED_SPECS,
    _F(
        "etiology_established",
        "bool",
        "",
        "an explaining diagnosis (paget, bone_metastases, …) or a fracture",
        True,
    ),
    _F("fracture_date", "date", "", "clinical.fracture_date (null: unknown)", "2026-10-20"),
    _F(
        "fracture_current",
        "bool",
        "",
        "fracture pathological or impending, and fracture_date unknown or within "
        "params.recent_lab_days",
        False,
    ),
    _F(
        "ctx_latest_time",
        "string",
        "",
        "time of day of the latest CTX (HH:MM), null if unknown",
        "11:30",
    ),
    _F(
        "ctx_timing",
        "bool",
        "",
        "latest CTX drawn at a known time ≥ params.ctx_late_hour, or two timed CTX more than "
        "params.ctx_time_spread_hours apart in time of day",
        True,
    ),
)


def clinical_context_facts(
    clinical: Clinical,
    as_of: date | None = None,
    *,
    recent_days: float | None = None,
    ctx_labs: Sequence[Lab] = (),
    params: dict[str, float] | None = None,
) -> dict[str, Any]:
    diagnoses = clinical.diagnoses
    values: dict[str, Any] = {"diagnoses": list(diagnoses)}
    values.update(zip(_AS_ENTERED, _read_as_entered(clinical), strict=True))
    values["etiology_established"] = (
        clinical.fracture != "none" or not ETIOLOGY_DIAGNOSES.isdisjoint(diagnoses)
    )
    fracture_date = clinical.fracture_date
    values["fracture_date"] = fracture_date
    values["fracture_current"] = clinical.fracture in CURRENT_FRACTURES and (
        fracture_date is None
        or recent_days is None
        or as_of is None
        or (as_of - fracture_date).days <= recent_days
    )
    values.update(ctx_timing_facts(ctx_labs, params or {}))
    return in_spec_order(SPECS, values)


def _seconds(at: time) -> int:
    return at.hour * 3600 + at.minute * 60 + at.second


def ctx_timing_facts(ctx_labs: Sequence[Lab], params: dict[str, float]) -> dict[str, Any]:
    """spec §2 CTX timing; `ctx_labs` in collection order (the whole history)."""
    latest = ctx_labs[-1] if ctx_labs else None
    latest_time = latest.collected_time if latest else None
    timed = [_seconds(lab.collected_time) for lab in ctx_labs if lab.collected_time is not None]
    late = latest_time is not None and _seconds(latest_time) >= params["ctx_late_hour"] * 3600
    spread = len(timed) >= 2 and max(timed) - min(timed) > params["ctx_time_spread_hours"] * 3600
    return {
        "ctx_latest_time": None
        if latest_time is None
        else f"{latest_time.hour:02d}:{latest_time.minute:02d}",
        "ctx_timing": late or spread,
    }
