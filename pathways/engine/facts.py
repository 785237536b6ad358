"""Derived facts (spec/pathways.md §2), computed once per assessment in Python.

Rules never do arithmetic on raw labs: they read these facts (and `params`) from CEL.
Dates are exposed to CEL as ISO strings; date arithmetic stays here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, time, timedelta
from typing import Any

from .case import Case, Lab, Therapy
from .dates import add_months, age_in_years, whole_months_between
from .ruleset import DoseBand, RuleSet, UlnBand
from .vocabulary import CONVERSIONS

# Parameters the fact computation itself reads (spec §2, §3, reference-intervals.md).
ENGINE_PARAMETERS = (
    "renal_impairment_crcl",
    "renal_deterioration_pct",
    "rcv_cvi_pct",
    "rcv_cva_pct",
    "rcv_z",
    "bone_alp_mass_uln",
)

BISPHOSPHONATES = ("alendronate", "zoledronic_acid", "pamidronate", "other_bisphosphonate")
IV_BISPHOSPHONATES = ("zoledronic_acid", "pamidronate")
BONE_TARGETED_AGENTS = (*BISPHOSPHONATES, "denosumab")
# spec §2: diagnoses (or a fracture) that explain an elevated ALP.
ETIOLOGY_DIAGNOSES = (
    "paget",
    "bone_metastases",
    "primary_bone_tumour",
    "osteomalacia",
    "hyperparathyroidism",
    "vitamin_d_deficiency",
    "liver_disease",
    "sepsis",
    "hiv_aids",
)
METABOLIC_BONE_DIAGNOSES = ("osteomalacia", "hyperparathyroidism", "vitamin_d_deficiency")
MYELOMA_DIAGNOSES = ("multiple_myeloma", "mgus")
BORTEZOMIB_WINDOW_DAYS = 42  # spec §2: ALP rise by day 42 of bortezomib
ALENDRONATE_COURSE_MONTHS = 6  # S0 6: alendronate 40 mg daily for six months
COCKCROFT_GAULT_FEMALE_FACTOR = 0.85  # spec §2, Cockcroft-Gault


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


@dataclass(frozen=True)
class AlpPoint:
    """One total ALP result as the chart shows it."""

    collected_on: date
    collected_time: time | None
    value: float  # U/L
    uln: float | None  # U/L: the lab's reference_high, else the built-in band at that date
    uln_source: str  # "lab", "built-in" or "none"
    x_uln: float | None
    elevated: bool
    change_pct: float | None  # from the previous ALP result
    significant_change: bool  # |change| > RCV


@dataclass(frozen=True)
class TherapyFacts:
    therapy: Therapy
    current: bool
    started: bool
    months_since_start: int | None
    months_since_end: int | None
    alp_baseline: float | None  # the last ALP on or before the start
    alp_baseline_date: date | None


@dataclass(frozen=True)
class Facts:
    values: dict[str, Any]  # the CEL variables (besides params and fired)
    dates: dict[str, date | None]  # every date fact as a date (follow-up anchors)
    alp_points: tuple[AlpPoint, ...]
    rcv_pct: float
    therapies: tuple[TherapyFacts, ...]  # same order as case.clinical.therapies
    bortezomib_baseline_date: date | None
    crcl_current_date: date | None
    crcl_baseline_date: date | None

    def __getitem__(self, name: str) -> Any:
        return self.values[name]


def _pct_change(new: float, old: float) -> float | None:
    # Rounded so that exact boundaries (10 %, 25 %) compare as the clinician reads them.
    return None if old == 0 else round((new - old) / old * 100, 6)


def reference_change_value(cvi_pct: float, cva_pct: float, z: float) -> float:
    """RCV = sqrt(2) * Z * sqrt(CVA^2 + CVI^2) (Fraser 2001; reference-intervals.md)."""
    return round(math.sqrt(2) * z * math.sqrt(cva_pct**2 + cvi_pct**2), 6)


def cockcroft_gault(age_years: int, weight_kg: float, creatinine_mg_dl: float, sex: str) -> float:
    """(140 - age) * weight / (72 * creatinine mg/dL), * 0.85 for women (spec §2)."""
    crcl = (140 - age_years) * weight_kg / (72 * creatinine_mg_dl)
    if sex == "female":
        crcl *= COCKCROFT_GAULT_FEMALE_FACTOR
    return round(crcl, 6)


def select_uln_band(
    bands: Iterable[UlnBand], test: str, sex: str, birth_date: date, on: date
) -> UlnBand | None:
    """The first band for the test, sex and age at `on` (age_to exclusive)."""
    age_days = (on - birth_date).days
    age_years = age_in_years(birth_date, on)
    for band in bands:
        if band.test != test or band.sex not in (sex, "any"):
            continue
        if (age_days if band.age_from_unit == "days" else age_years) < band.age_from:
            continue
        age_for_to = age_days if band.age_to_unit == "days" else age_years
        if band.age_to is not None and age_for_to >= band.age_to:
            continue
        return band
    return None


def band_uln_canonical(band: UlnBand) -> float:
    if (band.test, band.unit) in CONVERSIONS:
        _, multiplier, divisor = CONVERSIONS[(band.test, band.unit)]
        return round(band.uln * multiplier / divisor, 6)
    return band.uln


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


def _iso(day: date | None) -> str | None:
    return None if day is None else day.isoformat()


def _clock(at: time | None) -> str | None:
    return None if at is None else f"{at.hour:02d}:{at.minute:02d}"


def _sort_key(lab: Lab) -> tuple[date, time]:
    # A result without a time of day sorts first on its date (stable: document order).
    return (lab.collected_on, lab.collected_time or time.min)


def _dose_text(dose_mg: float) -> str:
    return f"{dose_mg:.1f} mg"  # as the label table writes it: 4.0, 3.5, 3.3, 3.0 mg


def compute_facts(
    case: Case, rule_set: RuleSet, *, params: dict[str, float] | None = None
) -> Facts:
    """Every §2 fact of the case under this rule set's parameters and reference tables."""
    if params is None:
        params = rule_set.parameter_values()
    missing = [name for name in ENGINE_PARAMETERS if name not in params]
    if missing:
        raise KeyError(f"rule set {rule_set.version!r} lacks parameter(s): {', '.join(missing)}")
    as_of, patient, clinical = case.as_of, case.patient, case.clinical
    sex = patient.sex
    labs_by_test: dict[str, list[Lab]] = {}
    for lab in sorted(case.labs, key=_sort_key):
        labs_by_test.setdefault(lab.test, []).append(lab)

    # --- ALP series: ULN per result at its own collection date (reference-intervals.md).
    rcv = reference_change_value(params["rcv_cvi_pct"], params["rcv_cva_pct"], params["rcv_z"])
    alp_labs = labs_by_test.get("alp", [])
    points: list[AlpPoint] = []
    alp_bands = [band for band in rule_set.uln_bands if band.test == "alp"]
    previous_value: float | None = None
    built_in_uln: dict[date, float | None] = {}
    for lab in alp_labs:
        if lab.canonical_reference_high is not None:
            uln: float | None = lab.canonical_reference_high
            source = "lab"
        else:
            if lab.collected_on not in built_in_uln:
                band = select_uln_band(alp_bands, "alp", sex, patient.birth_date, lab.collected_on)
                built_in_uln[lab.collected_on] = None if band is None else band_uln_canonical(band)
            uln = built_in_uln[lab.collected_on]
            source = "none" if uln is None else "built-in"
        change = (
            None if previous_value is None else _pct_change(lab.canonical_value, previous_value)
        )
        points.append(
            AlpPoint(
                collected_on=lab.collected_on,
                collected_time=lab.collected_time,
                value=lab.canonical_value,
                uln=uln,
                uln_source=source,
                x_uln=None if not uln else round(lab.canonical_value / uln, 6),
                elevated=uln is not None and lab.canonical_value > uln,
                change_pct=change,
                significant_change=change is not None and abs(change) > rcv,
            )
        )
        previous_value = lab.canonical_value
    latest = points[-1] if points else None
    previous = points[-2] if len(points) >= 2 else None
    timed = [point.collected_time for point in points if point.collected_time is not None]
    spread_hours = None
    if timed:
        seconds = [t.hour * 3600 + t.minute * 60 + t.second for t in timed]
        spread_hours = round((max(seconds) - min(seconds)) / 3600, 6)

    # --- Bone ALP: the lab's reference_high, else the mass default (reference-intervals.md).
    bone_alp_labs = labs_by_test.get("bone_alp", [])
    bone_alp_latest = bone_alp_labs[-1] if bone_alp_labs else None
    bone_alp_uln: float | None = None
    bone_alp_status = "unknown"
    if bone_alp_latest is not None:
        bone_alp_uln = bone_alp_latest.canonical_reference_high
        if bone_alp_uln is None and bone_alp_latest.canonical_unit == "ug/L":
            bone_alp_uln = params["bone_alp_mass_uln"]
        elevated = bone_alp_uln is not None and bone_alp_latest.canonical_value > bone_alp_uln
        bone_alp_status = "elevated" if elevated else "normal"

    # --- Therapies.
    therapy_facts: list[TherapyFacts] = []
    therapy_maps: list[dict[str, Any]] = []
    for therapy in clinical.therapies:
        facts, therapy_map = _therapy_facts(therapy, as_of, points, latest)
        therapy_facts.append(facts)
        therapy_maps.append(therapy_map)
    current = [t.therapy for t in therapy_facts if t.current]
    current_agents = {therapy.agent for therapy in current}
    current_iv = [therapy for therapy in current if therapy.agent in IV_BISPHOSPHONATES]
    # Two overlapping IV bisphosphonates: the earliest start counts (longest exposure).
    iv_start = min((therapy.start for therapy in current_iv), default=None)
    months_on_iv = None if iv_start is None else whole_months_between(iv_start, as_of)
    next_anniversary = None
    if iv_start is not None and months_on_iv is not None:
        months = months_on_iv if add_months(iv_start, months_on_iv) >= as_of else months_on_iv + 1
        next_anniversary = add_months(iv_start, months)
    alendronate = [therapy for therapy in clinical.therapies if therapy.agent == "alendronate"]
    alendronate_course_end = None
    if alendronate:
        course = max(alendronate, key=lambda therapy: therapy.start)
        alendronate_course_end = course.end or add_months(course.start, ALENDRONATE_COURSE_MONTHS)

    # --- Renal function.
    weight = patient.weight_kg

    def crcl_from_creatinine(lab: Lab, on: date) -> float | None:
        if weight is None or lab.canonical_value <= 0:
            return None
        return cockcroft_gault(
            age_in_years(patient.birth_date, on), weight, lab.canonical_value, sex
        )

    crcl_labs = labs_by_test.get("crcl", [])
    creatinine_labs = labs_by_test.get("creatinine", [])
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
    if crcl_baseline is None and iv_start is not None:
        candidates: list[tuple[tuple[date, time, int], float, str]] = []
        for lab in crcl_labs:
            if lab.collected_on <= iv_start:
                candidates.append(((*_sort_key(lab), 1), lab.canonical_value, "measured"))
        for lab in creatinine_labs:
            if lab.collected_on <= iv_start:
                computed = crcl_from_creatinine(lab, lab.collected_on)
                if computed is not None:
                    candidates.append(((*_sort_key(lab), 0), computed, "cockcroft_gault"))
        if candidates:
            key, crcl_baseline, crcl_baseline_source = max(candidates, key=lambda c: c[0])
            crcl_baseline_date = key[0]
    crcl_change = None
    if crcl_current is not None and crcl_baseline is not None:
        crcl_change = _pct_change(crcl_current, crcl_baseline)
    renal_impairment = "chronic_kidney_disease" in clinical.diagnoses or (
        crcl_current is not None and crcl_current < params["renal_impairment_crcl"]
    )
    # spec §2: more than 10 % below baseline; exactly 10 % is not deterioration.
    renal_deterioration = (
        bool(current_iv)
        and crcl_change is not None
        and -crcl_change > params["renal_deterioration_pct"]
    )
    za_band = (
        None if crcl_current is None else select_dose_band(rule_set.za_dose_bands, crcl_current)
    )
    za_dose_mg = None if za_band is None else za_band.dose_mg
    za_dose = None
    if za_band is not None:
        za_dose = "not recommended" if za_dose_mg is None else _dose_text(za_dose_mg)

    # --- Myeloma: ALP around bortezomib (S3 5: rise by day 42).
    myeloma = clinical.myeloma
    bortezomib_start = myeloma.bortezomib_start
    mm_baseline: AlpPoint | None = None
    mm_peak: AlpPoint | None = None
    if bortezomib_start is not None:
        window_end = bortezomib_start + timedelta(days=BORTEZOMIB_WINDOW_DAYS)
        for point in points:
            if point.collected_on <= bortezomib_start:
                mm_baseline = point
            elif point.collected_on <= window_end and (
                mm_peak is None or point.value > mm_peak.value
            ):
                mm_peak = point
    mm_rise = None
    if mm_baseline is not None and mm_peak is not None:
        mm_rise = _pct_change(mm_peak.value, mm_baseline.value)

    diagnoses = clinical.diagnoses
    dates: dict[str, date | None] = {
        "as_of": as_of,
        "alp_latest_date": latest.collected_on if latest else None,
        "alp_previous_date": previous.collected_on if previous else None,
        "iv_bisphosphonate_start": iv_start,
        "iv_bisphosphonate_next_anniversary": next_anniversary,
        "alendronate_course_end": alendronate_course_end,
        "crcl_current_date": crcl_current_date,
        "crcl_baseline_date": crcl_baseline_date,
        "mm_treatment_start": myeloma.treatment_start,
        "mm_bortezomib_start": bortezomib_start,
        "mm_baseline_alp_date": mm_baseline.collected_on if mm_baseline else None,
        "mm_alp_day42_date": mm_peak.collected_on if mm_peak else None,
    }
    values: dict[str, Any] = {
        "pathway": "myeloma" if any(d in diagnoses for d in MYELOMA_DIAGNOSES) else "bone",
        "age_years": age_in_years(patient.birth_date, as_of),
        "sex": sex,
        "pregnant": patient.pregnant,
        "weight_kg": weight,
        "lab_tests": sorted(labs_by_test),
        # ALP
        "alp_count": len(points),
        "alp_measured": latest is not None,
        "alp_latest": latest.value if latest else None,
        "alp_latest_time": _clock(latest.collected_time) if latest else None,
        "alp_uln": latest.uln if latest else None,
        "alp_uln_source": latest.uln_source if latest else None,
        "alp_x_uln": latest.x_uln if latest else None,
        "alp_elevated": latest.elevated if latest else False,
        "alp_previous": previous.value if previous else None,
        "alp_change_pct": latest.change_pct if latest else None,
        "rcv_pct": rcv,
        "alp_significant_change": latest.significant_change if latest else False,
        "alp_significant_rise": bool(
            latest and latest.change_pct is not None and latest.change_pct > rcv
        ),
        "alp_timed_count": len(timed),
        "alp_time_spread_hours": spread_hours,
        # Bone ALP
        "bone_alp": bone_alp_status,
        "bone_alp_latest": bone_alp_latest.canonical_value if bone_alp_latest else None,
        "bone_alp_unit": bone_alp_latest.canonical_unit if bone_alp_latest else None,
        "bone_alp_uln": bone_alp_uln,
        # Clinical context
        "diagnoses": list(diagnoses),
        "cancer": clinical.cancer,
        "cancer_treated": clinical.cancer_treated,
        "bone_pain": clinical.bone_pain,
        "osteolytic_pain": clinical.osteolytic_pain,
        "bone_scan": clinical.bone_scan,
        "fracture": clinical.fracture,
        "dental_exam_done": clinical.dental_exam_done,
        "etiology_established": clinical.fracture != "none"
        or any(d in diagnoses for d in ETIOLOGY_DIAGNOSES),
        "metabolic_bone_disease": any(d in diagnoses for d in METABOLIC_BONE_DIAGNOSES),
        # Therapies
        "therapies": therapy_maps,
        "current_therapies": [m for m in therapy_maps if m["current"]],
        "therapies_summary": "; ".join(m["summary"] for m in therapy_maps) or "none",
        "current_therapies_summary": "; ".join(m["summary"] for m in therapy_maps if m["current"])
        or "none",
        "on_therapy": bool(current),
        "on_bisphosphonate": bool(current_agents & set(BISPHOSPHONATES)),
        "on_iv_bisphosphonate": bool(current_iv),
        "on_bone_targeted_agent": bool(current_agents & set(BONE_TARGETED_AGENTS)),
        "on_denosumab": "denosumab" in current_agents,
        "on_zoledronic_acid": "zoledronic_acid" in current_agents,
        "on_pamidronate": "pamidronate" in current_agents,
        "on_alendronate": "alendronate" in current_agents,
        "bisphosphonate_ever": any(
            t.started and t.therapy.agent in BISPHOSPHONATES for t in therapy_facts
        ),
        "months_on_iv_bisphosphonate": months_on_iv,
        # Renal
        "crcl_current": crcl_current,
        "crcl_current_source": crcl_current_source,
        "creatinine_latest": creatinine_labs[-1].canonical_value if creatinine_labs else None,
        "crcl_baseline": crcl_baseline,
        "crcl_baseline_source": crcl_baseline_source,
        "crcl_change_from_baseline_pct": crcl_change,
        "renal_impairment": renal_impairment,
        "renal_deterioration": renal_deterioration,
        "za_dose_mg": za_dose_mg,
        "za_dose": za_dose,
        # Myeloma
        "mm_requires_therapy": myeloma.requires_therapy,
        "mm_bone_disease": myeloma.bone_disease,
        "mm_active_bone_disease": myeloma.active_bone_disease,
        "mm_response": myeloma.response,
        "mm_baseline_alp": mm_baseline.value if mm_baseline else None,
        "mm_alp_day42_max": mm_peak.value if mm_peak else None,
        "mm_alp_rise_day42_pct": mm_rise,
    }
    for name, day in dates.items():
        values[name] = _iso(day)
    return Facts(
        values=values,
        dates=dates,
        alp_points=tuple(points),
        rcv_pct=rcv,
        therapies=tuple(therapy_facts),
        bortezomib_baseline_date=dates["mm_baseline_alp_date"],
        crcl_current_date=crcl_current_date,
        crcl_baseline_date=crcl_baseline_date,
    )


