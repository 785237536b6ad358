"""A patient's follow-ups as iCalendar, read as a calendar app reads them (RFC 5545 3.8.4.7: an
imported event replaces the one with the same UID, SEQUENCE telling which is newer)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import icalendar
import pytest
from django.test import Client
from django.utils import timezone

from pathways.models import FollowUp
from pathways.services import patient_reassess
from tests.factories import myeloma_on_zoledronic_acid_14_months_document, stored_patient

pytestmark = pytest.mark.django_db


def _events(client: Client, patient: Any) -> list[Any]:
    response = client.get(f"/patients/{patient.pk}/follow-ups.ics")
    assert response.status_code == 200, response.status_code
    return icalendar.Calendar.from_ical(response.content).walk("VEVENT")


def _by_code(events: list[Any]) -> dict[str, Any]:
    return {str(event["description"]).split()[1]: event for event in events}


@pytest.fixture
def myeloma_patient(alice: Any, north_clinic: Any) -> Any:
    """Three open follow-ups: bp-review-1y, renal-before-infusion, bp-review-2y."""
    document = myeloma_on_zoledronic_acid_14_months_document()
    return stored_patient(north_clinic, alice, document, mrn="MM-77")


@pytest.fixture
def dental_exam_to_do(alice: Any, north_clinic: Any) -> Any:
    """Spec §5: `dental-exam` is due on the assessment date, so re-dated by every assessment."""
    document = myeloma_on_zoledronic_acid_14_months_document()
    document["clinical"]["dental_exam_done"] = False
    return stored_patient(north_clinic, alice, document, mrn="MM-DENT")


def _the_next_day(patient: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    tomorrow = timezone.localdate() + timedelta(days=1)
    monkeypatch.setattr(timezone, "localdate", lambda *args, **kwargs: tomorrow)
    patient_reassess(patient_id=patient.pk)  # the daily run


def test_a_dental_exam_still_to_do_keeps_its_uid_the_next_day(
    alice_client: Client, dental_exam_to_do: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Downloaded on two days (the daily re-assessment in between), the same examination still
    to do is one event in the clinician's calendar, not one more every day."""
    today = _by_code(_events(alice_client, dental_exam_to_do))["dental-exam"]
    _the_next_day(dental_exam_to_do, monkeypatch)
    open_rows = FollowUp.objects.filter(
        patient=dental_exam_to_do, code="dental-exam", completed_at=None
    )
    assert [row.due for row in open_rows] == [timezone.localdate()]  # a new row, re-dated
    tomorrow = _by_code(_events(alice_client, dental_exam_to_do))["dental-exam"]
    assert str(tomorrow["uid"]) == str(today["uid"])
    assert str(today["uid"]).startswith(f"follow-up-{dental_exam_to_do.pk}-dental-exam@")


def test_a_re_dated_follow_up_comes_with_a_higher_sequence(
    alice_client: Client, dental_exam_to_do: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same UID, later date: a calendar app takes it as the update only if its SEQUENCE is
    higher (RFC 5545 3.8.7.4)."""
    today = _by_code(_events(alice_client, dental_exam_to_do))["dental-exam"]
    _the_next_day(dental_exam_to_do, monkeypatch)
    tomorrow = _by_code(_events(alice_client, dental_exam_to_do))["dental-exam"]
    assert tomorrow.decoded("dtstart") == today.decoded("dtstart") + timedelta(days=1)
    assert int(tomorrow["sequence"]) > int(today["sequence"])


def test_a_follow_up_retitled_in_place_comes_with_a_higher_sequence(
    alice_client: Client, myeloma_patient: Any
) -> None:
    """A new rule set renames a follow-up on the same row (follow_ups_sync saves it): its row
    number stays, its SEQUENCE must not."""
    before = _by_code(_events(alice_client, myeloma_patient))
    row = FollowUp.objects.get(patient=myeloma_patient, code="bp-review-1y")
    row.title = "Review the IV bisphosphonate at one year"
    row.save()
    after = _by_code(_events(alice_client, myeloma_patient))
    assert int(after["bp-review-1y"]["sequence"]) > int(before["bp-review-1y"]["sequence"])
    assert after["bp-review-2y"]["sequence"] == before["bp-review-2y"]["sequence"]


def test_uids_are_unique_even_for_two_open_rows_of_one_code(
    alice_client: Client, myeloma_patient: Any
) -> None:
    """follow_ups_sync leaves one open row per code, but the database allows two (unique per
    code and due date): two events with one UID would leave one out of the calendar."""
    first = FollowUp.objects.get(patient=myeloma_patient, code="bp-review-1y")
    FollowUp.objects.create(
        patient=myeloma_patient,
        code="bp-review-1y",
        due=first.due + timedelta(days=30),
        title=first.title,
        rule_set_version=first.rule_set_version,
    )
    uids = [str(event["uid"]) for event in _events(alice_client, myeloma_patient)]
    assert len(uids) == 4 and len(set(uids)) == 4, uids
    named = f"follow-up-{myeloma_patient.pk}-bp-review-1y"
    assert [uid.split("@")[0] for uid in uids if uid.startswith(named)] == [
        named,  # the earlier keeps the UID it always had
        f"{named}-{first.due + timedelta(days=30)}",
    ]


def test_uids_name_a_host_not_a_wildcard(
    alice_client: Client, myeloma_patient: Any, settings: Any
) -> None:
    """`make run HOST=0.0.0.0` (and any deployment that allows every host) sets ALLOWED_HOSTS
    to ["*"]: the UIDs became "follow-up-<n>@*", the same in every such installation, so a
    calendar app merged two installations' follow-ups. The request's host names it instead."""
    settings.ALLOWED_HOSTS = ["*"]
    for event in _events(alice_client, myeloma_patient):
        assert "*" not in str(event["uid"]), str(event["uid"])
        assert str(event["uid"]).endswith("@testserver"), str(event["uid"])


def test_uids_name_the_first_allowed_host_that_is_a_name(
    alice_client: Client, myeloma_patient: Any, settings: Any
) -> None:
    settings.ALLOWED_HOSTS = ["*.example.org", ".alpcare.example.org", "testserver"]
    for event in _events(alice_client, myeloma_patient):
        assert str(event["uid"]).endswith("@alpcare.example.org"), str(event["uid"])
