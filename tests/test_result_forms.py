"""The single-result forms: the patient page's "Add a result" and the "Correct a result" page.

Each test names what went wrong before (an entry audit's findings): a ticked confirmation lost
when a colleague saved first, a confirmed value asked again, a correction lost behind a 404,
a rule fault answered with a server error, a unit list offering every test's units."""

from __future__ import annotations

import json
import re
from html import unescape

import pytest
from django.contrib.auth.models import User
from django.test import Client

from pathways import engine
from pathways.models import Clinic, LabResult, Patient
from pathways.services import patient_save_case
from tests.factories import paget_on_alendronate_document, stored_patient
from tests.test_views_patient import a_result

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}


def result_post(patient: Patient, **changes: str) -> dict[str, str]:
    """The "Add a result" form as a browser posts it, at the patient's stored version."""
    version = str(Patient.objects.get(pk=patient.pk).version)
    shown = {"value": "300", "collected_time": "09:00", "reference_low": "", "version": version}
    return a_result(**{**shown, **changes})


def _correction(patient: Patient, result: LabResult, **changes: str) -> dict[str, str]:
    """The "Correct a result" form of ``result`` as its page shows it, with ``changes``."""
    time = result.collected_time.strftime("%H:%M") if result.collected_time else ""
    data = result_post(
        patient,
        test=result.test,
        value=f"{result.value:g}",
        unit=result.unit,
        collected_on=result.collected_on.isoformat(),
        collected_time=time,
        reference_high="" if result.reference_high is None else f"{result.reference_high:g}",
    )
    data.update(changes)
    return data


def _confirm_box(html: str) -> str | None:
    box = re.search(r'<input[^>]*name="confirm"[^>]*>', html)
    return None if box is None else box[0]


def _value_error(html: str) -> str:
    parts = html.split('id="result_value-error"', 1)
    return unescape(parts[1].split("</div>", 1)[0]) if len(parts) == 2 else ""


def _unit_options(html: str) -> list[str]:
    select = re.search(r'<select[^>]*name="unit".*?</select>', html, re.S)
    assert select is not None
    return re.findall(r'<option value="([^"]*)"', select[0])


# ---------------------------------------------------------------------------------------------
# Confirmations


def test_a_ticked_confirmation_is_kept_when_a_colleague_added_a_result_first(
    alice_client: Client, alice: User, north_clinic: Clinic
) -> None:
    """ALP 4,000 U/L with "Confirm" ticked, refused because a colleague added a result
    meanwhile: the page said "Your input is kept" but the ticked box was gone, so sending it
    again was refused once more to ask for it. The case page keeps it; now this form does."""
    patient = stored_patient(north_clinic, alice)
    url = f"/patients/{patient.pk}/results/"
    mine = result_post(patient, value="4000", confirm="4000 U/L")
    colleague = result_post(patient, collected_time="10:00", value="200")
    assert alice_client.post(url, colleague).status_code == 302

    refused = alice_client.post(url, mine)
    html = refused.content.decode()
    assert refused.status_code == 400 and "changed by someone else" in html
    box = _confirm_box(html)
    assert box is not None, "the ticked confirm box is gone from the kept input"
    assert "checked" in box and 'value="4000 U/L"' in box
    assert not _value_error(html).strip(" >"), "the kept, ticked value is asked for again"

    version = re.search(r'name="version" value="(\d+)"', html)
    assert version is not None
    assert alice_client.post(url, {**mine, "version": version[1]}).status_code == 302
    assert patient.lab_results.filter(value=4000).exists()


def test_a_ticked_confirmation_is_kept_when_a_colleague_changed_the_patient_during_a_correction(
    alice_client: Client, alice: User, north_clinic: Clinic
) -> None:
    """The same path serves "Correct a result": 412 corrected to 4,000 U/L and confirmed, a
    colleague's change first; the kept input lost its ticked box."""
    patient = stored_patient(north_clinic, alice)
    result = patient.lab_results.get(value=412)
    mine = _correction(patient, result, value="4000", confirm="4000 U/L")
    colleague = result_post(patient, value="200")
    assert alice_client.post(f"/patients/{patient.pk}/results/", colleague).status_code == 302

    refused = alice_client.post(f"/patients/{patient.pk}/results/{result.pk}/", mine)
    html = refused.content.decode()
    assert refused.status_code == 400 and "changed by someone else" in html
    box = _confirm_box(html)
    assert box is not None and "checked" in box and 'value="4000 U/L"' in box
    result.refresh_from_db()
    assert result.value == 412


