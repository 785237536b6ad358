"""The one conversion in each direction between a stored Patient and the engine's Case.

Stored rows become an ``engine.Case`` directly, field by field as the case declaration
(``engine/declaration.py``) lists them; ``engine.case_to_document`` turns a case into the spec's
document for export. Rows were validated by the engine when they were saved.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, time
from typing import Any

from django.utils import timezone

from pathways import engine
from pathways.engine.declaration import CLINICAL, MYELOMA, PATIENT, THERAPY, Group
from pathways.models import LabResult, Patient, Therapy


def _columns(group: Group, row: Any) -> dict[str, Any]:
    """The declared fields of one group, read from a row's columns (``mm_response``)."""
    values = {item.name: getattr(row, group.prefix + item.name) for item in group.fields}
    for item in group.fields:
        if item.kind == "choice" and not item.required and values[item.name] == "":
            values[item.name] = None  # a blank choice column is "not given"
        elif item.kind == "choices":
            values[item.name] = tuple(values[item.name])
    return values


def stored_lab(row: Any) -> engine.Lab:
    """A stored result as the engine's Lab; its canonical value was converted when it was saved
    (a migration recomputes the column if a conversion ever changes)."""
    reference_high, reference_low = row.reference_high, row.reference_low
    return engine.Lab(
        test=row.test,
        value=row.value,
        unit=row.unit,
        collected_on=row.collected_on,
        collected_time=row.collected_time,
        reference_high=reference_high,
        canonical_value=row.canonical_value,
        canonical_unit=row.canonical_unit,
        canonical_reference_high=(
            None
            if reference_high is None
            else engine.to_canonical(row.test, row.unit, reference_high)[0]
        ),
        reference_low=reference_low,
        canonical_reference_low=(
            None
            if reference_low is None
            else engine.to_canonical(row.test, row.unit, reference_low)[0]
        ),
    )


def lab_order(row: Any) -> tuple[date, time, str, int]:
    """Spec §2: by date and time, a bare date as 00:00, ties in document order. A stored
    patient's document order is the order its results were stored in (a case saved from a
    document keeps that document's order): a bare date and a T00:00 result of one test on one
    day stay as they came, so the stored patient is assessed as the document it came from."""
    return (row.collected_on, row.collected_time or time.min, row.test, row.id)


def patient_to_case(
    patient: Patient,
    *,
    as_of: date | None = None,
    labs: Sequence[Any] | None = None,
    therapies: Sequence[Any] | None = None,
) -> engine.Case:
    """The case of a stored patient. ``labs`` and ``therapies``, when given, are its rows read
    beforehand (model instances, or the plain rows of ``stored_rows``)."""
    labs = list(patient.lab_results.all()) if labs is None else labs
    therapies = list(patient.therapies.all()) if therapies is None else therapies
    try:
        lab_cases = tuple(stored_lab(row) for row in sorted(labs, key=lab_order))
    except KeyError as unknown:  # a unit no longer declared for its test
        location = ("labs",)
        raise engine.CaseInvalid(
            [engine.FieldError("labs", f"stored unit {unknown} is not declared", location)]
        ) from None
    return engine.Case(
        as_of=as_of or timezone.localdate(),
        patient=engine.PatientInfo(**_columns(PATIENT, patient)),
        labs=lab_cases,
        clinical=engine.Clinical(
            **_columns(CLINICAL, patient),
            myeloma=engine.Myeloma(**_columns(MYELOMA, patient)),
            therapies=tuple(
                engine.Therapy(**_columns(THERAPY, therapy))
                for therapy in sorted(therapies, key=lambda t: (t.start, t.agent))
            ),
        ),
    )


_LAB_COLUMNS = (
    "id",
    "test",
    "value",
    "unit",
    "canonical_value",
    "canonical_unit",
    "collected_on",
    "collected_time",
    "reference_high",
    "reference_low",
)
_THERAPY_COLUMNS = tuple(item.name for item in THERAPY.fields)


def stored_rows(patients: Sequence[Patient]) -> tuple[dict[int, list[Any]], dict[int, list[Any]]]:
    """The results and the therapies of many patients as plain rows, by patient id, in two
    queries: for ``patient_to_case`` over a whole population (no model instance per row)."""
    ids = [patient.pk for patient in patients]
    labs: dict[int, list[Any]] = defaultdict(list)
    therapies: dict[int, list[Any]] = defaultdict(list)
    lab_rows = LabResult.objects.filter(patient_id__in=ids).order_by()
    for row in lab_rows.values_list("patient_id", *_LAB_COLUMNS, named=True):
        labs[row.patient_id].append(row)
    therapy_rows = Therapy.objects.filter(patient_id__in=ids).order_by()
    for row in therapy_rows.values_list("patient_id", *_THERAPY_COLUMNS, named=True):
        therapies[row.patient_id].append(row)
    return labs, therapies


def patient_to_document(patient: Patient, *, as_of: date | None = None) -> dict[str, Any]:
    """The case document of a stored patient (export)."""
    return engine.case_to_document(patient_to_case(patient, as_of=as_of))


def apply_case_to_patient(case: engine.Case, patient: Patient) -> None:
    """Copy the patient and clinical parts of a case onto a Patient's columns (not saved)."""
    parts = ((PATIENT, case.patient), (CLINICAL, case.clinical), (MYELOMA, case.clinical.myeloma))
    for group, part in parts:
        for item in group.fields:
            value = getattr(part, item.name)
            if item.kind == "choice" and value is None:
                value = ""
            elif item.kind == "choices":
                value = list(value)
            setattr(patient, group.prefix + item.name, value)


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
        "reference_low": lab.reference_low,
    }
