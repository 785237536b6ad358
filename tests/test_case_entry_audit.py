"""Typed case entry, as an audit found it wanting: a confirmation belongs to the value it was
given for, and survives a save refused for another reason; the live preview predicts what the
save asks; errors are shown on the field at fault, numbered as the form numbers its rows; a
removed row is not listed; a row with only its test chosen is empty to the preview and the save
alike. Each test failed on the code before its fix."""

from __future__ import annotations

import json
import re
from datetime import time
from html import unescape
from typing import Any

import pytest
from django.test import Client

from pathways.models import Patient
from tests.factories import (
    as_browser_json,
    edit_page_post,
    form_data,
    paget_on_alendronate_document,
    stored_patient,
)

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}


def _confirm_input(html: str, name: str) -> str | None:
    match = re.search(rf'<input[^>]*name="{re.escape(name)}"[^>]*>', html)
    return match[0] if match else None


def _posted_value(checkbox: str) -> str:
    """What a browser posts for this checkbox when it is ticked (its value attribute, else on)."""
    match = re.search(r'\svalue="([^"]*)"', checkbox)
    return unescape(match[1]) if match else "on"


def _unusual_alp(mrn: str) -> dict[str, Any]:
    document = paget_on_alendronate_document()
    document["labs"][0]["value"] = 4000  # above 3,000 U/L: asks for a confirmation
    return form_data(document, mrn=mrn)


def test_a_confirmation_given_for_one_value_does_not_save_a_different_value(
    alice_client: Client,
) -> None:
    """Correct: ticking "Confirm this value" for 4,000 U/L confirms 4,000 U/L; if the value is
    then changed to 40,000 U/L (box still ticked: case-entry.js never clears it), saving must
    ask again. reference-intervals.md: a value outside the bounds is saved only after the person
    entering *it* confirms it. The tick was a bare "on", not tied to the value it confirmed,
    so a value nobody was ever asked about was saved."""
    data = _unusual_alp("CONF-A")
    asked = alice_client.post("/patients/new/", data)
    assert asked.status_code == 400
    box = _confirm_input(asked.content.decode(), "labs-0-confirm")
    assert box is not None  # asked about 4,000 U/L

    changed = {**data, "labs-0-value": "40000", "labs-0-confirm": _posted_value(box)}
    response = alice_client.post("/patients/new/", changed)
    assert response.status_code == 400, "40,000 U/L saved on the confirmation of 4,000 U/L"
    assert not Patient.objects.filter(mrn="CONF-A").exists()


def test_a_weight_confirmation_does_not_carry_over_to_a_new_weight(alice_client: Client) -> None:
    """As above for the weight (bounds 2-300 kg): a tick given for 400 kg must not save 900 kg
    (a slip of a key: the typing error the check exists to catch)."""
    document = paget_on_alendronate_document()
    document["patient"]["weight_kg"] = 400
    data = form_data(document, mrn="CONF-W")
    asked = alice_client.post("/patients/new/", data)
    box = _confirm_input(asked.content.decode(), "confirm_weight")
    assert asked.status_code == 400 and box is not None
    changed = {**data, "weight_kg": "900", "confirm_weight": _posted_value(box)}
    response = alice_client.post("/patients/new/", changed)
    assert response.status_code == 400, "900 kg saved on the confirmation of 400 kg"
    assert not Patient.objects.filter(mrn="CONF-W").exists()


@pytest.mark.parametrize(
    "other_problem", [{"name": ""}, {"birth_date": "2099-01-01"}], ids=["form", "engine"]
)
def test_a_ticked_confirmation_is_kept_when_the_save_fails_for_another_reason(
    alice_client: Client, other_problem: dict[str, str]
) -> None:
    """Correct: the page shown after a failed save keeps everything typed, the ticked confirm
    box included (project rule: "nothing is lost"; requirement: a failed save keeps everything
    typed). Now the confirm box is only added to the layout by ask_confirmations, which runs
    only when every other check passed: the tick vanishes from the page, and the next save asks
    for the confirmation again."""
    data = {**_unusual_alp("CONF-B"), "labs-0-confirm": "4000 U/L", **other_problem}
    response = alice_client.post("/patients/new/", data)
    assert response.status_code == 400
    box = _confirm_input(response.content.decode(), "labs-0-confirm")
    assert box is not None, "the ticked confirm box is gone from the refused form"
    assert "checked" in box and 'value="4000 U/L"' in box


def _edit_post(patient: Any, **patient_fields: Any) -> dict[str, str]:
    """The edit page's form with these patient fields changed."""
    document = paget_on_alendronate_document()
    document["patient"] = {**document["patient"], **patient_fields}
    return edit_page_post(document, patient)


