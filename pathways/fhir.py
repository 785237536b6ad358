"""FHIR R4 in and out: a patient's Bundle imported in one transaction, and `$everything`.

Import (``POST /api/v1/fhir``, ``manage.py import_fhir``): ``interop/fhir_import.read_bundle``
reads and checks the whole Bundle first; then, in one transaction with the patient's row
locked, what it says is merged into the stored case (results matched by test and collection
time, therapies by agent and start, diagnoses added, the patient's own fields replaced) and
saved through ``services.patient_save_case``, which re-assesses the patient (follow-ups,
snapshot, worklist) as the screens do. Nothing changes when the merged case equals the stored
one, so re-importing a Bundle is a no-op. Any problem refuses the whole Bundle.

Export (``GET /api/v1/fhir/Patient/{id}/$everything``; the Patient alone at
``GET /api/v1/fhir/Patient/{id}``, the import's Location): the Patient, one Observation per result
(and weight, pregnancy status), one Condition per diagnosis and cancer, one MedicationStatement
per therapy, with the case fields no standard code carries in alpcare's case-fields extension.
Re-importing an export leaves the stored patient unchanged (tests/test_fhir_import.py).
"""

from __future__ import annotations

import copy
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from django.db import transaction
from django.utils import timezone

from pathways import engine
from pathways.cases import lab_order, patient_to_case
from pathways.engine import declaration
from pathways.interop import fhir_codes
from pathways.interop.fhir_case import LOINC, UCUM
from pathways.interop.fhir_import import (
    BundleContent,
    BundleInvalid,
    Issue,
    LabEntry,
    TherapyEntry,
    extension_fields,
    read_bundle,
)
from pathways.models import Clinic, LabResult, Patient
from pathways.services import (
    DuplicateMrn,
    StaleVersion,
    access_log_record,
    follow_ups_sync,
    history_user,
    patient_save_case,
)

__all__ = [
    "BundleConflict",
    "BundleInvalid",
    "ImportOutcome",
    "Issue",
    "export_everything",
    "export_patient",
    "import_bundle",
]


class BundleConflict(BundleInvalid):
    """Refused because another write landed meanwhile (the same new MRN, or the patient saved
    since it was read): nothing stored, and the same Bundle sent again may apply."""


@dataclass
class ImportOutcome:
    patient: Patient
    created: bool
    changed: bool
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[Issue] = field(default_factory=list)
    patient_entry: int = 0  # the Patient's place in the Bundle


def _set(document: dict[str, Any], path: str, value: Any) -> None:
    *parents, name = path.split(".")
    part = document
    for parent in parents:
        part = part.setdefault(parent, {})
    part[name] = value


_LAB_DOCUMENT_PATHS = {
    "value": "valueQuantity.value",
    "unit": "valueQuantity.code",
    "collected_at": "effectiveDateTime",
    "reference_high": "referenceRange[0].high.value",
    "reference_low": "referenceRange[0].low.value",
}


def _issue_for(
    error: engine.FieldError, sources: dict[tuple[Any, ...], str], fallback: str
) -> Issue:
    """A case-document error, named by the FHIRPath of the Bundle entry it came from."""
    location = tuple(error.location)
    if location[:1] == ("labs",) and len(location) >= 2 and ("labs", location[1]) in sources:
        if (element := sources.get(location[:3])) is not None:
            return Issue(element, error.message, code="value")
        base = sources[("labs", location[1])]
        detail = _LAB_DOCUMENT_PATHS.get(str(location[2])) if len(location) > 2 else None
        return Issue(f"{base}.{detail}" if detail else base, error.message, code="value")
    for length in range(len(location), 0, -1):
        if location[:length] in sources:
            return Issue(
                sources[location[:length]], f"{error.field}: {error.message}", code="value"
            )
    return Issue(fallback, f"{error.field}: {error.message}", code="value")


