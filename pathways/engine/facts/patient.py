"""Patient facts: age, sex, weight, which tests were measured, and the pathway (spec §2)."""

from __future__ import annotations

from typing import Any, Final

from ..case import Case
from ..dates import age_in_years
from .reference import DEFAULT_MENOPAUSE_AGE_YEARS, is_postmenopausal
from .spec import FactSpec as _F
from .spec import in_spec_order

CHILD_AGE_YEARS = 18  # spec §2: child, age < 18
UNDER_5_AGE_YEARS = 5
# reference-intervals.md: gestational weeks 1-13 first trimester, 14-27 second, ≥ 28 third.
SECOND_TRIMESTER_WEEK = 14
THIRD_TRIMESTER_WEEK = 28

SPECS: Final[tuple[_F, ...]] = (
    _F("as_of", "date", "", "date of the assessment", "2026-11-22"),
    _F(
        "pathway",
        "string",
        "",
        "myeloma when multiple_myeloma is diagnosed, else bone (MGUS alone is the bone pathway)",
        "bone",
    ),
    _F("age_years", "int", "years", "whole years of age at as_of", 76),
    _F("sex", "string", "", "female or male", "female"),
    _F("child", "bool", "", "age_years < 18", False),
    _F("under_5", "bool", "", "age_years < 5", False),
    _F("pregnant", "bool", "", "patient.pregnant", False),
    _F("gestational_weeks", "int", "weeks", "patient.gestational_weeks (null: unknown)", 30),
    _F(
        "pregnancy_trimester",
        "int",
        "",
        "trimester at as_of from gestational_weeks: 1 (weeks 1-13), 2 (14-27), 3 (≥ 28)",
        3,
    ),
    _F(
        "postmenopausal",
        "bool",
        "",
        "female: patient.postmenopausal, else age_years ≥ params.menopause_age_years; male: false",
        True,
    ),
    _F("weight_kg", "double", "kg", "patient.weight_kg", 64.0),
    _F(
        "lab_tests",
        "list<string>",
        "",
        'tests with at least one result (e.g. "ctx" in lab_tests)',
        ["alp"],
    ),
)


def trimester(weeks: int | None) -> int | None:
    if weeks is None:
        return None
    if weeks >= THIRD_TRIMESTER_WEEK:
        return 3
    return 2 if weeks >= SECOND_TRIMESTER_WEEK else 1


def patient_facts(
    case: Case,
    lab_tests: list[str],
    *,
    revision_1: bool = False,
    menopause_age: float = DEFAULT_MENOPAUSE_AGE_YEARS,
) -> dict[str, Any]:
    """`revision_1`: a rule set of revision 1 (no recent window), whose MGUS rules live in the
    myeloma pathway; revision 2 routes MGUS alone to the bone pathway."""
    patient, diagnoses = case.patient, case.clinical.diagnoses
    age = age_in_years(patient.birth_date, case.as_of)
    weeks = patient.gestational_weeks if patient.pregnant else None
    return in_spec_order(
        SPECS,
        {
            "as_of": case.as_of,
            # spec §2: MGUS alone is the bone pathway (MGUS does not raise ALP).
            "pathway": "myeloma"
            if "multiple_myeloma" in diagnoses or (revision_1 and "mgus" in diagnoses)
            else "bone",
            "age_years": age,
            "child": age < CHILD_AGE_YEARS,
            "under_5": age < UNDER_5_AGE_YEARS,
            "sex": patient.sex,
            "pregnant": patient.pregnant,
            "gestational_weeks": weeks,
            "pregnancy_trimester": trimester(weeks),
            "postmenopausal": bool(is_postmenopausal(patient, case.as_of, menopause_age)),
            "weight_kg": patient.weight_kg,
            "lab_tests": lab_tests,
        },
    )
