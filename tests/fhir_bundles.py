"""FHIR R4 Bundles for the import tests and the benchmark: built as an EHR would send them."""

from __future__ import annotations

from typing import Any

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ATC = "http://www.whocc.no/atc"
PATIENT_URL = "urn:uuid:6f1c2a40-0000-4000-8000-000000000001"
SUBJECT = {"reference": PATIENT_URL}


def patient(mrn: str = "F100", gender: str = "female", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [
            {"system": "urn:oid:2.16.840.1.113883.19.5", "value": "INS-77"},
            {
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}
                    ]
                },
                "system": "urn:oid:1.2.3.4",
                "value": mrn,
            },
        ],
        "name": [{"family": "Okafor", "given": ["Grace"]}],
        "gender": gender,
        "birthDate": "1950-03-02",
        **extra,
    }


def lab(
    loinc: str,
    value: float,
    unit: str,
    when: str,
    *,
    status: str = "final",
    low: float | None = None,
    high: float | None = None,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": status,
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "subject": SUBJECT,
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }
    limits = {}
    if low is not None:
        limits["low"] = {"value": low, "unit": unit, "system": UCUM, "code": unit}
    if high is not None:
        limits["high"] = {"value": high, "unit": unit, "system": UCUM, "code": unit}
    if limits:
        resource["referenceRange"] = [limits]
    return resource


def condition(code: str, status: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": status,
                }
            ]
        },
        "code": {"coding": [{"system": ICD10CM, "code": code}]},
        "subject": SUBJECT,
    }


def statement(
    atc: str, start: str, end: str | None = None, status: str = "active"
) -> dict[str, Any]:
    period = {"start": start, **({"end": end} if end else {})}
    return {
        "resourceType": "MedicationStatement",
        "status": status,
        "medicationCodeableConcept": {"coding": [{"system": ATC, "code": atc}]},
        "subject": SUBJECT,
        "effectivePeriod": period,
    }


def request(atc: str, authored: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": ATC, "code": atc}]},
        "subject": SUBJECT,
        "authoredOn": authored,
    }


def weight(kg: float, when: str, unit: str = "kg") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "29463-7"}]},
        "subject": SUBJECT,
        "effectiveDateTime": when,
        "valueQuantity": {"value": kg, "unit": unit, "system": UCUM, "code": unit},
    }


def pregnancy_status(pregnant: bool, when: str) -> dict[str, Any]:
    """A pregnancy-status Observation (LOINC 82810-3): LA15173-0 pregnant, LA26683-5 not."""
    answer = "LA15173-0" if pregnant else "LA26683-5"
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "82810-3"}]},
        "subject": SUBJECT,
        "effectiveDateTime": when,
        "valueCodeableConcept": {"coding": [{"system": LOINC, "code": answer}]},
    }


def bundle(*resources: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    entries = []
    for index, resource in enumerate(resources):
        full_url = PATIENT_URL if resource["resourceType"] == "Patient" else f"urn:uuid:e-{index}"
        entry: dict[str, Any] = {"fullUrl": full_url, "resource": resource}
        if kind == "transaction":
            entry["request"] = {"method": "POST", "url": resource["resourceType"]}
        entries.append(entry)
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def paget_bundle(kind: str = "transaction", mrn: str = "F100") -> dict[str, Any]:
    """A Paget's patient on alendronate with two ALPs, a calcium, a weight."""
    return bundle(
        patient(mrn),
        lab("6768-6", 412, "U/L", "2026-06-01T08:15:00+00:00", low=40, high=129),
        lab("6768-6", 260, "U/L", "2026-10-01T08:40:00+00:00", high=129),
        lab("17861-6", 9.4, "mg/dL", "2026-10-01"),
        weight(64, "2026-10-01"),
        condition("M88.9"),
        statement("M05BA04", "2026-06-10"),
        kind=kind,
    )
