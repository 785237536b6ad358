"""Myeloma: the clinician's assessment as entered, and ALP around the start of bortezomib
(S3 5: a rise by day 42 suggests bone healing, not progression)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Final

from ..case import Myeloma
from ..vocabulary import BORTEZOMIB_WINDOW_DAYS
from .alp import AlpPoint
from .spec import FactSpec as _F
from .spec import in_spec_order, pct_change

SPECS: Final[tuple[_F, ...]] = (
    _F("mm_requires_therapy", "bool", "", "myeloma requires therapy", True),
    _F("mm_bone_disease", "bool", "", "lytic lesions", True),
    _F("mm_active_bone_disease", "bool", "", "active bone disease", False),
    _F("mm_response", "string", "", "CR, VGPR, PR, SD, PD or null", "VGPR"),
    _F("mm_treatment_start", "date", "", "myeloma treatment start", "2026-01-05"),
    _F("mm_bortezomib_start", "date", "", "bortezomib start", "2026-01-05"),
    _F(
        "mm_whole_body_imaging_done",
        "bool",
        "",
        "whole-body low-dose CT, PET-CT or whole-body MRI done",
        False,
    ),
    _F(
        "in_bortezomib_window",
        "bool",
        "",
        "multiple_myeloma, bortezomib start set, and the latest ALP collected in (start, start + "
        "42 days]",
        False,
    ),
    _F("mm_baseline_alp", "double", "U/L", "the last ALP on or before mm_bortezomib_start", 80.0),
    _F("mm_baseline_alp_date", "date", "", "date of mm_baseline_alp", "2026-01-02"),
    _F(
        "mm_alp_day42_max",
        "double",
        "U/L",
        "highest ALP in (bortezomib start, bortezomib start + 42 days]",
        104.0,
    ),
    _F("mm_alp_day42_date", "date", "", "date of mm_alp_day42_max", "2026-02-10"),
    _F(
        "mm_alp_rise_day42_pct",
        "double",
        "%",
        "mm_alp_day42_max above mm_baseline_alp, % of the baseline",
        30.0,
    ),
)


def myeloma_facts(
    myeloma: Myeloma, points: Sequence[AlpPoint], *, multiple_myeloma: bool = False
) -> dict[str, Any]:
    bortezomib_start = myeloma.bortezomib_start
    baseline: AlpPoint | None = None
    peak: AlpPoint | None = None
    if bortezomib_start is not None:
        window_end = bortezomib_start + timedelta(days=BORTEZOMIB_WINDOW_DAYS)
        for point in points:
            if point.collected_on <= bortezomib_start:
                baseline = point
            elif point.collected_on <= window_end and (peak is None or point.value > peak.value):
                peak = point
    in_window = False
    if multiple_myeloma and bortezomib_start is not None and points:
        latest_on = points[-1].collected_on
        window_end = bortezomib_start + timedelta(days=BORTEZOMIB_WINDOW_DAYS)
        in_window = bortezomib_start < latest_on <= window_end
    rise = None
    if baseline is not None and peak is not None:
        rise = pct_change(peak.value, baseline.value)
    return in_spec_order(
        SPECS,
        {
            "mm_requires_therapy": myeloma.requires_therapy,
            "mm_bone_disease": myeloma.bone_disease,
            "mm_active_bone_disease": myeloma.active_bone_disease,
            "mm_response": myeloma.response,
            "mm_treatment_start": myeloma.treatment_start,
            "mm_bortezomib_start": bortezomib_start,
            "mm_whole_body_imaging_done": myeloma.whole_body_imaging_done,
            "in_bortezomib_window": in_window,
            "mm_baseline_alp": baseline.value if baseline else None,
            "mm_baseline_alp_date": baseline.collected_on if baseline else None,
            "mm_alp_day42_max": peak.value if peak else None,
            "mm_alp_day42_date": peak.collected_on if peak else None,
            "mm_alp_rise_day42_pct": rise,
        },
    )
