"""The one conversion in each direction between a stored Patient and the spec's case document.

Stored patient -> case document -> ``engine.parse_case`` is the same validation path the
`assess` command and the API use, so the screens and the JSON cannot disagree.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from django.utils import timezone

from pathways import engine
from pathways.models import LabResult, Patient, Therapy


def _collected_at(lab: LabResult) -> str:
    if lab.collected_time is None:
        return lab.collected_on.isoformat()
    return f"{lab.collected_on.isoformat()}T{lab.collected_time.isoformat(timespec='minutes')}"


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def patient_to_document(
    patient: Patient,
    *,
    as_of: date | None = None,
    labs: list[LabResult] | None = None,
    therapies: list[Therapy] | None = None,
) -> dict[str, Any]:
    """The case document for a stored patient (pass prefetched labs/therapies to save queries)."""
    labs = list(patient.lab_results.all()) if labs is None else labs
    therapies = list(patient.therapies.all()) if therapies is None else therapies
    return {
        "as_of": (as_of or timezone.localdate()).isoformat(),
        "patient": {
            "birth_date": patient.birth_date.isoformat(),
            "sex": patient.sex,
            "pregnant": patient.pregnant,
            "weight_kg": patient.weight_kg,
        },
        "labs": [
            {
                "test": lab.test,
                "value": _number(lab.value),
                "unit": lab.unit,
                "collected_at": _collected_at(lab),
                "reference_high": lab.reference_high,
            }
            for lab in sorted(
                labs, key=lambda lab: (lab.collected_on, _collected_at(lab), lab.test)
            )
        ],
        "clinical": {
            "diagnoses": list(patient.diagnoses),
            "cancer": patient.cancer or None,
            "cancer_treated": patient.cancer_treated,
            "bone_pain": patient.bone_pain,
            "osteolytic_pain": patient.osteolytic_pain,
            "bone_scan": patient.bone_scan,
            "fracture": patient.fracture,
            "dental_exam_done": patient.dental_exam_done,
            "crcl_baseline": patient.crcl_baseline,
            "myeloma": {
                "requires_therapy": patient.mm_requires_therapy,
                "bone_disease": patient.mm_bone_disease,
                "active_bone_disease": patient.mm_active_bone_disease,
                "response": patient.mm_response or None,
                "treatment_start": _iso(patient.mm_treatment_start),
                "bortezomib_start": _iso(patient.mm_bortezomib_start),
            },
            "therapies": [
                {"agent": t.agent, "start": t.start.isoformat(), "end": _iso(t.end)}
                for t in sorted(therapies, key=lambda t: (t.start, t.agent))
            ],
        },
    }


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value else None


def patient_to_case(
    patient: Patient, *, as_of: date | None = None, **prefetched: Any
) -> engine.Case:
    return engine.parse_case(patient_to_document(patient, as_of=as_of, **prefetched))


def apply_case_to_patient(case: engine.Case, patient: Patient) -> None:
    """Copy the patient and clinical parts of a parsed case onto a Patient (not saved)."""
    patient.birth_date = case.patient.birth_date
    patient.sex = case.patient.sex
    patient.pregnant = case.patient.pregnant
    patient.weight_kg = case.patient.weight_kg
    clinical = case.clinical
    patient.diagnoses = list(clinical.diagnoses)
    patient.cancer = clinical.cancer or ""
    patient.cancer_treated = clinical.cancer_treated
    patient.bone_pain = clinical.bone_pain
    patient.osteolytic_pain = clinical.osteolytic_pain
    patient.bone_scan = clinical.bone_scan
    patient.fracture = clinical.fracture
    patient.dental_exam_done = clinical.dental_exam_done
    patient.crcl_baseline = clinical.crcl_baseline
    myeloma = clinical.myeloma
    patient.mm_requires_therapy = myeloma.requires_therapy
    patient.mm_bone_disease = myeloma.bone_disease
    patient.mm_active_bone_disease = myeloma.active_bone_disease
    patient.mm_response = myeloma.response or ""
    patient.mm_treatment_start = myeloma.treatment_start
    patient.mm_bortezomib_start = myeloma.bortezomib_start


def lab_result_fields(lab: engine.Lab) -> dict[str, Any]:
    """The LabResult columns for one parsed lab."""
    return {
        "test": lab.test,
        "value": lab.value,
        "unit": lab.unit,
        "canonical_value": lab.canonical_value,
        "canonical_unit": lab.canonical_unit,
        "collected_on": lab.collected_on,
        "collected_time": lab.collected_time,
        "reference_high": lab.reference_high,
    }
