"""Revision 2's inputs (spec §1) through the screens a clinician uses: typed into the case-entry
form, stored, shown on the patient page, exported by the API; a bad one is refused on its field
and nothing is written."""

from __future__ import annotations

import json
import re
from html import unescape
from typing import Any

import pytest
from django.test import Client

from pathways import engine
from pathways.models import ApiToken, LabResult, Patient
from tests.factories import (
    TODAY,
    as_browser_json,
    form_data,
    myeloma_on_zoledronic_acid_14_months_document,
    pregnant_third_trimester_document,
    revision_2_inputs_document,
    stored_patient,
)

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}


def field_error(html: str, slot: str) -> str:
    """The text of one field's error slot (``id_gestational_weeks``)."""
    return unescape(html.split(f'id="{slot}-error"', 1)[1].split("</div>", 1)[0])


def case_entries(html: str) -> dict[str, str]:
    """The patient page's case summary: column -> text shown."""
    pairs = re.findall(
        r'data-case-field="([a-z_]+)"><dt>[^<]*</dt><dd>([^<]*)</dd>', unescape(html)
    )
    return dict(pairs)


def test_every_revision_2_input_typed_into_the_form_is_stored_and_shown(
    alice_client: Client,
) -> None:
    document = revision_2_inputs_document()
    response = alice_client.post("/patients/new/", form_data(document, mrn="R2-1"))
    assert response.status_code == 302, response.content.decode()[:2000]
    patient = Patient.objects.get(mrn="R2-1")
    assert patient.postmenopausal is False
    assert str(patient.fracture_date) == document["clinical"]["fracture_date"]
    assert patient.creatinine_baseline == 0.9
    assert patient.mm_whole_body_imaging_done is True
    assert patient.diagnoses == ["mgus", "osteoporosis"]  # the declared order, as listed
    labs = {lab.test: lab for lab in patient.lab_results.all()}
    assert (labs["phosphate"].reference_low, labs["phosphate"].reference_high) == (0.8, 1.5)
    assert labs["alp"].reference_low == 35
    assert labs["alt"].canonical_value == pytest.approx(24.0)  # 0.4 µkat/L x 60
    assert labs["albumin"].canonical_value == pytest.approx(3.3)  # 33 g/L / 10
    assert labs["pth"].canonical_value == pytest.approx(9.1 * 9.43)
    assert labs["phosphate"].canonical_value == pytest.approx(0.7 * 3.097)

    html = alice_client.get(response["Location"]).content.decode()
    assert case_entries(html) == {
        "postmenopausal": "no",
        "fracture": "healing",
        "fracture_date": document["clinical"]["fracture_date"],
        "creatinine_baseline": "0.9",
        "mm_whole_body_imaging_done": "yes",
    }
    assert "osteoporosis" in html.split('class="mb-0 small text-muted"', 1)[1].split("</p>")[0]
    limits = re.findall(
        r'<tr data-test="phosphate">.*?class="[^"]*\blab-limits"[^>]*>([^<]*)<', html, re.S
    )
    assert limits == ["0.8\u20131.5"]


def test_the_stored_case_exports_every_revision_2_input(
    client: Client, alice: Any, north_clinic: Any
) -> None:
    document = revision_2_inputs_document()
    patient = stored_patient(north_clinic, alice, document, mrn="R2-2")
    key = ApiToken.issue(user=alice, name="read", scopes=["read"])[1]
    response = client.get(
        f"/api/v1/patients/{patient.pk}/case", headers={"Authorization": f"Token {key}"}
    )
    exported = response.json()
    assert exported["patient"]["postmenopausal"] is False
    assert exported["patient"]["gestational_weeks"] is None
    assert exported["clinical"]["fracture_date"] == document["clinical"]["fracture_date"]
    assert exported["clinical"]["creatinine_baseline"] == 0.9
    assert exported["clinical"]["myeloma"]["whole_body_imaging_done"] is True
    phosphate = next(lab for lab in exported["labs"] if lab["test"] == "phosphate")
    assert (phosphate["reference_low"], phosphate["reference_high"]) == (0.8, 1.5)
    exported["as_of"] = TODAY.isoformat()
    case, typed = engine.parse_case(exported), engine.parse_case(document)
    assert (case.patient, case.clinical) == (typed.patient, typed.clinical)
    assert sorted(case.labs, key=repr) == sorted(typed.labs, key=repr)


