"""Input limits and locking on the case-entry and result screens (issue 9, findings 6, 7, 8):
any number of stored results can be saved, every posted row count and the live preview's JSON
are bounded with a clear 400, and no write to a stored patient goes without its version."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client

from pathways import engine
from pathways.case_post import as_browser_json, form_data
from pathways.forms import MAX_ROWS, case_draft
from pathways.models import LabResult, Patient
from tests.factories import (
    TODAY,
    edit_page_post,
    myeloma_on_zoledronic_acid_14_months_document,
    paget_on_alendronate_document,
    stored_patient,
)

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}


def _monthly_alp(count: int) -> list[dict[str, Any]]:
    first = TODAY - timedelta(days=count)
    return [
        {
            "test": "alp",
            "value": 200 + index % 50,
            "unit": "U/L",
            "collected_at": (first + timedelta(days=index)).isoformat(),
        }
        for index in range(count)
    ]


# ---------------------------------------------------------------------------------------------
# Finding 6: a patient with any number of results can be saved from the edit page.


def test_a_patient_with_250_results_is_saved_from_the_edit_page_with_every_result_kept(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    document = paget_on_alendronate_document(labs=_monthly_alp(250))
    patient = stored_patient(north_clinic, alice, document)
    page = alice_client.get(f"/patients/{patient.pk}/edit/").content.decode()
    assert 'name="labs-0-value"' not in page  # results are not re-posted
    assert page.count(f"/patients/{patient.pk}/results/") >= 250  # each corrected on its own

    data = edit_page_post(document, patient)
    data["name"] = "Margaret A. Ellis"
    response = alice_client.post(f"/patients/{patient.pk}/edit/", data)
    assert response.status_code == 302
    saved = Patient.objects.get(pk=patient.pk)
    assert saved.name == "Margaret A. Ellis" and saved.lab_results.count() == 250


def test_the_live_preview_reads_every_posted_row_up_to_the_limit(
    alice_client: Client,
) -> None:
    document = paget_on_alendronate_document(labs=_monthly_alp(600))
    data = as_browser_json(form_data(document))
    assert len(case_draft(data).document["labs"]) == 600  # no silent cap at 500
    response = alice_client.post("/case/preview/", data, content_type="application/json")
    assert response.status_code == 200

    data["labs-TOTAL_FORMS"] = str(MAX_ROWS + 1)
    response = alice_client.post("/case/preview/", data, content_type="application/json")
    assert response.status_code == 400
    assert f"from 0 to {MAX_ROWS}" in response.content.decode()


def test_a_result_is_corrected_on_its_own_with_the_version(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    patient = stored_patient(north_clinic, alice)
    result = patient.lab_results.order_by("collected_on").first()
    assert result is not None
    url = f"/patients/{patient.pk}/results/{result.pk}/"
    page = alice_client.get(url).content.decode()
    assert 'name="version"' in page and 'name="value"' in page
    posted = {
        "test": "alp",
        "value": "421",
        "unit": "U/L",
        "collected_on": "2026-06-01",
        "collected_time": "08:15",
        "reference_high": "129",
        "version": str(patient.version),
    }
    assert alice_client.post(url, posted).status_code == 302
    result.refresh_from_db()
    assert result.value == 421 and result.canonical_value == 421
    assert result.history.count() == 2  # the correction is in the result's history

    stale = alice_client.post(url, {**posted, "value": "422"})  # sent from the old page
    assert stale.status_code == 400 and "changed by someone else" in stale.content.decode()
    result.refresh_from_db()
    assert result.value == 421


def test_a_corrected_result_is_checked_by_the_engine_on_its_field(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    patient = stored_patient(north_clinic, alice)
    first, second = patient.lab_results.order_by("collected_on")
    url = f"/patients/{patient.pk}/results/{first.pk}/"
    posted = {
        "test": "alp",
        "value": "400",
        "unit": "U/L",
        "collected_on": second.collected_on.isoformat(),
        "collected_time": second.collected_time.strftime("%H:%M") if second.collected_time else "",
        "version": str(patient.version),
    }
    response = alice_client.post(url, posted)
    assert response.status_code == 400
    assert "already recorded" in response.content.decode()
    first.refresh_from_db()
    assert first.value == 412


# ---------------------------------------------------------------------------------------------
# Finding 7: input that cannot be read is a 400 naming the problem, never a 500.


@pytest.mark.parametrize(
    "body",
    [
        '{"therapies-TOTAL_FORMS": "Infinity"}',
        '{"labs-TOTAL_FORMS": 1e400}',
        '{"therapies-TOTAL_FORMS": "1e400"}',
        '{"therapies-TOTAL_FORMS": "-1"}',
        '{"labs-TOTAL_FORMS": ["1", ["2"]]}',
        "[" * 100_000,
        '{"a": ' * 100_000,
        "[1, 2]",
        "not json",
    ],
)
def test_the_live_previews_answer_unreadable_json_with_a_400(
    alice_client: Client, alice: Any, north_clinic: Any, body: str
) -> None:
    patient = stored_patient(north_clinic, alice)
    for url in ("/case/preview/", f"/patients/{patient.pk}/case/preview/"):
        response = alice_client.post(url, body, content_type="application/json", headers=HTMX)
        assert response.status_code == 400, (url, body[:30])
        assert "could not read the form" in response.content.decode()


@pytest.mark.parametrize("count", ["Infinity", "1e400", "99999999999999999999", "2.5"])
def test_a_posted_row_count_that_is_not_a_whole_number_in_range_is_a_400(
    alice_client: Client, count: str
) -> None:
    data = form_data(myeloma_on_zoledronic_acid_14_months_document())
    data["labs-TOTAL_FORMS"] = count
    response = alice_client.post("/patients/new/", data)
    assert response.status_code == 400
    assert "labs-TOTAL_FORMS must be a whole number" in response.content.decode()
    assert not Patient.objects.exists()
    added = alice_client.post("/case/rows/lab/", {"labs-TOTAL_FORMS": count}, headers=HTMX)
    assert added.status_code == 400


def test_a_number_too_large_for_a_float_is_refused_on_its_field(alice_client: Client) -> None:
    data = as_browser_json(form_data(myeloma_on_zoledronic_acid_14_months_document()))
    data["labs-0-value"] = "1e400"
    response = alice_client.post("/case/preview/", data, content_type="application/json")
    assert response.status_code == 200
    assert "must be a finite number" in response.content.decode()


# ---------------------------------------------------------------------------------------------
# Finding 8: a write to a stored patient without the version it was loaded at is a 400.


def test_saving_the_case_without_its_version_is_a_400_and_changes_nothing(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    document = myeloma_on_zoledronic_acid_14_months_document()
    patient = stored_patient(north_clinic, alice, document)
    data = edit_page_post(document, patient)
    del data["version"]
    data["name"] = "Overwritten"
    response = alice_client.post(f"/patients/{patient.pk}/edit/", data)
    assert response.status_code == 400
    assert "sent without the version" in response.content.decode()
    assert Patient.objects.get(pk=patient.pk).name == patient.name


def test_every_result_write_without_the_version_is_a_400(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    patient = stored_patient(north_clinic, alice)
    result = patient.lab_results.first()
    assert result is not None
    new_result = {
        "test": "alp",
        "value": "233",
        "unit": "U/L",
        "collected_on": (TODAY - timedelta(days=1)).isoformat(),
    }
    base = f"/patients/{patient.pk}/results/"
    assert alice_client.post(base, new_result).status_code == 400
    assert alice_client.post(f"{base}{result.pk}/", new_result).status_code == 400
    assert alice_client.post(f"{base}{result.pk}/remove/").status_code == 400
    assert LabResult.objects.filter(patient=patient).count() == 2
    assert Patient.objects.get(pk=patient.pk).version == patient.version


def test_the_service_never_changes_a_stored_patient_without_a_version(
    alice: Any, north_clinic: Any
) -> None:
    from pathways.services import patient_save_case

    patient = stored_patient(north_clinic, alice)
    with pytest.raises(ValueError, match="expected_version"):
        patient_save_case(
            user=alice,
            case=engine.parse_case(paget_on_alendronate_document()),
            mrn=patient.mrn,
            name="No version",
            patient=patient,
        )
    assert Patient.objects.get(pk=patient.pk).name == patient.name