def _confirmed_4000(client: Client, patient: Patient) -> LabResult:
    """ALP 4,000 U/L added on the patient page, its confirmation ticked."""
    added = result_post(patient, value="4000", confirm="4000 U/L")
    assert client.post(f"/patients/{patient.pk}/results/", added).status_code == 302
    return patient.lab_results.get(value=4000)


def test_correcting_the_limit_of_a_confirmed_result_does_not_ask_to_confirm_its_value_again(
    alice_client: Client, alice: User, north_clinic: Clinic
) -> None:
    """ALP 4,000 U/L typed and confirmed; its "Correct a result" page saved with only the lab's
    upper limit added was refused: "4,000 U/L is above 3,000 U/L ... confirm it". The value was
    confirmed when it was typed; as on the case edit page, only a changed value asks again."""
    patient = stored_patient(north_clinic, alice)
    result = _confirmed_4000(alice_client, patient)

    corrected = _correction(patient, result, value="4000.0", reference_high="130")
    response = alice_client.post(f"/patients/{patient.pk}/results/{result.pk}/", corrected)
    assert response.status_code == 302, _value_error(response.content.decode())
    result.refresh_from_db()
    assert (result.value, result.reference_high) == (4000, 130)


def test_a_changed_value_of_a_confirmed_result_is_asked_again(
    alice_client: Client, alice: User, north_clinic: Clinic
) -> None:
    """What is not confirmed yet still is asked for: the confirmed 4,000 corrected to 5,000."""
    patient = stored_patient(north_clinic, alice)
    result = _confirmed_4000(alice_client, patient)

    corrected = _correction(patient, result, value="5000", confirm="4000 U/L")
    response = alice_client.post(f"/patients/{patient.pk}/results/{result.pk}/", corrected)
    html = response.content.decode()
    assert response.status_code == 400 and "confirm it" in _value_error(html)
    box = _confirm_box(html)
    assert box is not None and 'value="5000 U/L"' in box and "checked" not in box
    result.refresh_from_db()
    assert result.value == 4000


def test_a_result_from_the_lab_no_one_confirmed_is_asked_for_when_corrected_by_hand(
    alice_client: Client, alice: User, north_clinic: Clinic
) -> None:
    """A result imported without a person confirming it (the patient page flags it "check")
    becomes a typed result when saved on "Correct a result": its value is confirmed then."""
    document = paget_on_alendronate_document()
    document["labs"][1]["value"] = 4000
    patient = patient_save_case(
        user=alice,
        case=engine.parse_case(document),
        mrn="LAB-1",
        name="Imported Value",
        clinic=north_clinic,
        result_source=LabResult.Source.IMPORTED,
    )
    result = patient.lab_results.get(value=4000)
    assert result.unconfirmed_unusual_value

    url = f"/patients/{patient.pk}/results/{result.pk}/"
    response = alice_client.post(url, _correction(patient, result, reference_high="130"))
    assert response.status_code == 400 and "confirm it" in _value_error(response.content.decode())
    confirmed = _correction(patient, result, reference_high="130", confirm="4000 U/L")
    assert alice_client.post(url, confirmed).status_code == 302
    result.refresh_from_db()
    assert result.source == LabResult.Source.ENTERED and result.unconfirmed_unusual_value is None


# ---------------------------------------------------------------------------------------------
# A result removed by a colleague while it was being corrected