def test_the_openapi_document_describes_the_new_inputs(client: Client, alice: Any) -> None:
    client.force_login(alice)
    schemas = client.get("/api/v1/openapi.json").json()["components"]["schemas"]
    text = json.dumps(schemas)
    for name in (
        "gestational_weeks",
        "postmenopausal",
        "fracture_date",
        "creatinine_baseline",
        "whole_body_imaging_done",
        "reference_low",
        "osteoporosis",
    ):
        assert f'"{name}"' in text, name
    assert {"context", "suppressed", "sources"} <= set(schemas["ResultDocument"]["properties"])
    assert "evidence_note" in schemas["RecommendationOut"]["properties"]


def test_gestational_weeks_are_saved_and_shown_with_the_pregnancy(alice_client: Client) -> None:
    response = alice_client.post(
        "/patients/new/", form_data(pregnant_third_trimester_document(), mrn="PREG-1")
    )
    assert response.status_code == 302
    patient = Patient.objects.get(mrn="PREG-1")
    assert (patient.pregnant, patient.gestational_weeks) == (True, 30)
    html = alice_client.get(response["Location"]).content.decode()
    assert "pregnant, week 30" in html


@pytest.mark.parametrize(
    ("change", "slot", "message"),
    [
        (
            {"pregnant": "", "gestational_weeks": "20"},
            "id_gestational_weeks",
            "not recorded as pregnant",
        ),
        ({"gestational_weeks": "43"}, "id_gestational_weeks", "must not be above 42"),
        ({"gestational_weeks": "30.5"}, "id_gestational_weeks", "whole number"),
        (
            {"sex": "male", "pregnant": "", "gestational_weeks": "", "postmenopausal": "true"},
            "id_postmenopausal",
            "male",
        ),
        (
            {"fracture": "pathological", "fracture_date": "2099-01-01"},
            "id_fracture_date",
            "after the assessment date",
        ),
        ({"creatinine_baseline": "0"}, "id_creatinine_baseline", "greater than 0"),
        (
            {"labs-0-reference_low": "300", "labs-0-reference_high": "229"},
            "id_labs-0-reference_low",
            "below the lab's upper limit",
        ),
    ],
)
def test_a_bad_revision_2_input_is_refused_on_its_field_and_nothing_is_written(
    alice_client: Client, change: dict[str, str], slot: str, message: str
) -> None:
    data = {**form_data(pregnant_third_trimester_document(), mrn="BAD-1"), **change}
    data = {name: value for name, value in data.items() if value != "" or name in change}
    response = alice_client.post("/patients/new/", data)
    html = response.content.decode()
    assert response.status_code == 400
    assert message in field_error(html, slot), field_error(html, slot)
    assert not Patient.objects.exists() and not LabResult.objects.exists()


def test_a_bad_gestational_week_shows_on_its_field_in_the_live_preview(
    alice_client: Client,
) -> None:
    data = form_data(pregnant_third_trimester_document())
    data["gestational_weeks"] = "0"
    response = alice_client.post(
        "/case/preview/",
        json.dumps(as_browser_json(data)),
        content_type="application/json",
        headers=HTMX,
    )
    match = re.search(r'id="live-errors" hidden data-errors="([^"]*)"', response.content.decode())
    assert match
    assert json.loads(unescape(match[1])) == {"id_gestational_weeks-error": ["too small"]}