def _therapy_facts(
    therapy: Therapy, as_of: date, points: Sequence[AlpPoint], latest: AlpPoint | None
) -> tuple[TherapyFacts, dict[str, Any]]:
    started = therapy.start <= as_of
    current = started and (therapy.end is None or therapy.end >= as_of)
    baseline: AlpPoint | None = None
    since_start: list[AlpPoint] = []
    after_end: AlpPoint | None = None
    for point in points:
        if point.collected_on <= therapy.start:
            baseline = point
        else:
            since_start.append(point)
        if therapy.end is not None and point.collected_on > therapy.end:
            after_end = point
    lowest_since_start = min((point.value for point in since_start), default=None)
    months_since_start = whole_months_between(therapy.start, as_of) if started else None
    ended = therapy.end is not None and therapy.end <= as_of
    months_since_end = (
        whole_months_between(therapy.end, as_of) if therapy.end is not None and ended else None
    )
    fall_from_baseline = None
    if baseline is not None and latest is not None:
        change = _pct_change(latest.value, baseline.value)
        fall_from_baseline = None if change is None else -change
    rise_after_end = None
    if after_end is not None and lowest_since_start is not None:
        rise_after_end = _pct_change(after_end.value, lowest_since_start)
    therapy_map = {
        "summary": _therapy_summary(
            therapy,
            months_since_start,
            months_since_end,
            baseline,
            fall_from_baseline,
            lowest_since_start,
            after_end,
            rise_after_end,
        ),
        "agent": therapy.agent,
        "start": therapy.start.isoformat(),
        "end": _iso(therapy.end),
        "started": started,
        "current": current,
        "completed": therapy.end is not None and therapy.end < as_of,
        "bisphosphonate": therapy.agent in BISPHOSPHONATES,
        "iv_bisphosphonate": therapy.agent in IV_BISPHOSPHONATES,
        "bone_targeted": therapy.agent in BONE_TARGETED_AGENTS,
        "months_since_start": months_since_start,
        "months_since_end": months_since_end,
        "alp_baseline": baseline.value if baseline else None,
        "alp_baseline_date": baseline.collected_on.isoformat() if baseline else None,
        "alp_baseline_elevated": baseline.elevated if baseline else None,
        "alp_elevated_since_start": any(point.elevated for point in since_start),
        "alp_fall_from_baseline_pct": fall_from_baseline,
        "alp_lowest_since_start": lowest_since_start,
        "alp_latest_after_end": after_end.value if after_end else None,
        "alp_latest_after_end_date": after_end.collected_on.isoformat() if after_end else None,
        "alp_latest_after_end_elevated": after_end.elevated if after_end else None,
        "alp_rise_after_end_pct": rise_after_end,
    }
    facts = TherapyFacts(
        therapy=therapy,
        current=current,
        started=started,
        months_since_start=months_since_start,
        months_since_end=months_since_end,
        alp_baseline=baseline.value if baseline else None,
        alp_baseline_date=baseline.collected_on if baseline else None,
    )
    return facts, therapy_map


