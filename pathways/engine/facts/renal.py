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
from .spec import collection_order, pct_change

COCKCROFT_GAULT_FEMALE_FACTOR = 0.85  # spec §2, Cockcroft-Gault

SPECS: Final[tuple[_F, ...]] = (
    _F("crcl_current", "double", "mL/min", "latest measured CrCl, else Cockcroft-Gault", 45.0),
    _F("crcl_current_source", "string", "", "measured or cockcroft_gault", "measured"),
    _F("crcl_current_date", "date", "", "date of the result behind crcl_current", "2026-11-01"),
    _F("creatinine_latest", "double", "mg/dL", "the latest creatinine", 1.1),
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
    _F("renal_impairment", "bool", "", "crcl_current < params.renal_impairment_crcl or CKD", True),
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


def renal_facts(
    case: Case,
    crcl_labs: Sequence[Lab],
    creatinine_labs: Sequence[Lab],
    *,
    iv_bisphosphonate_start: date | None,
    on_iv_bisphosphonate: bool,
    dose_bands: Sequence[DoseBand],
    params: dict[str, float],
) -> dict[str, Any]:
    """`crcl_labs`, `creatinine_labs`: the results in collection order."""
    patient, clinical, as_of = case.patient, case.clinical, case.as_of
    weight = patient.weight_kg

    def crcl_from_creatinine(lab: Lab, on: date) -> float | None:
        if weight is None or lab.canonical_value <= 0:
            return None
        return cockcroft_gault(
            age_in_years(patient.birth_date, on), weight, lab.canonical_value, patient.sex
        )

    crcl_current: float | None = None
    crcl_current_source: str | None = None
    crcl_current_date: date | None = None
    if crcl_labs:
        crcl_current = crcl_labs[-1].canonical_value
        crcl_current_source, crcl_current_date = "measured", crcl_labs[-1].collected_on
    elif creatinine_labs:
        crcl_current = crcl_from_creatinine(creatinine_labs[-1], as_of)
        if crcl_current is not None:
            crcl_current_source = "cockcroft_gault"
            crcl_current_date = creatinine_labs[-1].collected_on

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
                computed = crcl_from_creatinine(lab, lab.collected_on)
                if computed is not None:
                    candidates.append(((*collection_order(lab), 0), computed, "cockcroft_gault"))
        if candidates:
            key, crcl_baseline, crcl_baseline_source = max(candidates, key=lambda c: c[0])
            crcl_baseline_date = key[0]
    crcl_change = None
    if crcl_current is not None and crcl_baseline is not None:
        crcl_change = pct_change(crcl_current, crcl_baseline)
    renal_impairment = "chronic_kidney_disease" in clinical.diagnoses or (
        crcl_current is not None and crcl_current < params["renal_impairment_crcl"]
    )
    # spec §2: more than 10 % below baseline; exactly 10 % is not deterioration.
    renal_deterioration = (
        on_iv_bisphosphonate
        and crcl_change is not None
        and -crcl_change > params["renal_deterioration_pct"]
    )
    za_band = None if crcl_current is None else select_dose_band(dose_bands, crcl_current)
    za_dose_mg = None if za_band is None else za_band.dose_mg
    za_dose = None
    if za_band is not None:
        za_dose = "not recommended" if za_dose_mg is None else _dose_text(za_dose_mg)
    return {
        "crcl_current": crcl_current,
        "crcl_current_source": crcl_current_source,
        "crcl_current_date": crcl_current_date,
        "creatinine_latest": creatinine_labs[-1].canonical_value if creatinine_labs else None,
        "crcl_baseline": crcl_baseline,
        "crcl_baseline_source": crcl_baseline_source,
        "crcl_baseline_date": crcl_baseline_date,
        "crcl_change_from_baseline_pct": crcl_change,
        "renal_impairment": renal_impairment,
        "renal_deterioration": renal_deterioration,
        "za_dose_mg": za_dose_mg,
        "za_dose": za_dose,
    }
