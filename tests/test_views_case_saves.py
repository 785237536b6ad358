"""Saving the case-entry and result forms: a course listed twice, a stored result typed again,
and rows posted without their management form (found by a defect hunt; each test failed
before)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from pathways.case_post import form_data
from pathways.cases import patient_to_document
from pathways.models import Patient
from tests.factories import (
    edit_page_post,
    form_as_shown,
    paget_on_alendronate_document,
    revision_2_inputs_document,
    stored_patient,
)

pytestmark = pytest.mark.django_db


def _document(therapies: list[dict[str, Any]]) -> dict[str, Any]:
    document = paget_on_alendronate_document()
    document["clinical"]["therapies"] = therapies
    return document


def _courses(patient: Patient) -> list[tuple[str, str, str | None]]:
    return sorted(
        (t.agent, t.start.isoformat(), t.end.isoformat() if t.end else None)
        for t in patient.therapies.all()
    )


def test_a_course_listed_twice_stays_twice_and_one_row_removed_goes(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    """Stored therapies were matched one per agent and start: each save of the unchanged edit
    page added a copy, and removing one of two rows removed none."""
    twice = [{"agent": "zoledronic_acid", "start": "2026-03-01", "end": "2026-03-01"}] * 2
    patient = stored_patient(north_clinic, alice, _document(twice))
    before = _courses(patient)
    assert len(before) == 2
    for _ in range(2):
        response = alice_client.post(
            f"/patients/{patient.pk}/edit/", edit_page_post(_document(twice), patient)
        )
        assert response.status_code == 302
        assert _courses(patient) == before

    two_ends = [
        {"agent": "denosumab", "start": "2026-01-10", "end": "2026-01-10"},
        {"agent": "denosumab", "start": "2026-01-10", "end": "2026-07-10"},
    ]
    other = stored_patient(north_clinic, alice, _document(two_ends), mrn="PAGET-2")
    kept = _document(two_ends[1:])
    assert (
        alice_client.post(f"/patients/{other.pk}/edit/", edit_page_post(kept, other)).status_code
        == 302
    )
    assert _courses(other) == [("denosumab", "2026-01-10", "2026-07-10")]


def test_a_stored_result_typed_again_is_refused_naming_its_own_time(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    """The engine drops a repeat that agrees with a stored result (spec §1); the form then took
    the last result of the case for the typed one and named another result's time."""
    patient = stored_patient(north_clinic, alice, paget_on_alendronate_document())
    stored = patient.lab_results.count()
    again = {
        "test": "alp", "value": "412", "unit": "U/L", "collected_on": "2026-06-01",
        "collected_time": "08:15", "reference_high": "129", "version": str(patient.version),
    }  # fmt: skip
    response = alice_client.post(
        f"/patients/{patient.pk}/results/", again, headers={"HX-Request": "true"}
    )
    assert response.status_code == 422
    assert (
        "A alp result collected at 2026-06-01 08:15 is already recorded."
        in response.content.decode()
    )
    assert patient.lab_results.count() == stored


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        (("therapies-TOTAL_FORMS", "therapies-INITIAL_FORMS"), "therapies-TOTAL_FORMS"),
        (("labs-INITIAL_FORMS",), "labs-TOTAL_FORMS"),
    ],
)
def test_rows_posted_without_their_management_form_are_refused_saying_so(
    alice_client: Client, missing: tuple[str, ...], message: str
) -> None:
    """Django's formset refused them with an error no field carries: the page came back 200
    with nothing saved and nothing said."""
    document = paget_on_alendronate_document()
    document["clinical"]["therapies"] = []
    data = form_data(document)
    for name in missing:
        data.pop(name)
    response = alice_client.post("/patients/new/", data)
    assert response.status_code == 400
    assert response.content.decode() == (
        f"The form could not be read: {message} and {message.replace('TOTAL', 'INITIAL')} "
        "must be posted with the rows"
    )
    assert not Patient.objects.exists()


def test_the_edit_page_saved_as_shown_records_no_change(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    """Saving the edit page unchanged made a new version and a history row, though the stored
    case was the same (as a FHIR Bundle equal to it changes nothing); and a case stored from
    a document with its diagnoses in another order than the form's was rewritten by the form.
    Diagnoses are now kept in the declared order whatever the order given. Found by an audit."""
    document = revision_2_inputs_document(timezone.localdate())
    assert document["clinical"]["diagnoses"] == ["osteoporosis", "mgus"]
    patient = stored_patient(north_clinic, alice, document)
    before = patient_to_document(Patient.objects.get(pk=patient.pk))
    version, history = patient.version, patient.history.count()
    url = f"/patients/{patient.pk}/edit/"
    response = alice_client.post(url, form_as_shown(alice_client, url, "case-form"))
    assert response.status_code == 302
    stored = Patient.objects.get(pk=patient.pk)
    assert patient_to_document(stored) == before
    assert (stored.version, stored.history.count()) == (version, history)
