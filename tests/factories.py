"""Case documents and stored patients named for the clinical case they are."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.contrib.auth.models import User

from pathways import engine
from pathways.models import Clinic, Patient
from pathways.services import patient_save_case

TODAY = date(2026, 11, 22)


def paget_on_alendronate_document(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "as_of": TODAY.isoformat(),
        "patient": {
            "birth_date": "1950-03-02",
            "sex": "female",
            "pregnant": False,
            "weight_kg": 64,
        },
        "labs": [
            {
                "test": "alp",
                "value": 412,
                "unit": "U/L",
                "collected_at": "2026-06-01T08:15",
                "reference_high": 129,
            },
            {"test": "alp", "value": 260, "unit": "U/L", "collected_at": "2026-10-01T08:40"},
        ],
        "clinical": {
            "diagnoses": ["paget"],
            "therapies": [{"agent": "alendronate", "start": "2026-06-10", "end": None}],
        },
    }
    document.update(overrides)
    return document


def myeloma_on_zoledronic_acid_14_months_document() -> dict[str, Any]:
    return {
        "as_of": TODAY.isoformat(),
        "patient": {"birth_date": "1956-11-04", "sex": "male", "weight_kg": 78},
        "labs": [
            {"test": "alp", "value": 150, "unit": "U/L", "collected_at": "2025-09-01T08:00"},
            {"test": "alp", "value": 205, "unit": "U/L", "collected_at": "2025-10-10T08:00"},
            {"test": "alp", "value": 140, "unit": "U/L", "collected_at": "2026-10-20T08:00"},
            {"test": "bone_alp", "value": 31, "unit": "ug/L", "collected_at": "2025-09-01"},
            {"test": "crcl", "value": 78, "unit": "mL/min", "collected_at": "2025-09-01"},
        ],
        "clinical": {
            "diagnoses": ["multiple_myeloma"],
            "dental_exam_done": True,
            "myeloma": {
                "requires_therapy": True,
                "bone_disease": True,
                "response": "VGPR",
                "treatment_start": "2025-09-05",
                "bortezomib_start": "2025-09-05",
            },
            "therapies": [{"agent": "zoledronic_acid", "start": "2025-09-10", "end": None}],
        },
    }


def stored_patient(
    clinic: Clinic,
    user: User,
    document: dict[str, Any] | None = None,
    *,
    mrn: str = "MRN-1",
    name: str = "Margaret Ellis",
) -> Patient:
    case = engine.parse_case(document or paget_on_alendronate_document())
    return patient_save_case(user=user, case=case, mrn=mrn, name=name, clinic=clinic)


def form_data(
    document: dict[str, Any], *, mrn: str = "MM-1", name: str = "Ada Myeloma"
) -> dict[str, Any]:
    """The POST data a browser sends for a case document typed into the case-entry form."""
    patient = document["patient"]
    clinical = document.get("clinical", {})
    myeloma = clinical.get("myeloma", {})
    data: dict[str, Any] = {
        "mrn": mrn,
        "name": name,
        "birth_date": patient["birth_date"],
        "sex": patient["sex"],
        "weight_kg": patient.get("weight_kg") or "",
        "diagnoses": clinical.get("diagnoses", []),
        "cancer": clinical.get("cancer") or "",
        "bone_scan": clinical.get("bone_scan", "not_done"),
        "fracture": clinical.get("fracture", "none"),
        "crcl_baseline": clinical.get("crcl_baseline") or "",
        "mm_response": myeloma.get("response") or "",
        "mm_treatment_start": myeloma.get("treatment_start") or "",
        "mm_bortezomib_start": myeloma.get("bortezomib_start") or "",
        "labs-TOTAL_FORMS": str(len(document.get("labs", []))),
        "labs-INITIAL_FORMS": "0",
        "therapies-TOTAL_FORMS": str(len(clinical.get("therapies", []))),
        "therapies-INITIAL_FORMS": "0",
    }
    for flag in ("pregnant",):
        if patient.get(flag):
            data[flag] = "on"
    for flag in ("cancer_treated", "bone_pain", "osteolytic_pain", "dental_exam_done"):
        if clinical.get(flag):
            data[flag] = "on"
    for flag in ("requires_therapy", "bone_disease", "active_bone_disease"):
        if myeloma.get(flag):
            data[f"mm_{flag}"] = "on"
    for index, lab in enumerate(document.get("labs", [])):
        day, _, at = lab["collected_at"].partition("T")
        data.update(
            {
                f"labs-{index}-test": lab["test"],
                f"labs-{index}-value": str(lab["value"]),
                f"labs-{index}-unit": lab["unit"],
                f"labs-{index}-collected_on": day,
                f"labs-{index}-collected_time": at,
                f"labs-{index}-reference_high": lab.get("reference_high") or "",
            }
        )
    for index, therapy in enumerate(clinical.get("therapies", [])):
        data.update(
            {
                f"therapies-{index}-agent": therapy["agent"],
                f"therapies-{index}-start": therapy["start"],
                f"therapies-{index}-end": therapy.get("end") or "",
            }
        )
    return data


def as_browser_json(data: dict[str, Any]) -> dict[str, Any]:
    """The form as the live preview posts it (static/alpcare/case-entry.js): name to value, a
    list of values for a name given more than once, every value a string."""
    posted: dict[str, Any] = {}
    for name, value in data.items():
        values = [str(item) for item in value] if isinstance(value, list) else [str(value)]
        if values:
            posted[name] = values if len(values) > 1 else values[0]
    return posted


def publish_reviewed(*, rule_set: Any, user: Any, note: str, **kwargs: Any) -> Any:
    """Submit a draft for review (as its starter) when it is not yet, then publish it."""
    from pathways import publishing
    from pathways.models import RuleSet

    rule_set.refresh_from_db()
    submitted = rule_set.status == RuleSet.Status.DRAFT
    if submitted:
        publishing.ruleset_submit(
            rule_set=rule_set, user=rule_set.created_by, rationale=rule_set.note or note
        )
    try:
        return publishing.ruleset_publish(rule_set=rule_set, user=user, note=note, **kwargs)
    except Exception:
        if submitted:  # a refused publication leaves the draft as the test had it
            RuleSet.objects.filter(pk=rule_set.pk).update(status=RuleSet.Status.DRAFT)
        raise
