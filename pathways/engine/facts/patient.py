"""Patient facts: age, sex, weight, which tests were measured, and the pathway (spec §2)."""

from __future__ import annotations

from typing import Any, Final

from ..case import Case
from ..dates import age_in_years
from .spec import FactSpec as _F

MYELOMA_DIAGNOSES = frozenset({"multiple_myeloma", "mgus"})

SPECS: Final[tuple[_F, ...]] = (
    _F("as_of", "date", "", "date of the assessment", "2026-11-22"),
    _F(
        "pathway",
        "string",
        "",
        "myeloma when multiple_myeloma or mgus is diagnosed, else bone",
        "bone",
    ),
    _F("age_years", "int", "years", "whole years of age at as_of", 76),
    _F("sex", "string", "", "female or male", "female"),
    _F("pregnant", "bool", "", "patient.pregnant", False),
    _F("weight_kg", "double", "kg", "patient.weight_kg", 64.0),
    _F(
        "lab_tests",
        "list<string>",
        "",
        'tests with at least one result (e.g. "ctx" in lab_tests)',
        ["alp"],
    ),
)


def patient_facts(case: Case, lab_tests: list[str]) -> dict[str, Any]:
    patient, diagnoses = case.patient, case.clinical.diagnoses
    return {
        "as_of": case.as_of,
        "pathway": "bone" if MYELOMA_DIAGNOSES.isdisjoint(diagnoses) else "myeloma",
        "age_years": age_in_years(patient.birth_date, case.as_of),
        "sex": patient.sex,
        "pregnant": patient.pregnant,
        "weight_kg": patient.weight_kg,
        "lab_tests": lab_tests,
    }
