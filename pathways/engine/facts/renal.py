"""Renal function: current and baseline CrCl (measured, else Cockcroft-Gault), deterioration on
an IV bisphosphonate, and the zoledronic acid dose for the current CrCl (spec §2)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, time
from typing import Any, Final

from ..case import Case, Lab
from ..dates import age_in_years
from ..ruleset import DoseBand
from .spec import FactSpec as _F
from .spec import collection_order, in_spec_order, latest_recent, pct_change

COCKCROFT_GAULT_FEMALE_FACTOR = 0.85  # spec §2, Cockcroft-Gault
COCKCROFT_GAULT_MIN_AGE = 18  # spec §2: Cockcroft-Gault is not valid in children
CRCL_METHODS = ("measured", "cockcroft-gault", "unknown")

SPECS: Final[tuple[_F, ...]] = (
    _F(
        "crcl_current",
        "double",
        "mL/min",
        "latest recent measured CrCl, else Cockcroft-Gault (age ≥ 18) from the latest recent "
        "creatinine",
        45.0,
    ),
    _F("crcl_method", "string", "", "measured, cockcroft-gault or unknown", "cockcroft-gault"),
    _F("crcl_creatinine", "double", "mg/dL", "creatinine used by Cockcroft-Gault", 1.4),
    _F("crcl_weight_kg", "double", "kg", "weight used by Cockcroft-Gault", 64.0),
    _F("renal_function_unknown", "bool", "", "crcl_current unknown", False),
    _F("crcl_current_source", "string", "", "measured or cockcroft_gault", "measured"),
    _F("crcl_current_date", "date", "", "date of the result behind crcl_current", "2026-11-01"),
    _F("creatinine_latest", "double", "mg/dL", "the latest recent creatinine", 1.1),
    _F("creatinine_latest_date", "date", "", "collection date of creatinine_latest", "2026-11-01"),
    _F(
        "creatinine_baseline",
        "double",
        "mg/dL",
        "clinical.creatinine_baseline, else the last creatinine on or before the current IV "
        "bisphosphonate's start",
        1.0,
    ),
    _F("creatinine_baseline_source", "string", "", "clinical or measured", "measured"),
    _F(
        "creatinine_rise_mg_dl",
        "double",
        "mg/dL",
        "creatinine_latest - creatinine_baseline",
        0.6,
    ),
    _F(
        "creatinine_rise",
        "bool",
        "",
        "on IV bisphosphonate and creatinine_rise_mg_dl ≥ params.creatinine_rise_low_mg_dl "
        "(baseline < params.creatinine_rise_baseline_mg_dl) or ≥ "
        "params.creatinine_rise_high_mg_dl (baseline at or above it)",
        True,
    ),
    _F(
        "crcl_baseline",
        "double",
        "mL/min",
        "clinical.crcl_baseline, else the last CrCl on or before the IV bisphosphonate start",
        70.0,
    ),
    _F("crcl_baseline_source", "string", "", "clinical, measured or cockcroft_gault", "clinical"),
    _F("crcl_baseline_date", "date", "", "date of the result behind crcl_baseline", "2025-09-01"),
    _F(
        "crcl_change_from_baseline_pct",
        "double",
        "%",
        "crcl_current vs crcl_baseline, % of baseline (negative: lower)",
        -12.5,
    ),
    _F(
        "renal_impairment",
        "bool",
        "",
        "crcl_current < params.renal_impairment_crcl; or, when crcl_current is unknown, CKD",
        True,
    ),
    _F(
        "ckd_mbd_possible",
        "bool",
        "",
        "chronic_kidney_disease or crcl_current < params.ckd_mbd_crcl",
        False,
    ),
    _F(
        "renal_deterioration",
        "bool",
        "",
        "on IV bisphosphonate and crcl_current more than params.renal_deterioration_pct below "
        "crcl_baseline",
        False,
    ),
    _F("za_dose_mg", "double", "mg", "zoledronic acid dose for crcl_current (label table)", 3.3),
    _F("za_dose", "string", "", 'za_dose_mg as text, or "not recommended"', "3.3 mg"),
    _F(
        "za_dosing_crcl",
        "double",
        "mL/min",
        "on zoledronic acid: crcl_baseline (when known), else crcl_current",
        52.0,
    ),
    _F("za_dosing_dose_mg", "double", "mg", "zoledronic acid dose for za_dosing_crcl", 3.5),
    _F("za_dosing_dose", "string", "", 'za_dosing_dose_mg as text, or "not recommended"', "3.5 mg"),
)


def cockcroft_gault(age_years: int, weight_kg: float, creatinine_mg_dl: float, sex: str) -> float:
    """(140 - age) * weight / (72 * creatinine mg/dL), * 0.85 for women (spec §2)."""
    crcl = (140 - age_years) * weight_kg / (72 * creatinine_mg_dl)
    if sex == "female":
        crcl *= COCKCROFT_GAULT_FEMALE_FACTOR
    return round(crcl, 6)


def select_dose_band(bands: Sequence[DoseBand], crcl: float) -> DoseBand | None:
    """The zoledronic acid band for a CrCl.

    Open-ended bands are strict, as the label writes them ("< 30", "> 60"); bounded bands are
    inclusive ("50-60"), and a CrCl between two bounded bands (49.5) takes the lower band,
    since the label's bands are whole mL/min ("40-49" is read as 40 up to 50).
    """
    for band in bands:
        low, high = band.crcl_from, band.crcl_to
        if low is None and high is not None:
            matches = crcl < high
        elif high is None and low is not None:
            matches = crcl > low
        else:
            matches = low is not None and high is not None and low <= crcl <= high
        if matches:
            return band
    below = [
        band
        for band in bands
        if band.crcl_from is not None and band.crcl_to is not None and band.crcl_from <= crcl
    ]
    return max(below, key=lambda band: band.crcl_from or 0.0) if below else None


def _dose_text(dose_mg: float) -> str:
    return f"{dose_mg:.1f} mg"  # as the label table writes it: 4.0, 3.5, 3.3, 3.0 mg


def _dose(bands: Sequence[DoseBand], crcl: float | None) -> tuple[float | None, str | None]:
    band = None if crcl is None else select_dose_band(bands, crcl)
    if band is None:
        return None, None
    return band.dose_mg, "not recommended" if band.dose_mg is None else _dose_text(band.dose_mg)


def renal_facts(
    case: Case,
    crcl_labs: Sequence[Lab],
    creatinine_labs: Sequence[Lab],
    *,
    iv_bisphosphonate_start: date | None,
    on_iv_bisphosphonate: bool,
    on_zoledronic_acid: bool = False,
    dose_bands: Sequence[DoseBand],
    params: dict[str, float],
    recent_days: float | None = None,
) -> dict[str, Any]:
    """`crcl_labs`, `creatinine_labs`: the results in collection order."""
    patient, clinical, as_of = case.patient, case.clinical, case.as_of
    weight = patient.weight_kg

    def crcl_from_creatinine(lab: Lab, on: date) -> float | None:
        age = age_in_years(patient.birth_date, on)
        if weight is None or lab.canonical_value <= 0 or age < COCKCROFT_GAULT_MIN_AGE:
            return None
        return cockcroft_gault(age, weight, lab.canonical_value, patient.sex)

    crcl_current: float | None = None
    crcl_current_source: str | None = None
    crcl_current_date: date | None = None
    crcl_creatinine: float | None = None
    measured = latest_recent(crcl_labs, as_of, recent_days)
    creatinine = latest_recent(creatinine_labs, as_of, recent_days)
    if measured is not None:
        crcl_current = measured.canonical_value
        crcl_current_source, crcl_current_date = "measured", measured.collected_on
    elif creatinine is not None:
        crcl_current = crcl_from_creatinine(creatinine, as_of)
        if crcl_current is not None:
            crcl_current_source = "cockcroft_gault"
            crcl_current_date = creatinine.collected_on
            crcl_creatinine = creatinine.canonical_value

    crcl_baseline: float | None = clinical.crcl_baseline
    crcl_baseline_source: str | None = None if crcl_baseline is None else "clinical"
    crcl_baseline_date: date | None = None
    iv_start = iv_bisphosphonate_start
    if crcl_baseline is None and iv_start is not None:
        candidates: list[tuple[tuple[date, time, int], float, str]] = []
        for lab in crcl_labs:
            if lab.collected_on <= iv_start:
                candidates.append(((*collection_order(lab), 1), lab.canonical_value, "measured"))
        for lab in creatinine_labs:
            if lab.collected_on <= iv_start:
                # The age at that creatinine's collection; a child's gives none (spec §2).
                computed = crcl_from_creatinine(lab, lab.collected_on)
                if computed is not None:
                    candidates.append(((*collection_order(lab), 0), computed, "cockcroft_gault"))
        if candidates:
            key, crcl_baseline, crcl_baseline_source = max(candidates, key=lambda c: c[0])
            crcl_baseline_date = key[0]
    crcl_change = None
    if crcl_current is not None and crcl_baseline is not None:
        crcl_change = pct_change(crcl_current, crcl_baseline)
    ckd = "chronic_kidney_disease" in clinical.diagnoses
    # spec §2: CKD stands in for renal impairment only while CrCl is unknown.
    renal_impairment = (
        crcl_current < params["renal_impairment_crcl"] if crcl_current is not None else ckd
    )
    # Revision 1: more than 10 % below baseline; exactly 10 % is not deterioration.
    renal_deterioration = (
        on_iv_bisphosphonate
        and crcl_change is not None
        and -crcl_change > params["renal_deterioration_pct"]
    )
    za_dose_mg, za_dose = _dose(dose_bands, crcl_current)
    # spec §2 dosing CrCl: the baseline while on zoledronic acid (the label doses by baseline).
    za_dosing_crcl = crcl_current
    if on_zoledronic_acid and crcl_baseline is not None:
        za_dosing_crcl = crcl_baseline
    za_dosing_dose_mg, za_dosing_dose = _dose(dose_bands, za_dosing_crcl)

    # spec §2: creatinine rise on an IV bisphosphonate, as the zoledronic acid label defines it.
    creatinine_baseline: float | None = clinical.creatinine_baseline
    creatinine_baseline_source = None if creatinine_baseline is None else "clinical"
    if creatinine_baseline is None and iv_start is not None:
        before = [lab for lab in creatinine_labs if lab.collected_on <= iv_start]
        if before:
            creatinine_baseline, creatinine_baseline_source = before[-1].canonical_value, "measured"
    rise = None
    if creatinine is not None and creatinine_baseline is not None:
        rise = round(creatinine.canonical_value - creatinine_baseline, 6)
    creatinine_rise = False
    if on_iv_bisphosphonate and rise is not None and creatinine_baseline is not None:
        threshold = (
            params["creatinine_rise_low_mg_dl"]
            if creatinine_baseline < params["creatinine_rise_baseline_mg_dl"]
            else params["creatinine_rise_high_mg_dl"]
        )
        creatinine_rise = rise >= threshold
    return in_spec_order(
        SPECS,
        {
            "crcl_current": crcl_current,
            "crcl_current_source": crcl_current_source,
            "crcl_current_date": crcl_current_date,
            "crcl_method": {"measured": "measured", "cockcroft_gault": "cockcroft-gault"}.get(
                crcl_current_source or "", "unknown"
            ),
            "crcl_creatinine": crcl_creatinine,
            "crcl_weight_kg": weight if crcl_creatinine is not None else None,
            "renal_function_unknown": crcl_current is None,
            "creatinine_latest": None if creatinine is None else creatinine.canonical_value,
            "creatinine_latest_date": None if creatinine is None else creatinine.collected_on,
            "creatinine_baseline": creatinine_baseline,
            "creatinine_baseline_source": creatinine_baseline_source,
            "creatinine_rise_mg_dl": rise,
            "creatinine_rise": creatinine_rise,
            "crcl_baseline": crcl_baseline,
            "crcl_baseline_source": crcl_baseline_source,
            "crcl_baseline_date": crcl_baseline_date,
            "crcl_change_from_baseline_pct": crcl_change,
            "renal_impairment": renal_impairment,
            "ckd_mbd_possible": ckd
            or (crcl_current is not None and crcl_current < params["ckd_mbd_crcl"]),
            "renal_deterioration": renal_deterioration,
            "za_dose_mg": za_dose_mg,
            "za_dose": za_dose,
            "za_dosing_crcl": za_dosing_crcl,
            "za_dosing_dose_mg": za_dosing_dose_mg,
            "za_dosing_dose": za_dosing_dose,
        },
    )
