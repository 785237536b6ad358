"""Patients and results: optimistic locking, duplicates, constraints, history, access log."""

from __future__ import annotations

import math
from typing import Any

import pytest
from django.db import IntegrityError, transaction

from pathways import engine
from pathways.cases import patient_to_document
from pathways.models import AccessLog, AppendOnlyError, FollowUp, LabResult, Patient, Therapy
from pathways.rules import current_rule_set
from pathways.services import (
    DuplicateMrn,
    DuplicateResult,
    StaleVersion,
    follow_up_mark_done,
    patient_record_result,
    patient_save_case,
)
from tests.factories import paget_on_alendronate_document, stored_patient

pytestmark = pytest.mark.django_db


def _lab(document: dict[str, Any]) -> engine.Lab:
    case = engine.parse_case(paget_on_alendronate_document(labs=[document]))
    return case.labs[0]


def test_a_stored_patient_round_trips_to_the_same_case_document(
    north_clinic: Any, alice: Any
) -> None:
    document = paget_on_alendronate_document()
    patient = stored_patient(north_clinic, alice, document)
    again = patient_to_document(patient, as_of=engine.parse_case(document).as_of)
    assert engine.parse_case(again) == engine.parse_case(document)


def test_it_refuses_a_save_based_on_a_stale_version(north_clinic: Any, alice: Any) -> None:
    patient = stored_patient(north_clinic, alice)
    loaded_version = patient.version
    case = engine.parse_case(paget_on_alendronate_document())
    patient_save_case(
        user=alice,
        case=case,
        mrn=patient.mrn,
        name="Someone else's edit",
        patient=patient,
        expected_version=loaded_version,
    )
    with pytest.raises(StaleVersion, match="changed by someone else"):
        patient_save_case(
            user=alice,
            case=case,
            mrn=patient.mrn,
            name="My stale edit",
            patient=patient,
            expected_version=loaded_version,
        )
    assert Patient.objects.get(pk=patient.pk).name == "Someone else's edit"


def test_adding_a_result_bumps_the_version_so_an_open_form_cannot_overwrite_it(
    north_clinic: Any, alice: Any
) -> None:
    patient = stored_patient(north_clinic, alice)
    form_version = patient.version
    patient_record_result(
        patient=patient,
        expected_version=Patient.objects.get(pk=patient.pk).version,
        user=alice,
        lab=_lab({"test": "alp", "value": 190, "unit": "U/L", "collected_at": "2026-11-01T08:00"}),
    )
    with pytest.raises(StaleVersion):
        patient_save_case(
            user=alice,
            case=engine.parse_case(paget_on_alendronate_document()),
            mrn=patient.mrn,
            name=patient.name,
            patient=patient,
            expected_version=form_version,
        )
    assert patient.lab_results.filter(value=190).exists()


def test_it_refuses_a_duplicate_result(north_clinic: Any, alice: Any) -> None:
    patient = stored_patient(north_clinic, alice)
    existing = {"test": "alp", "value": 999, "unit": "U/L", "collected_at": "2026-10-01T08:40"}
    with pytest.raises(DuplicateResult, match="already recorded"):
        patient_record_result(
            patient=patient, user=alice, lab=_lab(existing), expected_version=patient.version
        )
    assert patient.lab_results.count() == 2


