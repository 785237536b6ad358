"""A result's time typed in the hour the clocks skip (spring forward) is refused: stored, it was
exported as 01:30+00:00 and read back as 02:30, so the record changed on a round trip.

The clinic's time zone is Europe/London here (ALPCARE_TIME_ZONE): on 29 March 2026 its clocks
went from 01:00 GMT to 02:00 BST, so 01:00-01:59 did not occur that night.
"""

from __future__ import annotations

import re
from datetime import UTC, date, time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.test import Client

from pathways import feed
from pathways.engine.dates import skipped_by_the_clocks
from pathways.feed_models import Hl7Feed, Hl7Message, Hl7Result
from pathways.forms import SKIPPED_TIME
from pathways.models import ApiToken, LabResult, Patient
from tests.factories import form_data, paget_on_alendronate_document, stored_patient
from tests.test_hl7_feed import lab_user, north_feed, oru, patient
from tests.test_views_case import HTMX, live_errors

__all__ = ["lab_user", "north_feed", "patient"]  # fixtures, found by pytest under these names

LONDON = ZoneInfo("Europe/London")
CLOCKS_FORWARD = date(2026, 3, 29)
CLOCKS_BACK = date(2026, 10, 25)


@pytest.fixture
def london(settings: Any) -> None:
    settings.TIME_ZONE = "Europe/London"


def paget_with_alp_at(collected_at: str) -> dict[str, Any]:
    """The Paget's case, its first ALP collected at ``collected_at`` (local time)."""
    document = paget_on_alendronate_document()
    document["labs"][0]["collected_at"] = collected_at
    return document


def field_error(html: str, field_id: str) -> str:
    match = re.search(rf'id="{field_id}-error">([^<]*)</div>', html)
    assert match, html
    return match[1].strip()


# ---------------------------------------------------------------------------------------------
# The calendar check (no database).


@pytest.mark.parametrize("at", [time(1, 0), time(1, 30), time(1, 59, 59)])
def test_the_hour_the_clocks_skip_did_not_occur(at: time) -> None:
    assert skipped_by_the_clocks(CLOCKS_FORWARD, at, LONDON)


def test_an_hour_skipped_at_midnight_is_found_too() -> None:
    """Chile moves its clocks at midnight: 00:30 on 6 September 2026 did not occur in Santiago,
    while the day before ends at the offset it started with."""
    santiago = ZoneInfo("America/Santiago")
    assert skipped_by_the_clocks(date(2026, 9, 6), time(0, 30), santiago)
    assert not skipped_by_the_clocks(date(2026, 9, 5), time(23, 30), santiago)
    assert not skipped_by_the_clocks(date(9999, 12, 31), time(23, 30), santiago)


@pytest.mark.parametrize(
    ("day", "at"),
    [
        (CLOCKS_FORWARD, time(0, 59)),
        (CLOCKS_FORWARD, time(2, 0)),
        (CLOCKS_FORWARD, time(3, 30)),
        (CLOCKS_BACK, time(1, 30)),  # occurred twice: not skipped (its behaviour is unchanged)
        (date(2026, 6, 1), time(1, 30)),
    ],
)
def test_a_time_that_occurred_is_not_skipped(day: date, at: time) -> None:
    assert not skipped_by_the_clocks(day, at, LONDON)


def test_no_time_is_skipped_in_utc_nor_at_the_calendars_edge() -> None:
    assert not skipped_by_the_clocks(CLOCKS_FORWARD, time(1, 30), UTC)
    assert not skipped_by_the_clocks(date(1, 1, 1), time(0, 30), ZoneInfo("Asia/Tokyo"))


# ---------------------------------------------------------------------------------------------
# As a clinician types it.


@pytest.mark.django_db
def test_a_result_typed_at_a_time_the_clocks_skipped_is_not_saved(
    london: None, alice_client: Client
) -> None:
    data = form_data(paget_with_alp_at("2026-03-29T01:30"), mrn="DST-1")
    response = alice_client.post("/patients/new/", data)
    html = response.content.decode()
    assert response.status_code == 400
    assert field_error(html, "id_labs-0-collected_time") == SKIPPED_TIME
    assert f'href="#id_labs-0-collected_time">Result 1: at (time): {SKIPPED_TIME}' in html
    assert not Patient.objects.exists()


@pytest.mark.django_db
def test_the_live_preview_says_so_as_the_time_is_typed(london: None, alice_client: Client) -> None:
    """The engine reads a time as typed, so only the form knows: the preview names the field
    before Save is pressed, and still shows the advice."""
    data = form_data(paget_with_alp_at("2026-03-29T01:30"), mrn="DST-1")
    html = alice_client.post("/case/preview/", data, headers=HTMX).content.decode()
    assert live_errors(html) == {"id_labs-0-collected_time-error": [SKIPPED_TIME]}
    assert "1 entry needs attention" in html and "data-code=" in html

    data = form_data(paget_with_alp_at("2026-03-29T03:30"), mrn="DST-1")
    html = alice_client.post("/case/preview/", data, headers=HTMX).content.decode()
    assert live_errors(html) == {}


@pytest.mark.django_db
def test_a_result_added_at_a_time_the_clocks_skipped_is_refused(
    london: None, alice: Any, north_clinic: Any, alice_client: Client
) -> None:
    patient = stored_patient(north_clinic, alice)
    response = alice_client.post(f"/patients/{patient.pk}/results/", {
        "test": "alp", "value": "300", "unit": "U/L", "collected_on": "2026-03-29",
        "collected_time": "01:30", "reference_high": "129", "reference_low": "",
        "version": str(patient.version),
    })  # fmt: skip
    assert response.status_code == 400
    assert field_error(response.content.decode(), "result_collected_time") == SKIPPED_TIME
    assert patient.lab_results.count() == 2


