"""Undo of "mark done": it takes back the completion the page showed, and only that one."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from pathways import services
from pathways.models import FollowUp, Membership
from tests.factories import stored_patient
from tests.test_views_worklist import HTMX, cards, no_dental_exam_document

pytestmark = pytest.mark.django_db


def _undo_form(client: Client, patient: Any, follow_up: FollowUp) -> dict[str, str]:
    """What the Undo form of the follow-up, on the patient page as loaded now, posts."""
    page = client.get(f"/patients/{patient.pk}/").content.decode()
    action = f"/patients/{patient.pk}/follow-ups/{follow_up.pk}/undo/"
    form = re.search(rf'<form[^>]*action="{re.escape(action)}".*?</form>', page, re.S)
    assert form is not None, "the page offers no Undo for the follow-up"
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form[0])
    return {name: value for name, value in fields if name != "csrfmiddlewaretoken"}


def _record(follow_up: FollowUp) -> tuple[Any, ...]:
    """The completion as stored: when, by whom, the outcome and the note."""
    follow_up.refresh_from_db()
    return (follow_up.completed_at, follow_up.completed_by, follow_up.outcome, follow_up.note)


def _carol(clinic: Any) -> Client:
    carol = User.objects.create_user("carol")
    Membership.objects.create(user=carol, clinic=clinic, role=Membership.Role.CLINICIAN)
    colleague = Client()
    colleague.force_login(carol)
    return colleague


def _done_then_redone_by_carol(
    alice_client: Client, clinic: Any, patient: Any, follow_up: FollowUp, outcome: str, note: str
) -> dict[str, str]:
    """Alice marks the follow-up done (the Undo her page then shows is returned); Carol, from a
    page of her own, undoes it and records her own outcome."""
    base = f"/patients/{patient.pk}/follow-ups/{follow_up.pk}"
    today = str(timezone.localdate())
    alice_client.post(f"{base}/done/", {"outcome": "done", "done_on": today}, headers=HTMX)
    alices_undo = _undo_form(alice_client, patient, follow_up)
    colleague = _carol(clinic)
    colleague.post(f"{base}/undo/", _undo_form(colleague, patient, follow_up), headers=HTMX)
    done = {"outcome": outcome, "done_on": today, "note": note}
    colleague.post(f"{base}/done/", done, headers=HTMX)
    return alices_undo


def test_undo_from_a_stale_page_does_not_reopen_a_colleagues_completion(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    """Alice marks a follow-up done; her page offers Undo. Carol undoes it and records her own
    outcome ("declined", with a note). Alice's Undo (the form her page still shows, or a second
    click of it) reopened Carol's record in Alice's name: Carol's outcome and note were gone and
    the follow-up was back on the worklist. Found by an audit."""
    patient = stored_patient(north_clinic, alice, mrn="PAGET-1")
    follow_up = FollowUp.objects.filter(patient=patient, completed_at=None).first()
    assert follow_up is not None
    base = f"/patients/{patient.pk}/follow-ups/{follow_up.pk}"
    alices_undo = _done_then_redone_by_carol(
        alice_client, north_clinic, patient, follow_up, "declined", "Patient refused the draw"
    )
    carols = _record(follow_up)
    carol = User.objects.get(username="carol")
    assert carols[1:] == (carol, "declined", "Patient refused the draw")
    history = follow_up.history.count()

    html = alice_client.post(f"{base}/undo/", alices_undo, headers=HTMX).content.decode()
    assert _record(follow_up) == carols, "Carol's completion was reopened by Alice's Undo"
    assert follow_up.history.count() == history
    assert f"Not undone: {follow_up.title}: its completion changed since this page" in html
    assert "now done by carol" in html and "undo again if you still want to" in html
    # A post that does not say which completion (a page from before Undo said) takes back only
    # one's own.
    html = alice_client.post(f"{base}/undo/", headers=HTMX).content.decode()
    assert _record(follow_up) == carols
    assert "did not say which completion to undo" in html

    # From the page as it is now, Alice's Undo takes back Carol's completion, which it shows.
    undo = _undo_form(alice_client, patient, follow_up)
    alice_client.post(f"{base}/undo/", undo, headers=HTMX)
    assert _record(follow_up) == (None, None, "", "")
    history = follow_up.history.count()
    html = alice_client.post(f"{base}/undo/", undo, headers=HTMX).content.decode()  # clicked twice
    assert f"Not undone: {follow_up.title}: already undone" in html
    assert follow_up.history.count() == history


def test_undo_from_a_stale_page_keeps_the_dental_examination_a_colleague_recorded(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    """The dental examination is a fact of the case: Alice's Undo from her stale page withdrew
    the examination Carol recorded (done elsewhere) and the card asking for it came back."""
    patient = stored_patient(north_clinic, alice, no_dental_exam_document(), mrn="MM-D")
    follow_up = FollowUp.objects.get(patient=patient, code="dental-exam")
    base = f"/patients/{patient.pk}/follow-ups/{follow_up.pk}"
    alices_undo = _done_then_redone_by_carol(
        alice_client, north_clinic, patient, follow_up, "done_elsewhere", "Seen by her own dentist"
    )
    patient.refresh_from_db()
    version = patient.version
    assert patient.dental_exam_done is True

    html = alice_client.post(f"{base}/undo/", alices_undo, headers=HTMX).content.decode()
    patient.refresh_from_db()
    assert (patient.dental_exam_done, patient.version) == (True, version)
    assert "antiresorptive-dental-exam" not in cards(patient)
    _, by, outcome, note = _record(follow_up)
    assert (by.username, outcome, note) == ("carol", "done_elsewhere", "Seen by her own dentist")
    assert "its completion changed since this page was loaded" in html


def test_an_undo_refused_says_it_was_not_undone(
    alice_client: Client, alice: Any, north_clinic: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused Undo was shown as "Not marked done: Not changed: …", the words of the other
    form: the follow-up was done, and it was the Undo that did not happen."""
    patient = stored_patient(north_clinic, alice, mrn="PAGET-3")
    follow_up = FollowUp.objects.filter(patient=patient, completed_at=None).first()
    assert follow_up is not None
    base = f"/patients/{patient.pk}/follow-ups/{follow_up.pk}"
    alice_client.post(f"{base}/done/", {"outcome": "done"}, headers=HTMX)
    follow_up.refresh_from_db()
    form = _undo_form(alice_client, patient, follow_up)
    locked = services._locked

    def rescheduled_meanwhile(patient: Any) -> Any:  # a new result re-scheduled it meanwhile
        FollowUp.objects.filter(pk=follow_up.pk).delete()
        return locked(patient)

    monkeypatch.setattr(services, "_locked", rescheduled_meanwhile)
    html = alice_client.post(f"{base}/undo/", form, headers=HTMX).content.decode()
    assert "Not marked done" not in html and "Not changed" not in html
    assert f"Not undone: {follow_up.title}: re-scheduled meanwhile" in html
    assert "Not marked done" not in html and "Not changed" not in html

    follow_up.save()  # back, done as before; this time the page without htmx
    page = alice_client.post(f"{base}/undo/", form, follow=True).content.decode()
    assert f"Not undone: {follow_up.title}: re-scheduled meanwhile" in page
    assert "Not marked done" not in page and "Not changed" not in page
