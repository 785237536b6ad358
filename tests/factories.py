"""Case documents and stored patients named for the clinical case they are."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.contrib.auth.models import User

from pathways import engine
from pathways.case_post import as_browser_json, form_data
from pathways.models import Clinic, Patient
from pathways.services import patient_save_case

__all__ = ["TODAY", "as_browser_json", "form_data", "stored_patient"]

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
