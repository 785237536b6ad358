"""Case entry: the live assessment (htmx fragments), adding rows, and saving."""

from __future__ import annotations

import json
import re
from html import unescape
from typing import Any

import pytest
from django.http import QueryDict
from django.test import Client

from pathways.assessment import assess_document
from pathways.models import AccessLog, FollowUp, Patient
from pathways.services import follow_up_mark_done
from tests.factories import (
    TODAY,
    as_browser_json,
    form_data,
    myeloma_on_zoledronic_acid_14_months_document,
    paget_on_alendronate_document,
    stored_patient,
)

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}


def myeloma_needing_bisphosphonate(crcl: float | None = None) -> dict[str, Any]:
    """Myeloma requiring therapy with bone disease, elevated bone ALP, no bone-targeted agent."""
    labs: list[dict[str, Any]] = [
        {"test": "alp", "value": 180, "unit": "U/L", "collected_at": "2026-10-01T08:00"},
        {"test": "bone_alp", "value": 31, "unit": "ug/L", "collected_at": "2026-10-01"},
    ]
    if crcl is not None:
        labs.append({"test": "crcl", "value": crcl, "unit": "mL/min", "collected_at": "2026-10-02"})
    return {
        "patient": {"birth_date": "1952-04-11", "sex": "male", "weight_kg": 80},
        "labs": labs,
        "clinical": {
            "diagnoses": ["multiple_myeloma"],
            "myeloma": {"requires_therapy": True, "bone_disease": True},
        },
    }


def codes(html: str) -> set[str]:
    return set(re.findall(r'data-code="([a-z0-9-]+)"', html))


def follow_up_statuses(html: str) -> set[tuple[str, str]]:
    """The case panel's follow-up schedule as (code, status) pairs."""
    return set(re.findall(r'data-follow-up="([a-z0-9-]+)"><span class="status-([a-z]+)"', html))


def live_errors(html: str) -> dict[str, list[str]]:
    """The field errors a live update sends (out of band, as JSON for case-entry.js)."""
    match = re.search(r'id="live-errors" hidden data-errors="([^"]*)" hx-swap-oob="true"', html)
    assert match, html
    errors: dict[str, list[str]] = json.loads(unescape(match[1]))
    return errors


def test_the_new_patient_page_renders_an_empty_form(alice_client: Client) -> None:
    response = alice_client.get("/patients/new/")
    html = response.content.decode()
    assert response.status_code == 200
    assert (
        'id="case-form"' in html
        and 'id="case-status" class="small mb-2 text-muted" role="status"' in html
    )
    assert '<div id="assessment">' in html  # not a live region: the status line speaks
    assert 'name="labs-0-value"' in html  # one empty result row to start with
    assert 'hx-post="/case/preview/"' in html