def _merge(
    stored: dict[str, Any], content: BundleContent
) -> tuple[dict[str, Any], dict[tuple[Any, ...], str], dict[str, int]]:
    """The stored case document with the Bundle applied; where each part came from; counts."""
    document = stored
    sources: dict[tuple[Any, ...], str] = {}
    counts = dict.fromkeys(
        ("results_added", "results_changed", "results_unchanged", "therapies_added",
         "therapies_changed", "therapies_unchanged", "diagnoses_added"), 0,
    )  # fmt: skip
    patient_path = content.patient_path
    document["patient"]["birth_date"] = content.birth_date.isoformat()
    document["patient"]["sex"] = content.sex
    sources[("patient", "birth_date")] = patient_path + ".birthDate"
    sources[("patient", "sex")] = patient_path + ".gender"
    for path, (value, source) in content.fields.items():
        _set(document, path, value)
        sources[tuple(path.split("."))] = source
    patient_part = document["patient"]
    if patient_part.get("pregnant") is not True and patient_part.get("gestational_weeks"):
        # Gestational weeks only while pregnant (spec §1): a Bundle saying "not pregnant"
        # ends them; weeks sent for a patient who is not pregnant are not stored.
        if ("patient", "gestational_weeks") in sources:
            where = sources[("patient", "gestational_weeks")]
            content.notes.append(Issue(
                where, "gestational age for a patient who is not pregnant: not stored",
                severity="information", code="informational",
            ))  # fmt: skip
        patient_part["gestational_weeks"] = None
    clinical = document["clinical"]
    for diagnosis, source in content.diagnoses.items():
        if diagnosis not in clinical["diagnoses"]:
            clinical["diagnoses"].append(diagnosis)
            counts["diagnoses_added"] += 1
        sources[("clinical", "diagnoses")] = source
    if content.cancer is not None:
        clinical["cancer"], sources[("clinical", "cancer")] = content.cancer

    labs: list[dict[str, Any]] = document["labs"]
    by_key = {(lab["test"], lab["collected_at"]): index for index, lab in enumerate(labs)}
    for entry in content.labs:
        new = entry.document()
        index = by_key.get((entry.test, entry.collected_at))
        if index is None:
            by_key[(entry.test, entry.collected_at)] = len(labs)
            _lab_sources(sources, len(labs), entry)
            labs.append(new)
            counts["results_added"] += 1
            continue
        current = labs[index]
        if (
            not entry.amends
            and (current["value"], current["unit"]) != (new["value"], new["unit"])
            and engine.values_agree(
                entry.test, (current["value"], current["unit"]), (new["value"], new["unit"])
            )
        ):
            # The same result (spec §1: values within 0.5 % after conversion are one result,
            # as a lab feed resending a result must not fail a case), for instance in another
            # unit, as alpcare's own export writes one stored in umol/L: the stored one is kept.
            counts["results_unchanged"] += 1
            continue
        # The same value is the same result: limits the Bundle gives replace the stored ones,
        # absent ones are kept. Another value replaces it only as an amendment. Limits are kept
        # only in the same unit: 129 U/L kept as 129 ukat/L would read a raised ALP as normal.
        if (current["value"], current["unit"]) == (new["value"], new["unit"]) or entry.amends:
            kept = (
                current
                if current["unit"] == new["unit"]
                else {k: v for k, v in current.items() if k not in _LAB_LIMITS}
            )
            merged = {**kept, **new}
            if merged == current:
                counts["results_unchanged"] += 1
            else:
                labs[index] = merged
                _lab_sources(sources, index, entry)
                counts["results_changed"] += 1
        else:
            raise BundleInvalid([Issue(
                entry.path + ".valueQuantity.value",
                f"alpcare holds another {entry.test} result collected at {entry.collected_at} "
                f"({current['value']:g} {current['unit']}): send this one with status amended "
                "or corrected to replace it",
                code="conflict",
            )])  # fmt: skip

    therapies: list[dict[str, Any]] = clinical["therapies"]
    by_course = {(t["agent"], t["start"]): index for index, t in enumerate(therapies)}
    for course in _courses(content.therapies):
        key = (course.agent, course.start.isoformat())
        end = course.end.isoformat() if course.end else None
        index = by_course.get(key)
        if index is None:
            _therapy_sources(sources, len(therapies), course)
            therapies.append({"agent": course.agent, "start": key[1], "end": end})
            counts["therapies_added"] += 1
        elif end is not None and therapies[index].get("end") != end:
            # An order has no end (only a statement gives one): it never makes a course that
            # ended current again.
            therapies[index]["end"] = end
            _therapy_sources(sources, index, course)
            counts["therapies_changed"] += 1
        else:
            counts["therapies_unchanged"] += 1
    return document, sources, counts


_LAB_LIMITS = ("reference_high", "reference_low")


def _lab_sources(sources: dict[tuple[Any, ...], str], index: int, entry: LabEntry) -> None:
    sources[("labs", index)] = entry.path
    for name, element in entry.elements:
        sources[("labs", index, name)] = f"{entry.path}.{element}"