@pytest.mark.django_db
def test_a_result_typed_after_the_clocks_went_forward_is_stored_and_round_trips(
    london: None, alice: Any, alice_client: Client
) -> None:
    """03:30 that night is 02:30 UTC: exported with its offset, read back as typed."""
    response = alice_client.post(
        "/patients/new/", form_data(paget_with_alp_at("2026-03-29T03:30"), mrn="DST-2")
    )
    assert response.status_code == 302, response.content.decode()
    patient = Patient.objects.get(mrn="DST-2")
    stored = patient.lab_results.get(collected_on=CLOCKS_FORWARD)
    assert stored.collected_time == time(3, 30)

    key = ApiToken.issue(user=alice, name="ehr", scopes=["write", "read"])[1]
    auth = {"Authorization": f"Token {key}"}
    bundle = alice_client.get(f"/api/v1/fhir/Patient/{patient.pk}/$everything", headers=auth).json()
    collected = [
        entry["resource"]["effectiveDateTime"]
        for entry in bundle["entry"]
        if entry["resource"]["resourceType"] == "Observation"
    ]
    assert "2026-03-29T03:30:00+01:00" in collected
    imported = alice_client.post(
        "/api/v1/fhir", bundle, content_type="application/fhir+json", headers=auth
    )
    assert imported.status_code == 200, imported.content.decode()
    times = LabResult.objects.filter(patient=patient).values_list("collected_on", "collected_time")
    assert sorted(times) == [(CLOCKS_FORWARD, time(3, 30)), (date(2026, 10, 1), time(8, 40))]


@pytest.mark.django_db
def test_the_assess_api_reads_a_time_as_written_and_stores_nothing(
    london: None, client: Client, alice: Any
) -> None:
    """The engine reads collected_at as a clock reading (order, time of day), never as an
    instant in a time zone, and the API stores nothing: there is no round trip to break."""
    key = ApiToken.issue(user=alice, name="k", scopes=["assess"])[1]
    response = client.post(
        "/api/v1/assess",
        paget_with_alp_at("2026-03-29T01:30"),
        content_type="application/json",
        headers={"Authorization": f"Token {key}"},
    )
    assert response.status_code == 200, response.content.decode()
    assert not LabResult.objects.exists()


# ---------------------------------------------------------------------------------------------
# As the lab feed sends it (HL7 v2: a time without a UTC offset is local time).


def sent_without_offsets(control_id: str, *, obx_14: str, obr_7: str = "") -> str:
    """The feed's ALP message with no UTC offset in MSH-7, OBR-7 (blank by default) or OBX-14
    unless the time given carries one."""
    text = oru(control_id, collected=obx_14).replace("20261101090000+0100", "20260329090000")
    return text.replace(f"|||{obx_14}\rOBX", f"|||{obr_7}\rOBX")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"obx_14": "20260329013000"}, "OBX 1-14"),
        ({"obx_14": "", "obr_7": "202603290130"}, "OBR-7"),
    ],
)
def test_a_lab_result_sent_at_a_time_the_clocks_skipped_is_refused(
    london: None, north_feed: Hl7Feed, patient: Patient, fields: dict[str, str], where: str
) -> None:
    """01:30 without an offset on the night London's clocks went forward was stored as 02:30
    (and exported as such): a collection time the laboratory never sent."""
    text = sent_without_offsets("GAP1", **fields)
    outcome = feed.receive(text, via="test")
    reason = (
        f"{where}: 01:30 on 2026-03-29 did not occur in Europe/London (the clocks went "
        "forward); send the time with its UTC offset"
    )
    assert (outcome.code, outcome.text) == ("AE", reason)
    assert not Hl7Result.objects.exists()
    assert not LabResult.objects.filter(patient=patient, collected_on=CLOCKS_FORWARD).exists()
    kept = Hl7Message.objects.get()  # the raw message is kept, as for any refusal
    assert (kept.status, kept.ack_code, kept.ack_text, kept.raw) == (
        Hl7Message.Status.REFUSED, "AE", reason, text,
    )  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("obx_14", "msh_7", "stored_at"),
    [
        ("20260329033000", "20260329090000", time(3, 30)),  # after the clocks went forward
        ("20260329013000+0100", "20260329090000", time(0, 30)),  # 00:30 UTC, still GMT
        ("20260329013000", "20260329090000+0000", time(2, 30)),  # the message's offset: UTC
    ],
)
def test_a_lab_result_sent_at_a_time_that_occurred_that_night_is_stored(
    london: None,
    north_feed: Hl7Feed,
    patient: Patient,
    obx_14: str,
    msh_7: str,
    stored_at: time,
) -> None:
    """A time that occurred, or one with its UTC offset (its own or the message's), is an
    instant: stored as the clock in London read then."""
    text = sent_without_offsets("GAP2", obx_14=obx_14).replace("20260329090000", msh_7)
    outcome = feed.receive(text, via="test")
    assert (outcome.code, outcome.text) == ("AA", "1 result(s): 1 stored")
    stored = LabResult.objects.get(patient=patient, collected_on=CLOCKS_FORWARD)
    assert stored.collected_time == stored_at