def test_a_date_only_result_differs_from_one_drawn_at_midnight(
    north_clinic: Any, alice: Any
) -> None:
    patient = stored_patient(north_clinic, alice)
    patient_record_result(
        patient=patient,
        expected_version=Patient.objects.get(pk=patient.pk).version,
        user=alice,
        lab=_lab({"test": "alp", "value": 200, "unit": "U/L", "collected_at": "2026-11-02"}),
    )
    patient_record_result(
        patient=patient,
        expected_version=Patient.objects.get(pk=patient.pk).version,
        user=alice,
        lab=_lab({"test": "alp", "value": 201, "unit": "U/L", "collected_at": "2026-11-02T00:00"}),
    )
    with pytest.raises(DuplicateResult):
        patient_record_result(
            patient=patient,
            expected_version=Patient.objects.get(pk=patient.pk).version,
            user=alice,
            lab=_lab({"test": "alp", "value": 202, "unit": "U/L", "collected_at": "2026-11-02"}),
        )


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_a_stored_tie_between_a_bare_date_and_midnight_keeps_the_order_it_came_in(
    north_clinic: Any, alice: Any, order: tuple[int, int]
) -> None:
    """Spec §2: a bare date sorts as 00:00 and ties keep document order; the stored patient
    keeps the order its results came in, so it is assessed as the document it was saved from
    (spec §7: the form and the JSON must never disagree)."""
    labs = [
        {"test": "alp", "value": 300, "unit": "U/L", "collected_at": "2026-11-02T00:00"},
        {"test": "alp", "value": 100, "unit": "U/L", "collected_at": "2026-11-02"},
    ]
    document = paget_on_alendronate_document(labs=[labs[i] for i in order])
    patient = stored_patient(north_clinic, alice, document)
    as_of = engine.parse_case(document).as_of
    stored = engine.parse_case(patient_to_document(patient, as_of=as_of))
    assert [lab.value for lab in stored.labs] == [labs[i]["value"] for i in order]
    assert stored == engine.parse_case(document)


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_a_stored_patient_with_two_courses_started_on_one_day_is_assessed_as_its_document(
    north_clinic: Any, alice: Any, order: tuple[int, int]
) -> None:
    """Spec §7: the stored patient and the JSON agree, whatever order the document lists two
    courses started the same day in (the stored path lists them by start and agent)."""
    therapies = [
        {"agent": "zoledronic_acid", "start": "2026-06-10", "end": None},
        {"agent": "alendronate", "start": "2026-06-10", "end": "2026-08-10"},
    ]
    document = paget_on_alendronate_document()
    document["clinical"] = {**document["clinical"], "therapies": [therapies[i] for i in order]}
    patient = stored_patient(north_clinic, alice, document)
    as_of = engine.parse_case(document).as_of
    stored = engine.parse_case(patient_to_document(patient, as_of=as_of))
    rule_set = current_rule_set()
    assert engine.result_to_document(engine.assess(stored, rule_set)) == (
        engine.result_to_document(engine.assess(engine.parse_case(document), rule_set))
    )


def test_results_list_a_bare_date_first_on_its_day_on_every_database(
    north_clinic: Any, alice: Any
) -> None:
    """The results table (the model's order) sorts a bare date as 00:00, as spec §2 does, on
    PostgreSQL too (which puts nulls last unless told)."""
    document = paget_on_alendronate_document(
        labs=[
            {"test": "alp", "value": 300, "unit": "U/L", "collected_at": "2026-11-02T08:00"},
            {"test": "alp", "value": 100, "unit": "U/L", "collected_at": "2026-11-02"},
        ]
    )
    patient = stored_patient(north_clinic, alice, document)
    assert [row.value for row in patient.lab_results.all()] == [100, 300]


@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf])
def test_the_database_refuses_negative_and_non_finite_values(
    north_clinic: Any, alice: Any, value: float
) -> None:
    patient = stored_patient(north_clinic, alice)
    with pytest.raises(IntegrityError), transaction.atomic():
        LabResult.objects.create(
            patient=patient,
            test="alp",
            value=value,
            unit="U/L",
            canonical_value=value,
            canonical_unit="U/L",
            collected_on="2026-11-03",
        )