def _therapy_sources(sources: dict[tuple[Any, ...], str], index: int, entry: TherapyEntry) -> None:
    """Where the course at ``index`` came from: the resource, and the element of each field."""
    at = ("clinical", "therapies", index)
    sources[at] = entry.path
    for name in ("agent", "start", "end"):
        sources[(*at, name)] = entry.element(name)


def _courses(entries: list[TherapyEntry]) -> list[TherapyEntry]:
    """One entry per course (agent and start): the same course given as a request and as a
    statement is one, with the end either gives (an order has none, a stopped statement has
    it), whatever their order in the Bundle. Two different ends are refused, naming both."""
    courses: dict[tuple[str, date], TherapyEntry] = {}
    for entry in entries:
        key = (entry.agent, entry.start)
        other = courses.get(key)
        if other is None or (other.end is None and entry.end is not None):
            courses[key] = entry
        elif entry.end is not None and entry.end != other.end:
            raise BundleInvalid([Issue(
                entry.path,
                f"{entry.agent} from {entry.start} ends {entry.end} here and {other.end} in "
                f"{other.path}: send one end for a course",
                code="conflict",
            )])  # fmt: skip
    return list(courses.values())


def _blank_document(content: BundleContent) -> dict[str, Any]:
    return {
        "patient": {"birth_date": content.birth_date.isoformat(), "sex": content.sex},
        "labs": [],
        "clinical": {"diagnoses": [], "therapies": []},
    }


def import_bundle(data: object, *, clinic: Clinic, user: Any, path: str) -> ImportOutcome:
    """Apply one patient's Bundle to ``clinic`` atomically; BundleInvalid refuses all of it."""
    today = timezone.localdate()
    content = read_bundle(data, today=today, tz=timezone.get_current_timezone())
    with history_user(user), transaction.atomic():
        patient = Patient.objects.select_for_update().filter(clinic=clinic, mrn=content.mrn).first()
        if patient is None and not content.name:
            raise BundleInvalid(
                [
                    Issue(
                        content.patient_path + ".name",
                        "required for a new patient",
                        code="required",
                    )
                ]
            )
        if patient is None:
            stored_document = _blank_document(content)
            before = None
        else:
            before = _stored_document(patient, today)
            stored_document = copy.deepcopy(before)
        document, sources, counts = _merge(stored_document, content)
        document["as_of"] = today.isoformat()
        try:
            case = engine.parse_case(document, today=today)
        except engine.CaseInvalid as invalid:
            raise BundleInvalid(
                [_issue_for(error, sources, content.patient_path) for error in invalid.errors]
            ) from None
        # Composed, as Patient.save keeps it: a Bundle's "É" as E and an accent is no change.
        name = unicodedata.normalize("NFC", content.name or (patient.name if patient else ""))
        unchanged = (
            patient is not None and engine.case_to_document(case) == before and name == patient.name
        )
        if patient is not None and unchanged:
            follow_ups_sync(patient=patient)  # today's assessment, as after any save
        else:
            try:
                patient = patient_save_case(
                    user=user, case=case, mrn=content.mrn, name=name, clinic=clinic,
                    patient=patient, expected_version=patient.version if patient else None,
                    result_source=LabResult.Source.IMPORTED,
                    corrected_by_lab={
                        (lab.test, lab.collected_on, lab.collected_time)
                        for lab in content.labs if lab.amends
                    },
                )  # fmt: skip
            except DuplicateMrn as duplicate:  # created meanwhile by another import
                raise BundleConflict(
                    [Issue(content.patient_path + ".identifier", str(duplicate), code="conflict")]
                ) from None
            except StaleVersion as stale:
                raise BundleConflict(
                    [Issue(content.patient_path, str(stale), code="conflict")]
                ) from None
        assert patient is not None
        commented = _lab_comments_store(patient, content.labs)
        access_log_record(user=user, patient=patient, action="fhir: import", path=path)
    return ImportOutcome(
        patient=patient, created=before is None, changed=not unchanged or commented,
        counts=counts,
        notes=content.notes, patient_entry=content.patient_entry,
    )  # fmt: skip


def _lab_comments_store(patient: Patient, labs: list[Any]) -> bool:
    """The laboratory's comments a Bundle gives (Observation.note) onto the stored results;
    a result without one keeps its own. Whether any changed."""
    commented = [entry for entry in labs if entry.comment]
    if not commented:
        return False
    stored = {(r.test, r.collected_on, r.collected_time): r for r in patient.lab_results.all()}
    changed = False
    for entry in commented:  # one read of the results, not one per comment
        result = stored.get((entry.test, entry.collected_on, entry.collected_time))
        if result is not None and result.lab_comment != entry.comment:
            result.lab_comment = entry.comment
            result.save()
            changed = True
    return changed


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": issue.severity,
                "code": issue.code,
                "diagnostics": issue.message,
                "expression": [issue.path],
            }
            for issue in issues
        ],
    }


