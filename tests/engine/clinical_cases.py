"""Named clinical cases for engine tests: plain builders returning case documents.

Plain functions rather than conftest fixtures, so the engine suite needs no Django and no
shared conftest: `myeloma_on_zoledronic_acid_14_months()` reads as the patient it is.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from functools import cache
from typing import Any

from pathways.engine import Parameter, Result, RuleSet, assess, load_catalogue, parse_case

AS_OF = "2026-11-22"


@cache
def catalogue() -> RuleSet:
    return load_catalogue()


@cache
def revision_2_facts_rule_set() -> RuleSet:
    """The catalogue with revision 2's recent window (recent_lab_days 90), which switches the
    facts to revision 2's meaning (spec §2), whether or not the shipped catalogue has it."""
    rule_set = load_catalogue()
    recent = Parameter(
        name="recent_lab_days",
        value=90,
        unit="days",
        minimum=1,
        maximum=3650,
        description="Recent: at most this many days before as_of (spec §2).",
    )
    others = tuple(p for p in rule_set.parameters if p.name != recent.name)
    return replace(rule_set, parameters=(*others, recent))


@cache
def revision_1_facts_rule_set() -> RuleSet:
    """The catalogue without the recent window: facts as a stored revision-1 rule set gets them."""
    rule_set = load_catalogue()
    others = tuple(p for p in rule_set.parameters if p.name != "recent_lab_days")
    return replace(rule_set, parameters=others)


def lab(
    test: str,
    value: float,
    collected_at: str,
    unit: str | None = None,
    reference_high: float | None = None,
) -> dict[str, Any]:
    default_units = {
        "alp": "U/L",
        "bone_alp": "ug/L",
        "ggt": "U/L",
        "ctx": "ng/L",
        "creatinine": "mg/dL",
        "crcl": "mL/min",
        "calcium": "mg/dL",
        "vitamin_d": "ng/mL",
        "bilirubin": "mg/dL",
        "alt": "U/L",
        "albumin": "g/dL",
        "phosphate": "mg/dL",
        "pth": "pg/mL",
    }
    entry: dict[str, Any] = {
        "test": test,
        "value": value,
        "unit": unit or default_units[test],
        "collected_at": collected_at,
    }
    if reference_high is not None:
        entry["reference_high"] = reference_high
    return entry


