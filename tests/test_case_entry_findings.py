"""Case entry, as an entry audit found it wanting: a value the case refuses was offered for a
confirmation that could never save it; one bad entry was reported two or three times in words
that disagree; the live preview read gestational weeks "3e1" as 30 while the save refused it;
and an error named the document's code "bone_alp". Each test failed on the code before its fix
(pathways/forms.py, pathways/entry_checks.py; engine/case.py gives that error its own code)."""

from __future__ import annotations

import json
from html import unescape
from typing import Any

import pytest
from django.test import Client

from pathways import engine
from pathways.models import Patient
from tests.factories import (
    as_browser_json,
    edit_page_post,
    form_data,
    paget_on_alendronate_document,
    pregnant_third_trimester_document,
    stored_patient,
)
from tests.test_case_entry_audit import summary_items
from tests.test_result_forms import result_post
from tests.test_views_case import live_errors

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}
NO_INTERVAL = "required for Bone ALP in U/L or µkat/L (no built-in interval for activity)"


def _live(client: Client, url: str, data: dict[str, Any]) -> dict[str, list[str]]:
    """The field errors of the live preview of ``data``, posted as case-entry.js posts it."""
    response = client.post(
        url, json.dumps(as_browser_json(data)), content_type="application/json", headers=HTMX
    )
    assert response.status_code == 200
    return live_errors(response.content.decode())


def _field_error(html: str, slot: str) -> str:
    """The text of a field's error slot (``slot``: the field's id)."""
    parts = html.split(f'id="{slot}-error"', 1)
    return unescape(parts[1].split("</div>", 1)[0]).strip(" >") if len(parts) == 2 else ""


# ---------------------------------------------------------------------------------------------
# 1. A value the case can never hold is not offered for confirmation.


@pytest.mark.parametrize(
    ("changes", "field", "confirm"),
    [
        ({"weight_kg": "0"}, "weight_kg", "confirm_weight"),
        ({"weight_kg": "5000"}, "weight_kg", "confirm_weight"),
        ({"crcl_baseline": "-5"}, "crcl_baseline", "confirm_crcl_baseline"),
        ({"crcl_baseline": "20000"}, "crcl_baseline", "confirm_crcl_baseline"),
        ({"creatinine_baseline": "0"}, "creatinine_baseline", "confirm_creatinine_baseline"),
        ({"labs-0-value": "1e400"}, "labs-0-value", "labs-0-confirm"),
        (  # 2e10 µkat/L is 1.2e12 U/L: refused in the test's canonical unit
            {"labs-0-unit": "ukat/L", "labs-0-value": "2e10"},
            "labs-0-value",
            "labs-0-confirm",
        ),
        (
            {"labs-1-test": "creatinine", "labs-1-unit": "mg/dL", "labs-1-value": "-1"},
            "labs-1-value",
            "labs-1-confirm",
        ),
    ],
    ids=[
        "weight-0",
        "weight-5000",
        "crcl-baseline-negative",
        "crcl-baseline-20000",
        "creatinine-baseline-0",
        "alp-1e400",
        "alp-2e10-ukat",
        "creatinine-negative",
    ],
)
def test_a_value_the_case_refuses_is_not_offered_for_confirmation(
    alice_client: Client, changes: dict[str, str], field: str, confirm: str
) -> None:
    """Weight 0 kg was answered "0 kg is below 2 kg, unusual for a weight: check the value and
    its unit, then confirm it to save it" beside "must be greater than 0", with a "Confirm this
    weight" box; ALP 1e400 got "inf U/L is above 3,000 U/L ... confirm it to save it". No tick
    could save these (reference-intervals.md: a confirmed value is "stored and assessed like any
    other"); the value's own error is shown, once."""
    data = {**form_data(paget_on_alendronate_document(), mrn="CONF-X"), **changes}
    response = alice_client.post("/patients/new/", data)
    html = response.content.decode()
    assert response.status_code == 400
    assert not Patient.objects.filter(mrn="CONF-X").exists()
    said = _field_error(html, f"id_{field}")
    assert said and "confirm it to save it" not in said, said
    assert f'name="{confirm}"' not in html, "a confirm box for a value that cannot be saved"
    assert [target for target, _ in summary_items(html)] == [f"id_{field}"]