def test_correcting_a_result_a_colleague_removed_meanwhile_keeps_the_input(
    alice_client: Client, alice: User, north_clinic: Clinic
) -> None:
    """Alice opens "Correct a result" (ALP 412 -> 415); a colleague removes that result. Her
    save answered a bare "Not Found" and the correction was lost. It is now refused like any
    change made meanwhile ("changed by someone else", the input kept, nothing written), and
    sending it again adds it as a new result."""
    patient = stored_patient(north_clinic, alice)
    result = patient.lab_results.get(value=412)
    url = f"/patients/{patient.pk}/results/{result.pk}/"
    assert alice_client.get(url).status_code == 200
    correction = _correction(patient, result, value="415", collected_time="08:15")
    removed = alice_client.post(f"{url}remove/", {"version": correction["version"]})
    assert removed.status_code == 302
    before = sorted(patient.lab_results.values_list("value", flat=True))

    response = alice_client.post(url, correction)
    html = unescape(response.content.decode())
    assert response.status_code == 400, "the correction is lost behind a bare 404"
    assert "changed by someone else" in html and "was removed" in html
    assert 'value="415"' in html and 'value="129"' in html
    assert sorted(patient.lab_results.values_list("value", flat=True)) == before

    # Sent again (the page's form, at the version it now shows): a new result.
    action = re.search(r'<form method="post" action="([^"]+)" id="result-edit-form"', html)
    version = re.search(r'name="version" value="(\d+)"', html)
    assert action is not None and version is not None
    assert action[1] == f"/patients/{patient.pk}/results/"
    resent = alice_client.post(action[1], {**correction, "version": version[1]})
    assert resent.status_code == 302
    assert patient.lab_results.filter(value=415, reference_high=129).exists()


def test_a_removed_result_keeps_its_ticked_confirmation(
    alice_client: Client, alice: User, north_clinic: Clinic
) -> None:
    """The correction of a removed result, to 4,000 U/L confirmed: the ticked box stays."""
    patient = stored_patient(north_clinic, alice)
    result = patient.lab_results.get(value=412)
    url = f"/patients/{patient.pk}/results/{result.pk}/"
    correction = _correction(patient, result, value="4000", confirm="4000 U/L")
    alice_client.post(f"{url}remove/", {"version": correction["version"]})

    html = alice_client.post(url, correction).content.decode()
    box = _confirm_box(html)
    assert box is not None and "checked" in box and 'value="4000 U/L"' in box


def test_a_result_that_is_not_the_patients_is_still_not_found(
    alice_client: Client, alice: User, north_clinic: Clinic
) -> None:
    """Only a removed result of this patient is answered with the kept input: opening a
    removed result, or posting to another patient's result or to none, is a 404."""
    patient = stored_patient(north_clinic, alice)
    other = stored_patient(north_clinic, alice, mrn="MRN-2")
    result = patient.lab_results.get(value=412)
    url = f"/patients/{patient.pk}/results/{result.pk}/"
    correction = _correction(patient, result)
    alice_client.post(f"{url}remove/", {"version": correction["version"]})
    assert alice_client.get(url).status_code == 404

    theirs = other.lab_results.get(value=412)
    for pk in (theirs.pk, 999_999):
        answer = alice_client.post(f"/patients/{patient.pk}/results/{pk}/", correction)
        assert answer.status_code == 404, pk


# ---------------------------------------------------------------------------------------------
# A rule set in force that fails on the new result


@pytest.mark.parametrize("write", ["add", "correct"])
def test_a_result_the_rules_in_force_fail_on_is_refused_in_words_not_a_server_error(
    editor: User, publisher: User, north_clinic: Clinic, alice: User, write: str
) -> None:
    """A published condition that fails when the latest ALP is 777 U/L: the case page answers
    "Not saved: rule set ..." and keeps the input; "Add a result" and "Correct a result" let
    the RuleEvaluationError through, a server error (500) and the typed result lost."""
    from tests.test_faults_and_refreshes import faulty_rule_published

    patient = stored_patient(north_clinic, alice, paget_on_alendronate_document())
    faulty_rule_published(editor, publisher)
    client = Client(raise_request_exception=False)
    client.force_login(alice)
    version = Patient.objects.get(pk=patient.pk).version
    if write == "add":
        url = f"/patients/{patient.pk}/results/"
        posted = result_post(patient, value="777")
    else:
        latest = patient.lab_results.get(value=260)
        url = f"/patients/{patient.pk}/results/{latest.pk}/"
        posted = _correction(patient, latest, value="777")

    response = client.post(url, posted)
    html = unescape(response.content.decode())
    assert response.status_code == 400, response.status_code
    assert "Not saved: rule set" in html and "division by zero" in html
    assert 'value="777"' in html
    assert not patient.lab_results.filter(value=777).exists()
    assert Patient.objects.get(pk=patient.pk).version == version  # nothing written