def test_the_database_refuses_a_second_untimed_result_on_the_same_day(
    north_clinic: Any, alice: Any
) -> None:
    patient = stored_patient(north_clinic, alice)
    fields = {
        "patient": patient,
        "test": "ggt",
        "value": 40,
        "unit": "U/L",
        "canonical_value": 40,
        "canonical_unit": "U/L",
        "collected_on": "2026-11-03",
    }
    LabResult.objects.create(**fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        LabResult.objects.create(**fields)


def test_an_mrn_is_unique_within_its_clinic(
    north_clinic: Any, south_clinic: Any, alice: Any
) -> None:
    stored_patient(north_clinic, alice, mrn="X-1")
    stored_patient(south_clinic, alice, mrn="X-1")  # another clinic may reuse it
    with pytest.raises(DuplicateMrn, match="already used"):
        stored_patient(north_clinic, alice, mrn="X-1")


def test_every_kind_of_change_leaves_a_history_row(north_clinic: Any, alice: Any) -> None:
    patient = stored_patient(north_clinic, alice)
    assert patient.history.count() == 1
    lab = patient.lab_results.first()
    therapy = patient.therapies.first()
    assert lab is not None and therapy is not None
    assert lab.history.filter(history_type="+").exists()
    assert therapy.history.filter(history_type="+").exists()
    follow_up = FollowUp.objects.filter(patient=patient).first()
    assert follow_up is not None and follow_up.history.filter(history_type="+").exists()

    # An edit that changes a result, ends the therapy and removes a result.
    document = paget_on_alendronate_document()
    document["labs"] = [dict(document["labs"][0], value=420)]
    document["clinical"]["therapies"][0]["end"] = "2026-11-01"
    patient_save_case(
        user=alice,
        case=engine.parse_case(document),
        mrn=patient.mrn,
        name=patient.name,
        patient=patient,
        expected_version=patient.version,
    )
    assert patient.history.count() == 2
    assert patient.history.first().history_type == "~"
    changed = LabResult.history.filter(id=lab.pk, history_type="~")
    assert changed.exists() and changed.first().value == 420
    assert LabResult.history.filter(history_type="-").count() == 1
    assert Therapy.history.filter(id=therapy.pk, history_type="~").first().end is not None

    follow_up = FollowUp.objects.filter(patient=patient).first()
    assert follow_up is not None
    follow_up_mark_done(follow_up=follow_up, user=alice)
    done = FollowUp.history.filter(id=follow_up.pk, history_type="~").first()
    assert done is not None and done.completed_by_id == alice.pk


def test_the_access_log_cannot_be_changed_or_deleted(north_clinic: Any, alice: Any) -> None:
    patient = stored_patient(north_clinic, alice)
    entry = AccessLog.objects.create(user=alice, patient=patient, action="test", path="/")
    entry.action = "tampered"
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.delete()
    with pytest.raises(AppendOnlyError):
        AccessLog.objects.filter(pk=entry.pk).update(action="tampered")
    with pytest.raises(AppendOnlyError):
        AccessLog.objects.all().delete()


def test_viewing_a_patient_is_logged(alice_client: Any, north_clinic: Any, alice: Any) -> None:
    patient = stored_patient(north_clinic, alice)
    alice_client.get(f"/patients/{patient.pk}/")
    entry = AccessLog.objects.get(patient=patient)
    assert entry.user == alice and entry.action == "patient page"


def test_the_change_history_is_visible_in_the_admin(
    client: Any, north_clinic: Any, alice: Any
) -> None:
    from django.contrib.auth.models import Permission

    patient = stored_patient(north_clinic, alice)
    document = paget_on_alendronate_document()
    patient_save_case(
        user=alice,
        case=engine.parse_case(document),
        mrn=patient.mrn,
        name="Margaret A. Ellis",
        patient=patient,
        expected_version=patient.version,
    )
    alice.is_staff = True
    alice.save()
    alice.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_patient", "view_labresult"])
    )
    client.force_login(alice)
    page = client.get(f"/admin/pathways/patient/{patient.pk}/history/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "Margaret A. Ellis" in text and "alice" in text


def test_a_matching_result_completes_a_stored_follow_up_and_its_removal_reopens_it(
    north_clinic: Any, alice: Any
) -> None:
    from tests.factories import myeloma_on_zoledronic_acid_14_months_document

    document = myeloma_on_zoledronic_acid_14_months_document()
    patient = stored_patient(north_clinic, alice, document)
    # bortezomib 2025-09-05: day 42 is 2025-10-17; the ALP of 2025-10-10 is within 14 days of it.
    day_42 = FollowUp.objects.get(patient=patient, code="alp-day-42")
    assert day_42.completed_at is not None and day_42.completed_by_result
    assert day_42.completed_by is None

    # Spec §5: any ALP from due - 14 days on completes it; keep only the pre-treatment one.
    document["labs"] = [
        lab
        for lab in document["labs"]
        if lab["test"] != "alp" or lab["collected_at"] < "2025-09-05"
    ]
    patient_save_case(
        user=alice,
        case=engine.parse_case(document),
        mrn=patient.mrn,
        name=patient.name,
        patient=patient,
        expected_version=patient.version,
    )
    day_42.refresh_from_db()
    assert day_42.completed_at is None and not day_42.completed_by_result