def import_response(outcome: ImportOutcome, bundle_type: str, entries: int) -> dict[str, Any]:
    """What the import answers: a summary OperationOutcome (collection), or a
    transaction-response Bundle carrying it (transaction)."""
    patient = outcome.patient
    changes = ", ".join(f"{name.replace('_', ' ')} {n}" for name, n in outcome.counts.items() if n)
    what = "created" if outcome.created else ("updated" if outcome.changed else "unchanged")
    summary = Issue(
        f"Patient/{patient.pk}",
        f"patient {patient.mrn} {what} (version {patient.version})"
        + (f": {changes}" if changes else ""),
        severity="information",
        code="informational",
    )
    result = operation_outcome([summary, *outcome.notes])
    if bundle_type != "transaction":
        return result
    status = "201 Created" if outcome.created else "200 OK"
    return {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [
            {"response": {"status": status, "location": f"Patient/{patient.pk}", "outcome": result}}
            if index == outcome.patient_entry
            else {"response": {"status": "200 OK"}}
            for index in range(entries)
        ],
    }


# ---------------------------------------------------------------------------------------------
# Export.


def _coding(code: fhir_codes.Code) -> dict[str, str]:
    return {"system": code.system, "code": code.code, "display": code.display}


def _when(day: date, at: time | None) -> str:
    if at is None:
        return day.isoformat()
    return timezone.make_aware(datetime.combine(day, at)).isoformat()


def _extension_value(item: declaration.CaseField, value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if item.kind == "bool":
        return [{"valueBoolean": bool(value)}]
    if item.kind == "number":
        return [{"valueDecimal": value}]
    if item.kind == "choice":
        return [{"valueCode": value}]
    if item.kind == "choices":
        return [{"valueCode": one} for one in value]
    if item.kind == "date":
        return [{"valueDate": value if isinstance(value, str) else value.isoformat()}]
    if item.kind == "datetime":
        return [{"valueDateTime": value}]
    return [{"valueString": str(value)}]


def _get(document: dict[str, Any], path: str) -> Any:
    part: Any = document
    for name in path.split("."):
        part = part.get(name) if isinstance(part, dict) else None
    return part


def _patient_resource(patient: Patient, document: dict[str, Any]) -> dict[str, Any]:
    """The Patient resource, its case fields without a standard code in the extension."""
    extension = [
        {"url": path, **value}
        for path, item in extension_fields().items()
        for value in _extension_value(item, _get(document, path))
    ]
    patient_resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": str(patient.pk),
        "identifier": [
            {
                "type": {"coding": [{"system": fhir_codes.IDENTIFIER_TYPE, "code": "MR"}]},
                "system": f"{fhir_codes.MRN_SYSTEM}/{patient.clinic.slug}",
                "value": patient.mrn,
            }
        ],
        "name": [{"text": patient.name}],
        "gender": patient.sex,
        "birthDate": patient.birth_date.isoformat(),
    }
    if extension:
        patient_resource["extension"] = [{"url": fhir_codes.CASE_EXTENSION, "extension": extension}]
    return patient_resource


def _stored_document(patient: Patient, today: date) -> dict[str, Any]:
    return engine.case_to_document(patient_to_case(patient, as_of=today))


def export_patient(patient: Patient) -> dict[str, Any]:
    """The Patient resource alone (``GET /api/v1/fhir/Patient/{id}``, the import's Location),
    as $everything writes it."""
    return _patient_resource(patient, _stored_document(patient, timezone.localdate()))