def test_the_live_preview_shows_the_engine_result_for_the_typed_case(alice_client: Client) -> None:
    document = myeloma_needing_bisphosphonate()
    response = alice_client.post("/case/preview/", form_data(document), headers=HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert codes(html) == {r.code for r in assess_document(document).recommendations}
    assert {"mm-bone-agent", "measure-renal-first"} <= codes(html)  # no CrCl: measure it first
    assert "Rule set" in html and live_errors(html) == {}
    # The status line (a live region) says the update in a few words, not the whole panel.
    result = assess_document(document)
    urgent_high = [r for r in result.recommendations if r.priority in ("urgent", "high")]
    assert f'id="live-summary">{len(result.recommendations)} recommendations' in html
    assert urgent_high and f"{len([r for r in urgent_high if r.priority == 'high'])} high" in html


def test_a_crcl_of_45_doses_zoledronic_acid_and_offers_denosumab_and_pamidronate(
    alice_client: Client,
) -> None:
    html = alice_client.post(
        "/case/preview/", form_data(myeloma_needing_bisphosphonate(crcl=45)), headers=HTMX
    ).content.decode()
    assert {"za-dose", "mm-denosumab-renal", "mm-pamidronate-renal"} <= codes(html)
    assert "measure-renal-first" not in codes(html)
    assert "Zoledronic acid 3.3 mg" in html  # the label's dose for CrCl 40-49


def test_an_engine_error_shows_on_its_field_and_keeps_the_panel(alice_client: Client) -> None:
    data = form_data(myeloma_needing_bisphosphonate())
    data["labs-1-unit"] = "mL/min"  # not a bone ALP unit: the engine's error, labs[1].unit
    response = alice_client.post("/case/preview/", data, headers=HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert response["HX-Reswap"] == "none"  # the last good panel stays on screen
    assert live_errors(html) == {
        "id_labs-1-unit-error": [
            '"mL/min" is not a unit for bone_alp; use one of ug/L, U/L, ukat/L'
        ]
    }
    assert "1 entry needs attention" in html
    assert "data-code=" not in html


@pytest.mark.parametrize("crcl", [None, 45])
def test_the_live_preview_reads_the_form_posted_as_json_like_the_form(
    alice_client: Client, crcl: float | None
) -> None:
    data = form_data(myeloma_needing_bisphosphonate(crcl=crcl))
    data["diagnoses"] = ["multiple_myeloma", "chronic_kidney_disease"]  # a repeated name
    data["labs-0-unit"] = "U/L" if crcl is None else "mmol/L"  # an error on the field
    as_form = alice_client.post("/case/preview/", data, headers=HTMX).content.decode()
    response = alice_client.post(
        "/case/preview/",
        json.dumps(as_browser_json(data)),
        content_type="application/json",
        headers=HTMX,
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert codes(html) == codes(as_form)
    assert live_errors(html) == live_errors(as_form)
    if crcl is None:  # the second diagnosis (CKD) was read: renal impairment
        assert "mm-pamidronate-renal" in codes(html)
    else:  # a unit that is not one for ALP: the error, not a panel
        assert list(live_errors(html)) == ["id_labs-0-unit-error"] and not codes(html)


@pytest.mark.parametrize("body", ["{", "[1, 2]", '"labs"'])
def test_a_live_preview_that_is_not_a_json_object_is_a_bad_request(
    alice_client: Client, body: str
) -> None:
    response = alice_client.post(
        "/case/preview/", body, content_type="application/json", headers=HTMX
    )
    assert response.status_code == 400
    assert "could not read the form" in response.content.decode()


def test_a_value_that_is_not_a_number_is_an_inline_error(alice_client: Client) -> None:
    data = form_data(myeloma_needing_bisphosphonate())
    data["labs-0-value"] = "12,x"
    response = alice_client.post("/case/preview/", data, headers=HTMX)
    html = response.content.decode()
    assert response["HX-Reswap"] == "none"
    assert live_errors(html) == {"id_labs-0-value-error": ["must be a number"]}


def test_a_result_dated_after_today_is_refused_by_the_engine(alice_client: Client) -> None:
    data = form_data(myeloma_needing_bisphosphonate())
    data["labs-0-collected_on"] = "2199-01-01"  # after today, within the date range
    html = alice_client.post("/case/preview/", data, headers=HTMX).content.decode()
    assert live_errors(html) == {
        "id_labs-0-collected_on-error": ["collected after the assessment date (today)"]
    }


def test_missing_required_fields_are_awaited_not_shouted(alice_client: Client) -> None:
    data = form_data(myeloma_needing_bisphosphonate())
    data["birth_date"] = ""
    data["labs-0-collected_on"] = ""
    response = alice_client.post("/case/preview/", data, headers=HTMX)
    html = response.content.decode()
    assert response["HX-Reswap"] == "none"
    assert "Waiting for: birth date, result 1: collected on" in html
    assert live_errors(html) == {}


def test_a_row_marked_for_removal_leaves_the_case(alice_client: Client) -> None:
    data = form_data(myeloma_needing_bisphosphonate(crcl=45))
    data["labs-2-DELETE"] = "on"  # the CrCl of 45: renal function unknown again
    html = alice_client.post("/case/preview/", data, headers=HTMX).content.decode()
    assert "measure-renal-first" in codes(html)
    assert not {"za-dose", "mm-pamidronate-renal"} & codes(html)


def test_adding_a_row_returns_the_row_and_the_new_form_count(alice_client: Client) -> None:
    data = form_data(myeloma_needing_bisphosphonate())
    response = alice_client.post("/case/rows/lab/", data, headers=HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert 'name="labs-2-value"' in html and 'name="labs-2-DELETE"' in html
    assert 'id="id_labs-TOTAL_FORMS" hx-swap-oob="true"' in html and 'value="3"' in html
    therapy = alice_client.post("/case/rows/therapy/", data, headers=HTMX).content.decode()
    assert 'name="therapies-0-agent"' in therapy and 'id="id_therapies-TOTAL_FORMS"' in therapy


def test_adding_a_row_works_without_javascript(alice_client: Client) -> None:
    data = form_data(myeloma_needing_bisphosphonate())
    data["add_lab"] = "1"
    response = alice_client.post("/patients/new/", data)
    html = response.content.decode()
    assert response.status_code == 200
    assert 'name="labs-2-value"' in html
    assert not Patient.objects.exists()


def test_saving_a_new_patient_stores_the_case_and_its_follow_ups(
    alice_client: Client, north_clinic: Any
) -> None:
    document = myeloma_on_zoledronic_acid_14_months_document()
    response = alice_client.post("/patients/new/", form_data(document, mrn="MM-9"))
    patient = Patient.objects.get(mrn="MM-9")
    assert response.status_code == 302 and response["Location"] == f"/patients/{patient.pk}/"
    assert patient.clinic == north_clinic
    assert patient.lab_results.count() == 5 and patient.therapies.count() == 1
    assert FollowUp.objects.filter(patient=patient).exists()
    page = alice_client.get(response["Location"]).content.decode()
    assert "Saved Ada Myeloma" in page


def test_saving_works_as_a_plain_post_and_reports_errors_on_the_fields(
    alice_client: Client,
) -> None:
    data = form_data(myeloma_needing_bisphosphonate())
    data["labs-1-unit"] = "mL/min"
    data["name"] = ""
    response = alice_client.post("/patients/new/", data)
    html = response.content.decode()
    assert response.status_code == 400
    assert "This field is required." in html.split('id="id_name-error"', 1)[1].split("</div>")[0]
    assert not Patient.objects.exists()
    data["name"] = "Ada"
    html = alice_client.post("/patients/new/", data).content.decode()
    assert "is not a unit for bone_alp" in html
    assert 'value="Ada"' in html  # the input is kept


def test_a_duplicate_mrn_is_shown_on_the_mrn_field(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    stored_patient(north_clinic, alice, mrn="MM-1")
    response = alice_client.post("/patients/new/", form_data(myeloma_needing_bisphosphonate()))
    html = response.content.decode()
    assert response.status_code == 400
    assert "already used" in html.split('id="id_mrn-error"', 1)[1].split("</div>")[0]


def test_editing_refuses_a_concurrent_change_and_keeps_the_input(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    patient = stored_patient(north_clinic, alice, myeloma_on_zoledronic_acid_14_months_document())
    page = alice_client.get(f"/patients/{patient.pk}/edit/").content.decode()
    assert f'name="version" value="{patient.version}"' in page
    assert "mm-bp-stop-1y" in codes(page)  # the panel starts from the stored case

    data = form_data(myeloma_on_zoledronic_acid_14_months_document(), name="First edit")
    data["version"] = str(patient.version)
    assert alice_client.post(f"/patients/{patient.pk}/edit/", data).status_code == 302

    stale = form_data(myeloma_on_zoledronic_acid_14_months_document(), name="Second edit")
    stale["version"] = str(patient.version)  # loaded before the first edit
    response = alice_client.post(f"/patients/{patient.pk}/edit/", stale)
    html = response.content.decode()
    assert response.status_code == 400
    assert "changed by someone else" in html
    assert 'value="Second edit"' in html
    assert Patient.objects.get(pk=patient.pk).name == "First edit"
    # Saving again is now a deliberate overwrite of the current version.
    stale["version"] = str(Patient.objects.get(pk=patient.pk).version)
    assert alice_client.post(f"/patients/{patient.pk}/edit/", stale).status_code == 302
    assert Patient.objects.get(pk=patient.pk).name == "Second edit"


def test_removing_a_result_is_its_own_request_with_the_version(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    patient = stored_patient(north_clinic, alice, myeloma_on_zoledronic_acid_14_months_document())
    result = patient.lab_results.first()
    assert result is not None
    url = f"/patients/{patient.pk}/results/{result.pk}/remove/"
    assert alice_client.post(url, {"version": str(patient.version)}).status_code == 302
    assert patient.lab_results.count() == 4
    assert Patient.objects.get(pk=patient.pk).version == patient.version + 1


def test_another_clinic_cannot_open_or_save_the_case(
    client: Client, alice: Any, bob: Any, north_clinic: Any
) -> None:
    patient = stored_patient(north_clinic, alice)
    client.force_login(bob)
    assert client.get(f"/patients/{patient.pk}/edit/").status_code == 404
    data = form_data(myeloma_needing_bisphosphonate(), name="Hijack")
    assert client.post(f"/patients/{patient.pk}/edit/", data, headers=HTMX).status_code == 404
    assert Patient.objects.get(pk=patient.pk).name != "Hijack"


def test_fragments_need_a_login_and_a_post(alice_client: Client) -> None:
    for url in ("/case/preview/", "/case/rows/lab/", "/case/rows/therapy/"):
        # htmx is told to take the whole browser to the login page (HX-Redirect).
        assert Client().post(url, headers=HTMX)["HX-Redirect"].startswith("/accounts/login/")
        assert alice_client.get(url, headers=HTMX).status_code == 405


def test_the_form_and_the_json_give_the_same_case(alice_client: Client) -> None:
    from pathways import engine
    from pathways.forms import case_draft

    for document in (
        myeloma_on_zoledronic_acid_14_months_document(),
        myeloma_needing_bisphosphonate(crcl=45),
    ):
        data = QueryDict(mutable=True)
        for key, value in form_data(document).items():
            data.setlist(key, value if isinstance(value, list) else [str(value)])
        from_form = engine.parse_case(case_draft(data).document, today=TODAY)
        assert from_form == engine.parse_case(document, today=TODAY)


def test_row_and_context_errors_land_on_their_fields(alice_client: Client) -> None:
    document = myeloma_on_zoledronic_acid_14_months_document()
    data = form_data(document)
    data["therapies-0-end"] = "2020-01-01"  # before its start
    data["mm_treatment_start"] = "2025-13-40"
    html = alice_client.post("/case/preview/", data, headers=HTMX).content.decode()
    assert live_errors(html) == {
        "id_therapies-0-end-error": ["ends before it starts"],
        "id_mm_treatment_start-error": ['"2025-13-40" is not a date (YYYY-MM-DD)'],
    }


@pytest.fixture
def review_marked_done_by_hand(alice: Any, north_clinic: Any) -> FollowUp:
    """The 1-year bisphosphonate review of a myeloma patient, overdue, marked done by hand."""
    patient = stored_patient(north_clinic, alice, myeloma_on_zoledronic_acid_14_months_document())
    review = FollowUp.objects.get(patient=patient, code="bp-review-1y")
    assert review.completed_at is None and review.due < TODAY
    return follow_up_mark_done(follow_up=review, user=alice)


def test_the_edit_page_shows_a_follow_up_marked_done_by_hand_as_done(
    alice_client: Client, review_marked_done_by_hand: FollowUp
) -> None:
    patient = review_marked_done_by_hand.patient
    page = alice_client.get(f"/patients/{patient.pk}/edit/").content.decode()
    assert ("bp-review-1y", "done") in follow_up_statuses(page)
    assert f'hx-post="/patients/{patient.pk}/case/preview/"' in page


def test_the_edit_pages_live_panel_keeps_a_follow_up_marked_done_by_hand(
    alice_client: Client, review_marked_done_by_hand: FollowUp
) -> None:
    patient = review_marked_done_by_hand.patient
    data = form_data(myeloma_on_zoledronic_acid_14_months_document(), name="Renamed")
    response = alice_client.post(f"/patients/{patient.pk}/case/preview/", data, headers=HTMX)
    assert response.status_code == 200
    assert ("bp-review-1y", "done") in follow_up_statuses(response.content.decode())
    # The same form on the new-patient page knows no stored patient: the engine's status.
    unsaved = alice_client.post("/case/preview/", data, headers=HTMX).content.decode()
    assert ("bp-review-1y", "overdue") in follow_up_statuses(unsaved)


def test_each_live_update_of_a_stored_patient_is_logged_as_a_read(
    alice_client: Client, alice: Any, review_marked_done_by_hand: FollowUp
) -> None:
    patient = review_marked_done_by_hand.patient
    url = f"/patients/{patient.pk}/case/preview/"
    data = form_data(myeloma_on_zoledronic_acid_14_months_document())
    for _ in range(2):
        alice_client.post(url, data, headers=HTMX)
    logged = AccessLog.objects.filter(patient=patient, action="edit case preview")
    assert list(logged.values_list("user", "path")) == [(alice.pk, url)] * 2


def test_another_clinic_gets_a_404_from_the_patients_live_preview(
    client: Client, bob: Any, review_marked_done_by_hand: FollowUp
) -> None:
    patient = review_marked_done_by_hand.patient
    url = f"/patients/{patient.pk}/case/preview/"
    data = form_data(myeloma_on_zoledronic_acid_14_months_document())
    assert client.post(url, data, headers=HTMX)["HX-Redirect"].startswith("/accounts/login/")
    client.force_login(bob)
    response = client.post(url, data, headers=HTMX)
    assert response.status_code == 404
    assert patient.mrn not in response.content.decode()
    assert client.get(url, headers=HTMX).status_code == 405
    assert not AccessLog.objects.filter(user=bob).exists()


def test_a_failed_save_lists_every_error_with_a_link_and_marks_the_fields(
    alice_client: Client,
) -> None:
    data = form_data(myeloma_needing_bisphosphonate())
    data["birth_date"] = "2199-01-01"
    data["labs-0-collected_on"] = "2199-01-01"
    response = alice_client.post("/patients/new/", data)
    html = response.content.decode()
    assert response.status_code == 400 and not Patient.objects.exists()
    summary = html[
        html.index('id="error-summary"') : html.index("</div>", html.index('id="error-summary"'))
    ]
    assert "Not saved: 3 entries need attention" in summary  # the third: result 2 before birth
    assert "Result 2: Collected on: collected before the birth date" in summary
    after = "after the assessment date (today)</a>"
    assert f'href="#id_birth_date">Birth date: the birth date is {after}' in summary
    assert f'href="#id_labs-0-collected_on">Result 1: Collected on: collected {after}' in summary
    birth = re.search(r'<input[^>]*id="id_birth_date"[^>]*>', html)
    assert birth is not None and "is-invalid" in birth.group(0)
    assert 'aria-invalid="true"' in birth.group(0)
    # Enter saves: the form's first submit button is a Save, before "Add a result".
    form = html[html.index('id="case-form"') :]
    first_submit = re.search(r'<button type="submit"[^>]*>', form)
    assert first_submit is not None and 'name="save"' in first_submit.group(0)


def test_a_result_edited_keeps_the_seconds_of_its_collection_time(
    alice: Any, north_clinic: Any, alice_client: Client
) -> None:
    """Spec §1 allows HH:MM[:SS], and an import or the API keeps the seconds: correcting only
    the value on the result's page stored 08:15:30 as 08:15 (another result's time)."""
    document = paget_on_alendronate_document()
    alp = [lab for lab in document["labs"] if lab["test"] == "alp"][-1]
    alp["collected_at"] = alp["collected_at"][:10] + "T08:15:30"
    patient = stored_patient(north_clinic, alice, document)
    result = patient.lab_results.get(test="alp", collected_time="08:15:30")
    page = alice_client.get(f"/patients/{patient.pk}/results/{result.pk}/").content.decode()
    field = re.search(r"<input [^>]*name=\"collected_time\"[^>]*>", page)
    assert field is not None
    assert 'value="08:15:30"' in field.group() and 'step="1"' in field.group()
    response = alice_client.post(f"/patients/{patient.pk}/results/{result.pk}/", {
        "test": "alp", "value": str(result.value + 1), "unit": result.unit,
        "collected_on": result.collected_on.isoformat(), "collected_time": "08:15:30",
        "reference_high": result.reference_high or "", "reference_low": "",
        "version": str(patient.version),
    })  # fmt: skip
    assert response.status_code == 302
    result.refresh_from_db()
    assert result.collected_time is not None
    assert (result.value, result.collected_time.isoformat()) == (alp["value"] + 1, "08:15:30")


def test_a_time_with_seconds_shown_again_on_a_refused_form_can_be_sent_again(
    alice: Any, north_clinic: Any, alice_client: Client
) -> None:
    """The form shown again holds the posted text "08:15:30": without step 1 the browser
    would not let the user send it again at its default step of 60 seconds."""
    patient = stored_patient(north_clinic, alice, paget_on_alendronate_document())
    result = patient.lab_results.get(test="alp", collected_on=patient.lab_results.filter(
        test="alp").latest("collected_on").collected_on)  # fmt: skip
    response = alice_client.post(f"/patients/{patient.pk}/results/{result.pk}/", {
        "test": "alp", "value": "-1", "unit": result.unit,
        "collected_on": result.collected_on.isoformat(), "collected_time": "08:15:30",
        "reference_high": "", "reference_low": "", "version": str(patient.version),
    })  # fmt: skip
    assert response.status_code == 400
    field = re.search(r"<input [^>]*name=\"collected_time\"[^>]*>", response.content.decode())
    assert field is not None
    assert 'value="08:15:30"' in field.group() and 'step="1"' in field.group()