@pytest.mark.parametrize(
    ("changes", "field", "confirm"),
    [
        ({"weight_kg": "400"}, "weight_kg", "confirm_weight"),
        ({"crcl_baseline": "5000"}, "crcl_baseline", "confirm_crcl_baseline"),
        ({"labs-0-value": "4000"}, "labs-0-value", "labs-0-confirm"),
    ],
    ids=["weight-400", "crcl-baseline-5000", "alp-4000"],
)
def test_an_unusual_value_the_case_can_hold_is_still_offered_for_confirmation(
    alice_client: Client, changes: dict[str, str], field: str, confirm: str
) -> None:
    """The fix above leaves the entry checks as they were for a value the case can hold."""
    data = {**form_data(paget_on_alendronate_document(), mrn="CONF-Y"), **changes}
    response = alice_client.post("/patients/new/", data)
    html = response.content.decode()
    assert response.status_code == 400
    assert "confirm it to save it" in _field_error(html, f"id_{field}")
    assert f'name="{confirm}"' in html


def test_the_edit_page_does_not_offer_to_confirm_a_weight_the_case_refuses(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    """The edit page asked the same: "0 kg is below 2 kg ... confirm it" and a confirm box."""
    patient = stored_patient(north_clinic, alice)
    document = paget_on_alendronate_document()
    document["patient"]["weight_kg"] = 0
    response = alice_client.post(f"/patients/{patient.pk}/edit/", edit_page_post(document, patient))
    html = response.content.decode()
    assert response.status_code == 400
    assert _field_error(html, "id_weight_kg") == "must be greater than 0"
    assert 'name="confirm_weight"' not in html


# ---------------------------------------------------------------------------------------------
# 2. One bad entry is one error.


@pytest.mark.parametrize(
    ("changes", "target", "text"),
    [
        ({"labs-0-value": "NaN"}, "id_labs-0-value", "Result 1: Value: Enter a number."),
        ({"labs-0-value": "412,5"}, "id_labs-0-value", "Result 1: Value: Enter a number."),
        ({"weight_kg": "64,5"}, "id_weight_kg", "Weight (kg): Enter a number."),
        (
            {"labs-0-collected_time": "24:00"},
            "id_labs-0-collected_time",
            "Result 1: at (time): Enter a valid time.",
        ),
        ({"gestational_weeks": "3e1"}, "id_gestational_weeks", None),
    ],
    ids=["nan", "decimal-comma", "weight-decimal-comma", "time-24h", "weeks-3e1"],
)
def test_one_bad_entry_is_one_error_in_the_summary(
    alice_client: Client, changes: dict[str, str], target: str, text: str | None
) -> None:
    """ "412,5" in a result's value gave "Not saved: 2 entries need attention" with "Value: Enter a
    number." and "Value: must be a number" (Django's check, then the engine's on the same text);
    "NaN" gave "Enter a number." and "must be a finite number"; a time "24:00" gave "Enter a
    valid time." and '"2026-06-01T24:00" is not a date ...'. Each bad entry is now one error."""
    document = paget_on_alendronate_document()
    if "gestational_weeks" in changes:
        document = pregnant_third_trimester_document()
    data = {**form_data(document, mrn="ONCE"), **changes}
    response = alice_client.post("/patients/new/", data)
    html = unescape(response.content.decode())
    assert response.status_code == 400
    items = summary_items(html)
    assert [t for t, _ in items] == [target], items
    if text is not None:
        assert items[0][1] == text
    assert "Not saved: 1 entry needs attention" in html


def test_an_entry_the_form_accepts_still_carries_the_engine_s_error(alice_client: Client) -> None:
    """Only the form's own error replaces the engine's: a weight the form reads (0) but the case
    refuses keeps the engine's "must be greater than 0"."""
    data = {**form_data(paget_on_alendronate_document(), mrn="ENGINE"), "weight_kg": "0"}
    response = alice_client.post("/patients/new/", data)
    html = response.content.decode()
    assert response.status_code == 400
    assert summary_items(html) == [("id_weight_kg", "Weight (kg): must be greater than 0")]


# ---------------------------------------------------------------------------------------------
# 3. The live preview reads an entry as the save does.


@pytest.mark.parametrize("typed", ["3e1", "30.5", "1e400", "30.0", " 30 "])
def test_the_live_preview_and_the_save_agree_on_gestational_weeks(
    alice_client: Client, typed: str
) -> None:
    """Gestational weeks "3e1": the live preview read it as 30 ("Updated from your entries",
    with advice, no error) while Save refused "Enter a whole number." (spec §7: the form and
    the JSON must never disagree). Both now read it as Django's IntegerField does."""
    data = {**form_data(pregnant_third_trimester_document(), mrn="GW"), "gestational_weeks": typed}
    errors = _live(alice_client, "/case/preview/", data)
    saved = alice_client.post("/patients/new/", data)
    if saved.status_code == 400:
        assert "id_gestational_weeks-error" in errors, errors
        html = saved.content.decode()
        assert [t for t, _ in summary_items(html)] == ["id_gestational_weeks"]
    else:
        assert "id_gestational_weeks-error" not in errors, errors
        assert saved.status_code == 302
        assert Patient.objects.get(mrn="GW").gestational_weeks == 30
    assert (saved.status_code == 302) == (typed.strip() in ("30.0", "30"))


# ---------------------------------------------------------------------------------------------
# 8b. Errors in the form's words, not the document's codes.


def _bone_alp_activity_without_limit(mrn: str) -> dict[str, str]:
    return {
        **form_data(paget_on_alendronate_document(), mrn=mrn),
        "labs-1-test": "bone_alp",
        "labs-1-unit": "U/L",
        "labs-1-value": "30",
    }


def test_a_bone_alp_activity_without_its_limit_is_named_in_the_forms_words(
    alice_client: Client,
) -> None:
    """Bone ALP in U/L (an activity unit the form offers for it) without the lab's upper limit:
    "Lab's upper limit: required for bone_alp in U/L (no built-in interval for activity)" on
    the case page and in the live preview. The form labels the test "Bone ALP"."""
    data = _bone_alp_activity_without_limit("BAP")
    errors = _live(alice_client, "/case/preview/", data)
    assert errors == {"id_labs-1-reference_high-error": [NO_INTERVAL]}
    response = alice_client.post("/patients/new/", data)
    assert response.status_code == 400
    assert _field_error(response.content.decode(), "id_labs-1-reference_high") == NO_INTERVAL


def test_a_bone_alp_activity_added_on_the_patient_page_is_named_in_the_forms_words(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    """The patient page's "Add a result" said the same "required for bone_alp in U/L"."""
    patient = stored_patient(north_clinic, alice)
    posted = result_post(patient, test="bone_alp", value="30", unit="ukat/L")
    response = alice_client.post(f"/patients/{patient.pk}/results/", posted)
    assert response.status_code == 400
    assert _field_error(response.content.decode(), "result_reference_high") == NO_INTERVAL


def test_the_engine_still_names_the_document_s_codes_to_its_callers() -> None:
    """The API, FHIR and HL7 callers speak the document's codes: their message is unchanged;
    the error's own code lets the form word it."""
    (error,) = engine.lab_problems("bone_alp", "U/L", 30)
    assert error.location == ("labs", 0, "reference_high")
    assert error.message == "required for bone_alp in U/L (no built-in interval for activity)"
    assert error.code == "no_interval"