def export_everything(patient: Patient, *, base: str) -> dict[str, Any]:
    """The patient's Bundle (type collection: it imports as it is)."""
    today = timezone.localdate()
    document = _stored_document(patient, today)
    subject = {"reference": f"Patient/{patient.pk}"}
    recorded = timezone.localtime(patient.updated_at).isoformat()
    resources: list[dict[str, Any]] = [_patient_resource(patient, document)]

    # In the order the engine assesses them (spec §2: a bare date and a T00:00 result of one
    # day keep their stored order), so that the import keeps that order too.
    for row in sorted(patient.lab_results.all(), key=lab_order):
        # reference-intervals.md pairs each LOINC code with one UCUM unit: a result stored in
        # another (creatinine in umol/L under the mass code 2160-0) is written in that unit.
        value, unit = engine.to_canonical(row.test, row.unit, row.value)
        loinc = declaration.loinc_code(row.test, unit)
        code = (
            {"system": LOINC, "code": loinc}
            if loinc
            else {"system": fhir_codes.LAB_TEST_SYSTEM, "code": row.test}
        )
        label = declaration.lab_test(row.test).label
        observation: dict[str, Any] = {
            "resourceType": "Observation",
            "id": f"result-{row.pk}",
            # FHIR's "corrected": modified after being final, to correct an error (the mark).
            "status": "corrected" if row.corrected_from else "final",
            "category": [
                {"coding": [{"system": fhir_codes.OBSERVATION_CATEGORY, "code": "laboratory"}]}
            ],
            "code": {"coding": [{**code, "display": label}], "text": label},
            "subject": subject,
            "effectiveDateTime": _when(row.collected_on, row.collected_time),
            "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
        }
        reference: dict[str, Any] = {}
        for end, name in (("low", "reference_low"), ("high", "reference_high")):
            limit = getattr(row, name, None)
            if limit is not None:
                limit = engine.to_canonical(row.test, row.unit, limit)[0]
                reference[end] = {"value": limit, "unit": unit, "system": UCUM, "code": unit}
        if reference:
            observation["referenceRange"] = [reference]
        if row.lab_comment:  # the laboratory's comment (HL7 NTE)
            observation["note"] = [{"text": row.lab_comment}]
        resources.append(observation)

    def vital(
        code: fhir_codes.Code, suffix: str, value: dict[str, Any], effective: str = recorded
    ) -> None:
        resources.append({
            "resourceType": "Observation", "id": f"patient-{patient.pk}-{suffix}",
            "status": "final", "code": {"coding": [_coding(code)]}, "subject": subject,
            "effectiveDateTime": effective, **value,
        })  # fmt: skip

    if patient.weight_kg is not None:
        vital(fhir_codes.WEIGHT, "weight", {"valueQuantity": {
            "value": patient.weight_kg, "unit": "kg", "system": UCUM, "code": "kg"}})  # fmt: skip
    if patient.sex == "female":
        answer = fhir_codes.PREGNANT if patient.pregnant else fhir_codes.NOT_PREGNANT
        vital(
            fhir_codes.PREGNANCY_STATUS,
            "pregnancy",
            {"valueCodeableConcept": {"coding": [_coding(answer)]}},
        )
    weeks = _get(document, "patient.gestational_weeks")
    if declaration.declared_field("patient.gestational_weeks") is not None and weeks is not None:
        # The case's weeks hold on its assessment date, today (spec §1): an import counts the
        # weeks since the observation's date, so dated at the last edit they grew on re-import.
        vital(fhir_codes.GESTATIONAL_AGE, "gestational-age", {"valueQuantity": {
            "value": weeks, "unit": "wk", "system": UCUM, "code": "wk"}},
            effective=today.isoformat())  # fmt: skip

    conditions: list[tuple[str, fhir_codes.Code]] = [
        (diagnosis, fhir_codes.DIAGNOSIS_CODES[diagnosis])
        for diagnosis in document["clinical"]["diagnoses"]
    ]
    cancer = document["clinical"]["cancer"]
    if cancer is not None:
        key = "breast_male" if cancer == "breast" and patient.sex == "male" else cancer
        conditions.append((f"cancer-{cancer}", fhir_codes.CANCER_CODES[key]))
    active = {"coding": [{"system": fhir_codes.CONDITION_CLINICAL, "code": "active"}]}
    for name, condition in conditions:
        resources.append({
            "resourceType": "Condition", "id": f"patient-{patient.pk}-{name.replace('_', '-')}",
            "clinicalStatus": active,
            "code": {"coding": [_coding(condition)]}, "subject": subject,
        })  # fmt: skip

    for therapy in patient.therapies.all():
        agent = fhir_codes.AGENT_CODES[therapy.agent]
        period = {"start": therapy.start.isoformat()}
        if therapy.end is not None:
            period["end"] = therapy.end.isoformat()
        resources.append({
            "resourceType": "MedicationStatement", "id": f"therapy-{therapy.pk}",
            "status": "completed" if therapy.end is not None and therapy.end < today else "active",
            "medicationCodeableConcept": {"coding": [_coding(agent)]}, "subject": subject,
            "effectivePeriod": period,
        })  # fmt: skip

    return {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": timezone.now().isoformat(),
        "entry": [
            {"fullUrl": f"{base}{resource['resourceType']}/{resource['id']}", "resource": resource}
            for resource in resources
        ],
    }