def test_a_result_the_rules_in_force_fail_on_is_refused_in_place_on_the_patient_page(
    editor: User, publisher: User, north_clinic: Clinic, alice: User
) -> None:
    """The same refusal sent in place (htmx): the patient page's refused form, not a 500."""
    from tests.test_faults_and_refreshes import faulty_rule_published

    patient = stored_patient(north_clinic, alice, paget_on_alendronate_document())
    faulty_rule_published(editor, publisher)
    client = Client(raise_request_exception=False)
    client.force_login(alice)
    posted = result_post(patient, value="777")
    response = client.post(f"/patients/{patient.pk}/results/", posted, headers=HTMX)
    html = unescape(response.content.decode())
    assert response.status_code == 422
    assert "division by zero" in html and 'value="777"' in html
    assert not patient.lab_results.filter(value=777).exists()


# ---------------------------------------------------------------------------------------------
# The unit list follows the test


def test_the_result_forms_on_the_patient_pages_have_the_unit_list_follow_the_test(
    alice_client: Client, alice: User, north_clinic: Clinic
) -> None:
    """Requirement: the unit list follows the test (CrCl: mL/min only). The case page ships
    the units per test for case-entry.js; the patient page's "Add a result" form and the
    "Correct a result" page had neither, and offered every unit of every test (CrCl in U/L,
    ALP in mg/dL). The browser side: tests/browser/test_result_units_browser.py."""
    patient = stored_patient(north_clinic, alice)
    result = patient.lab_results.get(value=412)
    pages = {
        f"/patients/{patient.pk}/": "add-result-form",
        f"/patients/{patient.pk}/results/{result.pk}/": "result-edit-form",
    }
    for url, form_id in pages.items():
        response = alice_client.get(url)
        html = response.content.decode()
        units = re.search(r'<script id="lab-units" type="application/json">(.*?)</script>', html)
        assert units is not None, url
        assert json.loads(units[1]) == {test: list(u) for test, u in engine.UNITS.items()}
        assert json.loads(units[1])["crcl"] == ["mL/min"]
        assert re.search(rf'id="{form_id}"[^>]*data-unit-follows-test', html), url
        # The script that filters the list, allowed by the page's CSP (its nonce: no inline JS).
        script = re.search(r'<script src="[^"]*alpcare/case-entry\.js"[^>]*nonce="([^"]+)"', html)
        assert script is not None, url
        assert f"'nonce-{script[1]}'" in response["Content-Security-Policy"], url
        assert {"U/L", "mL/min"} <= set(_unit_options(html))  # the script hides the others


@pytest.mark.parametrize(("test", "unit"), [("crcl", "U/L"), ("alp", "mg/dL")])
def test_a_unit_the_test_does_not_take_is_refused_on_its_field(
    alice_client: Client, alice: User, north_clinic: Clinic, test: str, unit: str
) -> None:
    """Without the script (or with a crafted post) the server refuses it, on the unit field."""
    patient = stored_patient(north_clinic, alice)
    count = patient.lab_results.count()
    posted = result_post(patient, test=test, unit=unit)
    response = alice_client.post(f"/patients/{patient.pk}/results/", posted)
    html = unescape(response.content.decode())
    assert response.status_code == 400
    unit_error = html.split('id="result_unit-error"', 1)[1].split("</div>", 1)[0]
    assert unit in unit_error, unit_error
    assert patient.lab_results.count() == count
