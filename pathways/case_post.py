"""The case-entry form's POST for a case document, as a browser sends it.

The inverse of ``forms.case_draft``: the bench and the tests build the requests a clinician's
browser makes from a case document with it (tools do not import the tests).
"""

from __future__ import annotations

from typing import Any


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