def merged(document: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy with top-level sections updated key by key (clinical={"bone_pain": True})."""
    result = copy.deepcopy(document)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key].update(value)
        else:
            result[key] = value
    return result


def paget_with_elevated_alp_on_alendronate() -> dict[str, Any]:
    """The spec's §1 example: Paget's disease, ALP 412 U/L (lab ULN 129), alendronate."""
    return {
        "as_of": AS_OF,
        "patient": {
            "birth_date": "1950-03-02",
            "sex": "female",
            "pregnant": False,
            "weight_kg": 64,
        },
        "labs": [lab("alp", 412, "2026-10-01T08:15", reference_high=129)],
        "clinical": {
            "diagnoses": ["paget"],
            "therapies": [{"agent": "alendronate", "start": "2026-01-10", "end": None}],
        },
    }


def man_with_unexplained_elevated_alp() -> dict[str, Any]:
    """66-year-old man, ALP 250 U/L against the built-in ULN 129 U/L, no diagnosis."""
    return {
        "as_of": AS_OF,
        "patient": {"birth_date": "1960-05-10", "sex": "male", "weight_kg": 80},
        "labs": [lab("alp", 250, "2026-11-02")],
    }


def newly_diagnosed_myeloma_with_lytic_lesions() -> dict[str, Any]:
    return {
        "as_of": AS_OF,
        "patient": {"birth_date": "1955-06-01", "sex": "male", "weight_kg": 78},
        "labs": [lab("alp", 90, "2026-11-02T09:00"), lab("crcl", 75, "2026-11-02")],
        "clinical": {
            "diagnoses": ["multiple_myeloma"],
            "myeloma": {"requires_therapy": True, "bone_disease": True},
        },
    }


def myeloma_on_zoledronic_acid_14_months() -> dict[str, Any]:
    """Zoledronic acid since 2025-09-15, VGPR, dental exam done, CrCl 75 mL/min."""
    return {
        "as_of": AS_OF,
        "patient": {"birth_date": "1955-06-01", "sex": "male", "weight_kg": 78},
        "labs": [lab("alp", 90, "2026-11-02T09:00"), lab("crcl", 75, "2026-11-02")],
        "clinical": {
            "diagnoses": ["multiple_myeloma"],
            "dental_exam_done": True,
            "myeloma": {
                "requires_therapy": True,
                "bone_disease": True,
                "response": "VGPR",
                "treatment_start": "2025-09-01",
            },
            "therapies": [{"agent": "zoledronic_acid", "start": "2025-09-15"}],
        },
    }


def myeloma_starting_bortezomib() -> dict[str, Any]:
    """Bortezomib and treatment from 2026-09-01; baseline ALP 80 U/L on 2026-08-30."""
    return {
        "as_of": AS_OF,
        "patient": {"birth_date": "1955-06-01", "sex": "male", "weight_kg": 78},
        "labs": [lab("alp", 80, "2026-08-30")],
        "clinical": {
            "diagnoses": ["multiple_myeloma"],
            "myeloma": {
                "requires_therapy": True,
                "bone_disease": True,
                "treatment_start": "2026-09-01",
                "bortezomib_start": "2026-09-01",
            },
        },
    }


def heavy_myeloma_case() -> dict[str, Any]:
    """Myeloma on zoledronic acid with bortezomib, 30 results, every context field filled."""
    labs = []
    for month in range(1, 11):
        labs.append(lab("alp", 100 + month * 7, f"2026-{month:02d}-03T0{month % 3 + 7}:30"))
        labs.append(lab("creatinine", 88 + month, f"2026-{month:02d}-03", unit="umol/L"))
    labs += [
        lab("crcl", 82, "2025-09-10"),
        lab("crcl", 70, "2026-11-01"),
        lab("bone_alp", 26, "2026-10-03"),
        lab("ctx", 520, "2026-10-03", unit="pg/mL"),
        lab("calcium", 2.3, "2026-10-03", unit="mmol/L"),
        lab("vitamin_d", 60, "2026-10-03", unit="nmol/L"),
        lab("bilirubin", 12, "2026-10-03", unit="umol/L"),
        lab("ggt", 0.6, "2026-10-03", unit="ukat/L"),
        lab("alp", 4.2, "2026-11-10T08:00", unit="ukat/L", reference_high=2.15),
        lab("alp", 95, "2026-08-31T08:00", reference_high=129),
    ]
    return {
        "as_of": AS_OF,
        "patient": {
            "birth_date": "1952-04-18",
            "sex": "female",
            "pregnant": False,
            "weight_kg": 61,
        },
        "labs": labs,
        "clinical": {
            "diagnoses": ["multiple_myeloma", "chronic_kidney_disease"],
            "cancer": None,
            "cancer_treated": False,
            "bone_pain": True,
            "osteolytic_pain": True,
            "bone_scan": "diffuse",
            "fracture": "impending",
            "dental_exam_done": False,
            "crcl_baseline": None,
            "myeloma": {
                "requires_therapy": True,
                "bone_disease": True,
                "active_bone_disease": True,
                "response": "PR",
                "treatment_start": "2026-09-01",
                "bortezomib_start": "2026-09-01",
            },
            "therapies": [
                {"agent": "zoledronic_acid", "start": "2025-09-15", "end": None},
                {"agent": "alendronate", "start": "2023-01-10", "end": "2023-07-10"},
            ],
        },
    }


def assess_document(document: dict[str, Any], rule_set: RuleSet | None = None) -> Result:
    return assess(parse_case(document), rule_set or catalogue())


def codes(result: Result) -> list[str]:
    return [recommendation.code for recommendation in result.recommendations]
