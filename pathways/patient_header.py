"""The patient page's header: who the patient is and where things stand, at a glance — age,
pathway, current therapies with their start dates, the latest ALP, bone ALP and CrCl each with
its date (marked "old" outside the rule set's recent window, spec §2), and who is responsible."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from pathways import engine
from pathways.engine import declaration
from pathways.engine.dates import age_in_years
from pathways.engine.templates import format_number
from pathways.models import Patient
from pathways.services import clinic_clinicians

# The tests the header shows, in this order, with the short names a clinician uses.
HEADER_TESTS = (("alp", "ALP"), ("bone_alp", "B-ALP"), ("crcl", "CrCl"))


@dataclass(frozen=True)
class LatestValue:
    test: str
    label: str
    text: str  # "412 U/L"
    collected_on: date
    old: bool  # collected before the recent window: history, not the current state


@dataclass(frozen=True)
class CurrentTherapy:
    agent: str  # its label ("zoledronic acid")
    start: date


@dataclass(frozen=True)
class Header:
    age: int
    pathway: str
    therapies: tuple[CurrentTherapy, ...]
    latest: tuple[LatestValue, ...]
    clinicians: tuple[Any, ...]  # who may be made responsible


def _estimated_crcl(facts: engine.Facts, label: str) -> LatestValue:
    """The CrCl the advice works with when no recent CrCl was measured: Cockcroft-Gault from
    the latest recent creatinine (spec §2), dated by that creatinine. An older measured CrCl
    would show better renal function than the advice is using."""
    assert facts.crcl_current_date is not None  # the estimate's creatinine is recent
    return LatestValue(
        test="crcl",
        label=label,
        # Rounded as the advice's working shows it (59.8 is not "60": renal impairment is < 60).
        text=f"{format_number(facts['crcl_current'])} mL/min (Cockcroft\u2013Gault)",
        collected_on=facts.crcl_current_date,
        old=False,
    )


def patient_header(
    patient: Patient, case: engine.Case, facts: engine.Facts, rule_set: engine.RuleSet
) -> Header:
    recent_days = rule_set.parameter_values().get("recent_lab_days")
    latest = []
    for test, label in HEADER_TESTS:
        if test == "crcl" and facts["crcl_current_source"] == "cockcroft_gault":
            latest.append(_estimated_crcl(facts, label))
            continue
        labs = [lab for lab in case.labs if lab.test == test]
        if not labs:
            continue
        lab = labs[-1]  # the case's labs are in collection order (the engine's "latest")
        age_days = (case.as_of - lab.collected_on).days
        latest.append(
            LatestValue(
                test=test,
                label=label,
                # Its own unit: a bone ALP is a mass (µg/L) or an activity (U/L).
                text=f"{format_number(lab.canonical_value)} "
                f"{declaration.unit_shown(test, lab.canonical_unit)}",
                collected_on=lab.collected_on,
                old=recent_days is not None and age_days > recent_days,
            )
        )
    therapies = tuple(
        CurrentTherapy(agent=item.therapy.agent.replace("_", " "), start=item.therapy.start)
        for item in facts.therapies
        if item.current
    )
    return Header(
        age=age_in_years(case.patient.birth_date, case.as_of),
        pathway=engine.PATHWAY_LABELS.get(facts["pathway"], facts["pathway"]),
        therapies=therapies,
        latest=tuple(latest),
        clinicians=tuple(clinic_clinicians(patient.clinic_id)),
    )