def _u(value: float) -> str:
    return f"{value:g} U/L"


def _therapy_summary(
    therapy: Therapy,
    months_since_start: int | None,
    months_since_end: int | None,
    baseline: AlpPoint | None,
    fall_from_baseline: float | None,
    lowest_since_start: float | None,
    after_end: AlpPoint | None,
    rise_after_end: float | None,
) -> str:
    """One line a rationale can quote: which therapy, since when, and its ALP landmarks."""
    agent = therapy.agent.replace("_", " ")
    if therapy.end is None:
        text = f"{agent} since {therapy.start.isoformat()}"
    else:
        text = f"{agent} {therapy.start.isoformat()} to {therapy.end.isoformat()}"
    timing = []
    if months_since_start is not None:
        timing.append(f"{months_since_start} months since start")
    if months_since_end is not None:
        timing.append(f"{months_since_end} months since end")
    if timing:
        text += f" ({', '.join(timing)})"
    details = []
    if baseline is not None:
        state = "elevated" if baseline.elevated else "not elevated"
        details.append(f"ALP before start {_u(baseline.value)}, {state}")
        if fall_from_baseline is not None:
            direction = "below" if fall_from_baseline >= 0 else "above"
            details.append(f"latest ALP {abs(fall_from_baseline):.1f} % {direction} it")
    if lowest_since_start is not None:
        details.append(f"lowest ALP since start {_u(lowest_since_start)}")
    if after_end is not None:
        state = "elevated" if after_end.elevated else "not elevated"
        line = f"latest ALP after end {_u(after_end.value)}, {state}"
        if rise_after_end is not None:
            line += f", {rise_after_end:.1f} % above the lowest"
        details.append(line)
    return f"{text}: {'; '.join(details)}" if details else text