def test_postmenopausal_is_yes_no_or_not_given_on_the_edit_page(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    document = revision_2_inputs_document()
    patient = stored_patient(north_clinic, alice, document, mrn="R2-3")
    html = alice_client.get(f"/patients/{patient.pk}/edit/").content.decode()
    select = html.split('name="postmenopausal"', 1)[1].split("</select>", 1)[0]
    assert '<option value="false" selected>no</option>' in select
    assert "not given (assumed from age 51)" in select
    for posted, stored in (("true", True), ("", None)):
        data = form_data(document, mrn="R2-3", name=patient.name)
        data.update({"postmenopausal": posted, "version": str(patient.version)})
        response = alice_client.post(f"/patients/{patient.pk}/edit/", data)
        assert response.status_code == 302, response.content.decode()[:3000]
        patient.refresh_from_db()
        assert patient.postmenopausal is stored


def test_a_result_with_the_labs_lower_limit_is_added_on_the_patient_page(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    patient = stored_patient(north_clinic, alice, revision_2_inputs_document(), mrn="R2-4")
    result = {
        "test": "calcium",
        "value": "9.1",
        "unit": "mg/dL",
        "collected_on": TODAY.isoformat(),
        "collected_time": "10:00",
        "reference_low": "8.5",
        "reference_high": "10.4",
        "version": str(patient.version),
    }
    bad = {**result, "reference_low": "10.4"}
    response = alice_client.post(f"/patients/{patient.pk}/results/", bad)
    assert response.status_code == 400
    assert "below the lab's upper limit" in field_error(
        response.content.decode(), "result_reference_low"
    )
    assert not patient.lab_results.filter(test="calcium", collected_on=TODAY).exists()
    response = alice_client.post(f"/patients/{patient.pk}/results/", result)
    assert response.status_code == 302
    stored = patient.lab_results.get(test="calcium", collected_on=TODAY)
    assert (stored.reference_low, stored.reference_high) == (8.5, 10.4)


# ---------------------------------------------------------------------------------------------
# Values typed by hand that need a confirmation (reference-intervals.md).


def test_an_alp_typed_in_the_wrong_unit_asks_for_a_confirmation_before_it_is_saved(
    alice_client: Client,
) -> None:
    document = pregnant_third_trimester_document()
    document["labs"][0].update({"value": 210, "unit": "ukat/L"})  # 12,600 U/L: a unit mix-up
    data = form_data(document, mrn="CONF-1")
    response = alice_client.post("/patients/new/", data)
    html = response.content.decode()
    assert response.status_code == 400
    assert "12,600 U/L is above 3,000 U/L" in field_error(html, "id_labs-0-value")
    assert 'name="labs-0-confirm"' in html and 'name="labs-1-confirm"' not in html
    assert not Patient.objects.exists() and not LabResult.objects.exists()

    # The live preview already says so, before anything is saved.
    live = alice_client.post("/case/preview/", data, headers=HTMX).content.decode()
    assert "Saving will ask you to confirm: result 1: 12,600 U/L is above 3,000 U/L" in unescape(
        live
    )

    # The box confirms the value it was shown for (its value); a bare tick confirms nothing.
    assert 'name="labs-0-confirm" ' in html and 'value="210 ukat/L"' in html
    refused = alice_client.post("/patients/new/", {**data, "labs-0-confirm": "on"})
    assert refused.status_code == 400
    response = alice_client.post("/patients/new/", {**data, "labs-0-confirm": "210 ukat/L"})
    assert response.status_code == 302
    alp = Patient.objects.get(mrn="CONF-1").lab_results.get(test="alp")
    assert (alp.value, alp.unit, alp.canonical_value) == (210, "ukat/L", 12600)


def test_a_weight_outside_the_bounds_asks_for_a_confirmation(alice_client: Client) -> None:
    data = form_data(pregnant_third_trimester_document(weight_kg=710), mrn="CONF-2")
    html = alice_client.post("/patients/new/", data).content.decode()
    assert "710 kg is above 300 kg" in field_error(html, "id_weight_kg")
    assert 'name="confirm_weight"' in html
    assert not Patient.objects.exists()
    response = alice_client.post("/patients/new/", {**data, "confirm_weight": "710"})
    assert response.status_code == 302
    assert Patient.objects.get(mrn="CONF-2").weight_kg == 710


def test_baselines_outside_the_bounds_ask_for_a_confirmation_as_typed_results_do(
    alice_client: Client,
) -> None:
    """A CrCl and a creatinine typed as baselines were saved unchecked (reference-intervals.md
    lists both tests among the values typed by hand that need a confirmation)."""
    document = myeloma_on_zoledronic_acid_14_months_document()
    document["clinical"].update(crcl_baseline=350, creatinine_baseline=0.1)
    data = form_data(document, mrn="CONF-3")
    html = alice_client.post("/patients/new/", data).content.decode()
    assert "350 mL/min is above 200 mL/min" in field_error(html, "id_crcl_baseline")
    assert "0.1 mg/dL is below 0.2 mg/dL" in field_error(html, "id_creatinine_baseline")
    assert 'name="confirm_crcl_baseline"' in html and 'name="confirm_weight"' not in html
    live = unescape(alice_client.post("/case/preview/", data, headers=HTMX).content.decode())
    assert "Saving will ask you to confirm: CrCl baseline: 350 mL/min is above" in live
    assert "; creatinine baseline: 0.1 mg/dL is below 0.2 mg/dL" in live
    confirmed = {**data, "confirm_crcl_baseline": "350"}
    assert alice_client.post("/patients/new/", confirmed).status_code == 400  # one of two
    assert not Patient.objects.exists()
    response = alice_client.post(
        "/patients/new/", {**confirmed, "confirm_creatinine_baseline": "0.1"}
    )
    assert response.status_code == 302
    stored = Patient.objects.get(mrn="CONF-3")
    assert (stored.crcl_baseline, stored.creatinine_baseline) == (350, 0.1)
    # Confirmed once: saving the edit page again does not ask again; a new value does.
    edit = {**data, "version": str(stored.version)}
    for name in ("labs-TOTAL_FORMS", "labs-INITIAL_FORMS"):
        edit.pop(name)
    assert alice_client.post(f"/patients/{stored.pk}/edit/", edit).status_code == 302
    edit.update(crcl_baseline="360", version=str(stored.version + 1))
    html = alice_client.post(f"/patients/{stored.pk}/edit/", edit).content.decode()
    assert "360 mL/min is above 200 mL/min" in field_error(html, "id_crcl_baseline")


def test_a_result_added_on_the_patient_page_asks_for_a_confirmation_below_the_bound(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    patient = stored_patient(north_clinic, alice, revision_2_inputs_document(), mrn="CONF-3")
    result = {
        "test": "creatinine",
        "value": "0.1",
        "unit": "mg/dL",
        "collected_on": TODAY.isoformat(),
        "collected_time": "",
        "version": str(patient.version),
    }
    response = alice_client.post(f"/patients/{patient.pk}/results/", result)
    html = response.content.decode()
    assert response.status_code == 400
    assert "0.1 mg/dL is below 0.2 mg/dL" in field_error(html, "result_value")
    assert 'name="confirm"' in html
    assert not patient.lab_results.filter(collected_on=TODAY, test="creatinine").exists()
    response = alice_client.post(
        f"/patients/{patient.pk}/results/", {**result, "confirm": "0.1 mg/dL"}
    )
    assert response.status_code == 302
    assert patient.lab_results.get(collected_on=TODAY, test="creatinine").value == 0.1


def test_a_lab_feed_result_outside_the_bounds_is_stored_and_flagged_not_held_back(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    from pathways.services import patient_record_result

    patient = stored_patient(north_clinic, alice, revision_2_inputs_document(), mrn="CONF-4")
    lab = engine.Lab.create("alp", 4200, "U/L", TODAY)
    stored = patient_record_result(
        patient=patient,
        user=alice,
        lab=lab,
        expected_version=patient.version,
        source=LabResult.Source.IMPORTED,
    )
    typed = patient.lab_results.get(test="creatinine")
    html = alice_client.get(f"/patients/{patient.pk}/").content.decode()
    assert f'data-unusual="{stored.pk}"' in html
    assert "4,200 U/L is above 3,000 U/L" in html
    assert f'data-unusual="{typed.pk}"' not in html
    # Corrected by hand, with the value confirmed, it is a typed result: no longer flagged
    # (it stayed "imported", and flagged, after a clinician had confirmed it).
    patient.refresh_from_db()
    corrected = {
        "test": "alp", "value": "4100", "unit": "U/L", "collected_on": TODAY.isoformat(),
        "collected_time": "", "reference_high": "", "version": str(patient.version),
        "confirm": "4100 U/L",
    }  # fmt: skip
    response = alice_client.post(f"/patients/{patient.pk}/results/{stored.pk}/", corrected)
    assert response.status_code == 302
    stored.refresh_from_db()
    assert (stored.value, stored.source) == (4100, LabResult.Source.ENTERED)
    html = alice_client.get(f"/patients/{patient.pk}/").content.decode()
    assert f'data-unusual="{stored.pk}"' not in html