def test_a_ticked_confirmation_is_kept_when_someone_else_saved_first(
    client: Client, alice: Any, north_clinic: Any
) -> None:
    """The edit page refused as stale (a colleague saved first) kept 320 kg but dropped its
    ticked confirm box, so saving the kept input again asked for the confirmation again.
    Found by a defect hunt."""
    patient = stored_patient(north_clinic, alice, paget_on_alendronate_document())
    client.force_login(alice)
    mine = {**_edit_post(patient, weight_kg=320), "confirm_weight": "320"}  # above 300 kg
    colleague = {**mine, "name": "Renamed by a colleague", "weight_kg": "70"}
    del colleague["confirm_weight"]
    assert client.post(f"/patients/{patient.pk}/edit/", colleague).status_code == 302

    refused = client.post(f"/patients/{patient.pk}/edit/", mine)
    html = refused.content.decode()
    assert refused.status_code == 400 and "changed by someone else" in html
    box = _confirm_input(html, "confirm_weight")
    assert box is not None and "checked" in box, "the ticked confirm box is gone"
    version = re.search(r'name="version" value="(\d+)"', html)
    assert version is not None
    again = {**mine, "version": version[1], "confirm_weight": _posted_value(box)}
    assert client.post(f"/patients/{patient.pk}/edit/", again).status_code == 302
    patient.refresh_from_db()
    assert patient.weight_kg == 320


