"""The worklist's tally of open follow-ups (clinic, pathway, top priority, due date) stays equal
to a count of the follow-ups themselves through every write the app makes to them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db.models import Count
from django.test import Client
from django.utils import timezone

from pathways import engine
from pathways.models import AssessmentSnapshot, FollowUp, FollowUpTally
from pathways.services import (
    follow_up_mark_done,
    follow_up_reopen,
    follow_up_tally_rebuild,
    patient_reassess,
    patient_record_result,
    patient_remove_result,
    patient_save_case,
)
from tests.factories import myeloma_on_zoledronic_acid_14_months_document, stored_patient

pytestmark = pytest.mark.django_db
KEYS = ("clinic_id", "pathway", "top_priority_rank", "due")


def counted() -> dict[tuple[Any, ...], int]:
    rows = FollowUp.objects.filter(completed_at__isnull=True).values(*KEYS).annotate(n=Count("pk"))
    return {tuple(row[key] for key in KEYS): row["n"] for row in rows}


def tallied() -> dict[tuple[Any, ...], int]:
    return {
        (t.clinic_id, t.pathway, t.top_priority_rank, t.due): t.open
        for t in FollowUpTally.objects.exclude(open=0)
    }


def test_the_tally_follows_every_write_to_follow_ups(
    alice: Any, north_clinic: Any, south_clinic: Any, bob: Any
) -> None:
    paget = stored_patient(north_clinic, alice, mrn="PAGET-1")
    myeloma = stored_patient(
        north_clinic, alice, myeloma_on_zoledronic_acid_14_months_document(), mrn="MM-1"
    )
    stored_patient(south_clinic, bob, mrn="SOUTH-1")
    assert counted() == tallied() and len(counted()) > 2
    steps = []

    # A new result (the ALP follow-ups move or complete), then its removal.
    paget.refresh_from_db()
    lab = engine.parse_case(
        {
            **myeloma_on_zoledronic_acid_14_months_document(),
            "as_of": timezone.localdate().isoformat(),
            "labs": [
                {
                    "test": "alp",
                    "value": 410,
                    "unit": "U/L",
                    "collected_at": f"{timezone.localdate() - timedelta(days=1)}T08:00",
                }
            ],
        }
    ).labs[0]
    result = patient_record_result(
        patient=paget, user=alice, lab=lab, expected_version=paget.version
    )
    steps.append(("result added", counted() == tallied()))
    paget.refresh_from_db()
    patient_remove_result(patient=paget, result=result, expected_version=paget.version)
    steps.append(("result removed", counted() == tallied()))

    # Marked done by hand, then reopened.
    follow_up = FollowUp.objects.filter(patient=myeloma, completed_at=None).first()
    assert follow_up is not None
    follow_up_mark_done(follow_up=follow_up, user=alice, outcome="done")
    steps.append(("marked done", counted() == tallied()))
    follow_up_reopen(follow_up=follow_up, user=alice)
    steps.append(("reopened", counted() == tallied()))

    # The case changes pathway (the follow-ups' pathway and priority copies move with it).
    paget.refresh_from_db()
    patient_save_case(
        user=alice,
        case=engine.parse_case(myeloma_on_zoledronic_acid_14_months_document()),
        mrn=paget.mrn,
        name=paget.name,
        patient=paget,
        expected_version=paget.version,
    )
    steps.append(("pathway changed", counted() == tallied()))
    patient_reassess(patient_id=myeloma.pk)
    steps.append(("re-assessed", counted() == tallied()))
    assert steps == [(name, True) for name, _ in steps]

    # Each snapshot's share is what it adds to the tally; a rebuild finds nothing to change.
    shares = {s.patient_id: s.tallied for s in AssessmentSnapshot.objects.all()}
    before = tallied()
    follow_up_tally_rebuild()
    assert tallied() == before == counted()
    assert {s.patient_id: s.tallied for s in AssessmentSnapshot.objects.all()} == shares


def test_the_worklist_counts_are_the_tally_and_equal_the_follow_ups(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    for number in range(3):
        stored_patient(north_clinic, alice, mrn=f"P-{number}", name=f"Patient {number}")
    stored_patient(north_clinic, alice, myeloma_on_zoledronic_acid_14_months_document(), mrn="MM-1")
    today = timezone.localdate()
    open_follow_ups = FollowUp.objects.filter(completed_at=None)
    expected = {
        "overdue": open_follow_ups.filter(due__lt=today).count(),
        "upcoming": open_follow_ups.filter(due__gt=today + timedelta(days=7)).count(),
    }
    html = alice_client.get("/").content.decode()
    for status, count in expected.items():
        assert f'data-count="{status}">{count}<' in html, status
    # The counts read the tally, not the follow-ups: emptied, it shows (so it is the source).
    assert sum(expected.values()) > 0
    FollowUpTally.objects.update(open=0)
    html = alice_client.get("/").content.decode()
    for status in expected:
        assert f'data-count="{status}">0<' in html, status
