"""The worklist's tally of patients (clinic, pathway, action rank, first due date) stays equal to
a count made afresh from the follow-ups and snapshots through every write the app makes."""

from __future__ import annotations

import importlib
from datetime import timedelta
from typing import Any

import pytest
from django.db.models import Min
from django.test import Client
from django.utils import timezone

from pathways import engine
from pathways.card_actions import card_action_record
from pathways.cases import patient_to_case
from pathways.models import AssessmentSnapshot, FollowUp, WorklistTally
from pathways.rules import current_rule_set
from pathways.services import (
    follow_up_mark_done,
    follow_up_reopen,
    patient_reassess,
    patient_record_result,
    patient_remove_result,
    patient_save_case,
    worklist_tally_rebuild,
)
from tests.factories import (
    myeloma_on_zoledronic_acid_14_months_document,
    stored_patient,
    worklist_counted,
    worklist_tallied,
)

pytestmark = pytest.mark.django_db


def test_the_tally_follows_every_write_to_follow_ups(
    alice: Any, north_clinic: Any, south_clinic: Any, bob: Any
) -> None:
    paget = stored_patient(north_clinic, alice, mrn="PAGET-1")
    myeloma = stored_patient(
        north_clinic, alice, myeloma_on_zoledronic_acid_14_months_document(), mrn="MM-1"
    )
    stored_patient(south_clinic, bob, mrn="SOUTH-1")
    assert worklist_counted() == worklist_tallied() and len(worklist_counted()) > 2
    ranks = set(AssessmentSnapshot.objects.values_list("action_rank", flat=True))
    assert {0, 1} & ranks and ranks - {0, 1}, "cards and follow-ups both put patients on it"
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
    steps.append(("result added", worklist_counted() == worklist_tallied()))
    paget.refresh_from_db()
    patient_remove_result(patient=paget, result=result, expected_version=paget.version)
    steps.append(("result removed", worklist_counted() == worklist_tallied()))

    # Marked done by hand, then reopened.
    follow_up = FollowUp.objects.filter(patient=myeloma, completed_at=None).first()
    assert follow_up is not None
    follow_up_mark_done(follow_up=follow_up, user=alice, outcome="done")
    steps.append(("marked done", worklist_counted() == worklist_tallied()))
    follow_up_reopen(follow_up=follow_up, user=alice)
    steps.append(("reopened", worklist_counted() == worklist_tallied()))

    # Acknowledging the highest card moves the patient to the next rank.
    assessed = engine.assess(patient_to_case(myeloma), current_rule_set())
    rank = AssessmentSnapshot.objects.get(patient=myeloma).action_rank
    card_action_record(
        patient=myeloma,
        user=alice,
        code=assessed.recommendations[0].code,
        kind="acknowledge",
        rule_set=current_rule_set(),
        result=assessed,
    )
    assert AssessmentSnapshot.objects.get(patient=myeloma).action_rank != rank
    steps.append(("card acknowledged", worklist_counted() == worklist_tallied()))

    # The case changes pathway (the patient's key moves with it).
    paget.refresh_from_db()
    patient_save_case(
        user=alice,
        case=engine.parse_case(myeloma_on_zoledronic_acid_14_months_document()),
        mrn=paget.mrn,
        name=paget.name,
        patient=paget,
        expected_version=paget.version,
    )
    steps.append(("pathway changed", worklist_counted() == worklist_tallied()))
    patient_reassess(patient_id=myeloma.pk)
    steps.append(("re-assessed", worklist_counted() == worklist_tallied()))
    assert steps == [(name, True) for name, _ in steps]

    # Each snapshot's share is what it adds to the tally; a rebuild finds nothing to change.
    shares = {s.patient_id: s.tallied for s in AssessmentSnapshot.objects.all()}
    before = worklist_tallied()
    worklist_tally_rebuild()
    assert worklist_tallied() == before == worklist_counted()
    assert {s.patient_id: s.tallied for s in AssessmentSnapshot.objects.all()} == shares


def test_the_worklist_counts_are_the_tally_and_equal_the_patients(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    for number in range(3):
        stored_patient(north_clinic, alice, mrn=f"P-{number}", name=f"Patient {number}")
    stored_patient(north_clinic, alice, myeloma_on_zoledronic_acid_14_months_document(), mrn="MM-1")
    today = timezone.localdate()
    first_due = {
        row["patient_id"]: row["first"]
        for row in FollowUp.objects.filter(completed_at=None)
        .values("patient_id")
        .annotate(first=Min("due"))
    }
    expected = {
        "overdue": sum(due < today for due in first_due.values()),
        "upcoming": sum(due > today + timedelta(days=7) for due in first_due.values()),
    }
    html = alice_client.get("/").content.decode()
    for status, count in expected.items():
        assert f'data-count="{status}">{count}<' in html, status
    # The counts read the tally, not the patients: emptied, it shows (so it is the source).
    assert sum(expected.values()) > 0
    WorklistTally.objects.update(patients=0)
    html = alice_client.get("/").content.decode()
    for status in expected:
        assert f'data-count="{status}">0<' in html, status


def test_the_migration_fills_the_first_due_dates_shares_and_tally(
    alice: Any, north_clinic: Any
) -> None:
    """Migration 0022 derives the new copies of patients stored before it (here: erased)."""
    from django.apps import apps

    migration = importlib.import_module("pathways.migrations.0022_worklist_per_patient")
    stored_patient(north_clinic, alice, mrn="PAGET-1")
    stored_patient(north_clinic, alice, myeloma_on_zoledronic_acid_14_months_document(), mrn="MM-1")
    before, shares = (
        worklist_tallied(),
        {s.patient_id: s.tallied for s in AssessmentSnapshot.objects.all()},
    )
    assert before == worklist_counted() and all(shares.values())
    AssessmentSnapshot.objects.update(next_due=None, scheduled=False, tallied=[])
    WorklistTally.objects.all().delete()
    migration.worklist_fill(apps, None)
    assert worklist_tallied() == before == worklist_counted()
    assert {s.patient_id: s.tallied for s in AssessmentSnapshot.objects.all()} == shares