def test_a_birth_date_moved_after_stored_results_is_the_birth_dates_error_in_words(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    """On the edit page (stored results are not rows of its form) the save said "result
    1.collected_at: before patient.birth_date", once per result, linked to no field; the live
    preview said the same. Found by a defect hunt."""
    patient = stored_patient(north_clinic, alice, paget_on_alendronate_document())
    earliest = min(lab.collected_on for lab in patient.lab_results.all()).isoformat()
    data = _edit_post(patient, birth_date="2026-10-01")
    said = f"the birth date is after stored results (the earliest was collected on {earliest})"

    response = alice_client.post(f"/patients/{patient.pk}/edit/", data)
    html = unescape(response.content.decode())
    assert response.status_code == 400
    summary = html.split('id="error-summary"', 1)[1].split("</div>", 1)[0]
    assert 'href="#id_birth_date"' in summary and said in summary
    assert summary.count(said) == 1 and "collected_at" not in html

    live = alice_client.post(
        f"/patients/{patient.pk}/case/preview/",
        json.dumps(as_browser_json(data)),
        content_type="application/json",
        headers={"HX-Request": "true"},
    ).content.decode()
    holder = re.search(r'id="live-errors"[^>]*data-errors="([^"]*)"', live)
    assert holder is not None
    assert json.loads(unescape(holder[1])) == {"id_birth_date-error": [said]}


def test_the_live_preview_does_not_announce_a_question_the_save_will_not_ask(
    alice_client: Client,
) -> None:
    """Correct: with the confirm boxes ticked, the live preview must not say "Saving will ask you
    to confirm: ..." - the save does not ask (it saves at once). spec pathways.md §7 ("the form
    and the JSON must never disagree"): the preview predicts the save. Now
    CaseDraft.unusual_entries ignores the posted confirm boxes."""
    document = paget_on_alendronate_document()
    document["labs"][0]["value"] = 4000
    document["patient"]["weight_kg"] = 400
    data = {
        **form_data(document, mrn="CONF-C"),
        "labs-0-confirm": "4000 U/L",
        "confirm_weight": "400",
    }
    live = unescape(
        alice_client.post(
            "/case/preview/",
            json.dumps(as_browser_json(data)),
            content_type="application/json",
            headers=HTMX,
        ).content.decode()
    )
    saved = alice_client.post("/patients/new/", data)
    assert saved.status_code == 302  # the save does not ask
    assert "Saving will ask you to confirm" not in live, live


def _field_error(html: str, slot: str) -> str:
    parts = html.split(f'id="{slot}-error"', 1)
    return unescape(parts[1].split("</div>", 1)[0]).strip(" >") if len(parts) == 2 else ""


def _input(html: str, name: str) -> str:
    match = re.search(rf'<input[^>]*name="{re.escape(name)}"[^>]*>', html)
    assert match, name
    return match[0]


def summary_items(html: str) -> list[tuple[str, str]]:
    block = re.search(r'id="error-summary".*?</ul>', html, re.S)
    assert block, "no error summary"
    return [
        (t, unescape(x))
        for t, x in re.findall(r'<a class="alert-link" href="#([^"]+)">(.*?)</a>', block[0])
    ]


def _base(mrn: str) -> dict[str, Any]:
    return form_data(paget_on_alendronate_document(), mrn=mrn)


def test_a_time_the_form_cannot_use_is_an_error_on_the_time_field_not_the_date(
    alice_client: Client,
) -> None:
    """A collection time with a fraction of a second (spec §1: HH:MM[:SS]) is an error on "at
    (time)", the date not marked; "8:15" is 08:15. Both were refused as the date's error
    ('"2026-06-01T8:15" is not a date'), with the red border on the date."""
    data = {**_base("T1"), "labs-0-collected_time": "08:15:30.5"}
    response = alice_client.post("/patients/new/", data)
    html = response.content.decode()
    assert response.status_code == 400
    assert not Patient.objects.exists()
    assert 'aria-invalid="true"' not in _input(html, "labs-0-collected_on")
    assert _field_error(html, "id_labs-0-collected_time")
    live = alice_client.post("/case/preview/", data, headers=HTMX).content.decode()
    assert "labs-0-collected_time" in unescape(live) and "labs-0-collected_on-error" not in live
    saved = alice_client.post("/patients/new/", {**data, "labs-0-collected_time": "8:15"})
    assert saved.status_code == 302
    stored = Patient.objects.get(mrn="T1").lab_results.get(collected_on=data["labs-0-collected_on"])
    assert stored.collected_time == time(8, 15)


def test_a_conflicting_result_names_the_results_as_numbered_on_screen_and_links_to_its_row(
    alice_client: Client,
) -> None:
    """Correct: two results of one test at one time that disagree (spec §1: "the case is an
    error naming both indexes") are named as the form numbers them ("Result 2", "Result 3"),
    and the summary's link leads to that row. Requirements: clinical error wording; an error
    summary at the top with links. The message was the engine's JSON path text ("labs[1]:
    conflicts with labs[0]": after a removed row, labs[0] is the form's Result 2) and the link
    went to the top of the form."""
    data = {
        **_base("T2"),
        "labs-TOTAL_FORMS": "3",
        "labs-0-DELETE": "on",  # the first row is removed in the same post
        "labs-2-test": "alp",
        "labs-2-unit": "U/L",
        "labs-2-value": "430",
        "labs-2-collected_on": "2026-10-01",
        "labs-2-collected_time": "08:40",  # Result 2 is 260 U/L at this time
    }
    response = alice_client.post("/patients/new/", data)
    html = response.content.decode()
    assert response.status_code == 400
    items = summary_items(html)
    assert len(items) == 1, items
    target, text = items[0]
    assert "labs[" not in text, text
    assert text.startswith("Result 3: conflicts with result 2: "), text
    assert target != "case-form" and "labs-2" in target, target


def test_a_row_marked_for_removal_is_not_listed_as_needing_attention(alice_client: Client) -> None:
    """Correct: a result row ticked "Remove this result" leaves the case (case_draft skips it,
    and the save ignores it: fixing the other error saves without touching it), so the error
    summary must not list it as an entry that needs attention nor mark it invalid. The
    summary listed "Result 1: Value: Enter a number." for the row being removed."""
    data = {
        **_base("T3"),
        "labs-0-DELETE": "on",
        "labs-0-value": "abc",
        "name": "",  # the one real problem
    }
    response = alice_client.post("/patients/new/", data)
    html = response.content.decode()
    assert response.status_code == 400
    items = summary_items(html)
    assert items == [("id_name", "Name: This field is required.")], items
    # The same form with the name given saves, the removed row ignored.
    assert alice_client.post("/patients/new/", {**data, "name": "Ada"}).status_code == 302


def test_a_result_row_with_only_its_test_chosen_is_empty_to_the_preview_and_the_save(
    alice_client: Client,
) -> None:
    """Spec §7: the live preview and the save read one form alike. A row whose test was set to
    CrCl, nothing typed, was ignored by the preview ("Updated from your entries") and refused by
    the save ("Value: This field is required"); both now leave it out."""
    data = {**_base("T4"), "labs-TOTAL_FORMS": "3", "labs-2-test": "crcl", "labs-2-unit": "mL/min"}
    live = unescape(alice_client.post("/case/preview/", data, headers=HTMX).content.decode())
    assert "Updated from your entries" in live
    assert alice_client.post("/patients/new/", data).status_code == 302
    assert not Patient.objects.get(mrn="T4").lab_results.filter(test="crcl").exists()
