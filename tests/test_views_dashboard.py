"""The worklist: one row per patient, counts, filters, search, sort and pages, in constant
queries."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from pathways import dashboard, engine
from pathways.models import AssessmentSnapshot, FollowUp
from pathways.services import patient_save_case, worklist_copies_store
from tests.factories import myeloma_on_zoledronic_acid_14_months_document, stored_patient

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}


def rows(html: str) -> list[str]:
    return [part.split('"', 1)[0] for part in html.split('data-mrn="')[1:]]


def counts(html: str) -> dict[str, int]:
    return {key: int(n) for key, n in re.findall(r'data-count="(\w+)">(\d+)<', html)}


def open_follow_ups(patient: Any) -> list[FollowUp]:
    return list(FollowUp.objects.filter(patient=patient, completed_at__isnull=True))


@pytest.fixture
def paget_patient(alice: Any, north_clinic: Any) -> Any:
    return stored_patient(north_clinic, alice, mrn="PAGET-1", name="Margaret Ellis")


@pytest.fixture
def myeloma_patient(alice: Any, north_clinic: Any) -> Any:
    return stored_patient(
        north_clinic,
        alice,
        myeloma_on_zoledronic_acid_14_months_document(),
        mrn="MM-14",
        name="Samuel Okafor",
    )


def _set_due(patient: Any, days_from_today: int) -> FollowUp:
    """Move a follow-up's due date, then keep the worklist's copies as the app does after every
    write to follow-ups (the tally of open follow-ups per due date)."""
    follow_up = open_follow_ups(patient)[0]
    follow_up.due = timezone.localdate() + timedelta(days=days_from_today)
    follow_up.save()
    worklist_copies_store(patient=patient)
    return follow_up


def test_the_worklist_lists_each_patient_needing_action_once_with_counts(
    alice_client: Client, paget_patient: Any, myeloma_patient: Any
) -> None:
    assert "PAGET-1" not in rows(alice_client.get("/").content.decode())  # nothing due soon
    _set_due(paget_patient, 3)
    response = alice_client.get("/")
    html = response.content.decode()
    assert response.status_code == 200
    assert len(open_follow_ups(paget_patient)) > 1 and len(open_follow_ups(myeloma_patient)) > 1
    assert sorted(rows(html)) == ["MM-14", "PAGET-1"]  # one row each, not one per follow-up
    assert 'data-count="all">2</span>' in html
    more = len(open_follow_ups(paget_patient)) - 1
    assert f"+{more} more follow-up{'s' if more > 1 else ''}" in html
    latest = myeloma_patient.lab_results.filter(test="alp").order_by("collected_on").last()
    assert f'class="text-muted alp-date">{latest.collected_on.isoformat()}<' in html
    assert "Samuel Okafor" in html and "Margaret Ellis" in html
    assert "\u00d7 ULN" in html and '<svg class="sparkline"' in html
    assert "<title>2026-10-01: ALP 260 U/L</title>" in html  # each sparkline point: date, value
    assert 'data-code="' in html  # the top recommendation


def test_filters_by_status_pathway_priority_and_search(
    alice_client: Client, paget_patient: Any, myeloma_patient: Any
) -> None:
    _set_due(paget_patient, -10)
    overdue = alice_client.get("/?status=overdue").content.decode()
    assert "PAGET-1" in rows(overdue)
    assert all('data-status="overdue"' in part for part in overdue.split("<tr ")[2:])
    myeloma = rows(alice_client.get("/?pathway=myeloma").content.decode())
    assert set(myeloma) == {"MM-14"}
    assert set(rows(alice_client.get("/?q=ellis").content.decode())) == {"PAGET-1"}
    assert set(rows(alice_client.get("/?q=MM-1").content.decode())) == {"MM-14"}
    top = myeloma_patient.snapshot.top_priority
    assert "MM-14" in rows(alice_client.get(f"/?priority={top}").content.decode())
    assert rows(alice_client.get("/?q=nobody").content.decode()) == []


def test_an_htmx_request_gets_the_results_fragment_with_fresh_counts(
    alice_client: Client, paget_patient: Any, myeloma_patient: Any
) -> None:
    _set_due(paget_patient, -3)
    response = alice_client.get("/?status=overdue&pathway=bone", headers=HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="dashboard-results"')
    assert "<html" not in html
    assert (
        'id="count-overdue" class="badge count-overdue" data-count="overdue" hx-swap-oob="true">1<'
        in html
    )
    assert rows(html) == ["PAGET-1"]


def test_sorting_and_pages(alice_client: Client, alice: Any, north_clinic: Any) -> None:
    total = 27  # patients with a follow-up later than a week: "Upcoming"
    for number in range(total):
        stored_patient(north_clinic, alice, mrn=f"P-{number:02d}", name=f"Patient {number:02d}")
    first = rows(alice_client.get("/?status=upcoming&sort=name").content.decode())
    second = rows(alice_client.get("/?status=upcoming&sort=name&page=2").content.decode())
    assert len(first) == 25 and len(first) + len(second) == total
    assert first == sorted(first) and first[-1] <= second[0]
    page = alice_client.get("/?status=upcoming&sort=name&page=2").content.decode()
    assert "Page 2 of 2" in page and "page=1" in page
    assert rows(alice_client.get("/?status=upcoming&page=999&sort=name").content.decode()) == second
    latest_first = alice_client.get("/?status=upcoming&sort=-due").content.decode()
    assert "Due date (latest first)" in latest_first


def test_invalid_filters_are_ignored(alice_client: Client, paget_patient: Any) -> None:
    _set_due(paget_patient, -1)
    response = alice_client.get("/?status=bogus&page=abc&sort=evil")
    assert response.status_code == 200
    assert "PAGET-1" in rows(response.content.decode())


def test_another_clinic_sees_none_of_it(
    client: Client, bob: Any, paget_patient: Any, myeloma_patient: Any
) -> None:
    client.force_login(bob)
    html = client.get("/").content.decode()
    assert rows(html) == [] and "PAGET-1" not in html and "Samuel" not in html
    assert 'data-count="all">0</span>' in html


def test_a_patient_leaves_the_worklist_once_nothing_is_due_soon(
    alice_client: Client, paget_patient: Any
) -> None:
    follow_up = _set_due(paget_patient, 2)
    assert rows(alice_client.get("/").content.decode()) == ["PAGET-1"]
    alice_client.post(f"/patients/{paget_patient.pk}/follow-ups/{follow_up.pk}/done/")
    assert rows(alice_client.get("/").content.decode()) == []
    assert rows(alice_client.get("/?status=upcoming").content.decode()) == ["PAGET-1"]


def test_the_dashboard_issues_a_constant_number_of_queries(
    alice_client: Client, alice: Any, north_clinic: Any, django_assert_max_num_queries: Any
) -> None:
    pages = ["/", "/?sort=alp", "/?status=upcoming&pathway=bone&q=patient", "/?mine=on"]
    stored_patient(north_clinic, alice, mrn="ONE", name="Patient One")
    alice_client.get("/")  # the rule set and the clinic's notice, read once per process
    with django_assert_max_num_queries(16) as one:
        alice_client.get("/")
    counted = {}
    for page in pages:
        with django_assert_max_num_queries(16) as queries:
            alice_client.get(page, headers=HTMX)
        counted[page] = len(queries)
    for number in range(10):
        stored_patient(north_clinic, alice, mrn=f"P-{number}", name=f"Patient {number}")
    with django_assert_max_num_queries(len(one)):
        alice_client.get("/")
    assert len(rows(alice_client.get("/?status=upcoming").content.decode())) > 10
    for page in pages:
        with django_assert_max_num_queries(counted[page]):
            alice_client.get(page, headers=HTMX)


@pytest.mark.parametrize("search_keys", [200, 0])
def test_every_query_plan_finds_the_same_patients(
    alice_client: Client,
    alice: Any,
    north_clinic: Any,
    bob: Any,
    south_clinic: Any,
    search_keys: int,
    monkeypatch: Any,
) -> None:
    # Without a search, patients are found by their snapshot's clinic, pathway and rank copies;
    # a search finds the patients first, scoped by the patient's clinic (passed as keys, or
    # joined when it matches more than SEARCH_KEYS patients).
    monkeypatch.setattr(dashboard, "SEARCH_KEYS", search_keys)
    for number in range(4):
        stored_patient(north_clinic, alice, mrn=f"N-{number}", name=f"North {number}")
        stored_patient(south_clinic, bob, mrn=f"S-{number}", name=f"South {number}")
    myeloma_document = myeloma_on_zoledronic_acid_14_months_document()
    stored_patient(north_clinic, alice, myeloma_document, mrn="N-MM", name="North MM")
    stored_patient(south_clinic, bob, myeloma_document, mrn="S-MM", name="South MM")
    queries = ["", "pathway=myeloma", "pathway=bone", "status=overdue", "status=upcoming"]
    queries += [f"priority={priority}" for priority in engine.PRIORITIES]
    found = 0
    for query in queries:
        indexed_page = alice_client.get(f"/?{query}").content.decode()
        searched_page = alice_client.get(f"/?{query}&q=north&sort=name").content.decode()
        indexed, searched = rows(indexed_page), rows(searched_page)
        assert sorted(indexed) == sorted(searched), query
        # The counts: added up from WorklistTally, or counted over the patients searched.
        assert counts(indexed_page) == counts(searched_page), query
        found += len(indexed)
        assert not any(mrn.startswith("S-") for mrn in indexed + searched)
    assert found > 2 * len(rows(alice_client.get("/").content.decode())) > 0
    assert not rows(alice_client.get("/?q=south").content.decode())


def test_the_worklist_copies_follow_the_patient(
    alice_client: Client, alice: Any, paget_patient: Any
) -> None:
    """The snapshot's pathway and rank are what the worklist filters on; a new assessment
    (here: the case becomes a myeloma case) moves the patient."""
    assert rows(alice_client.get("/?status=upcoming&pathway=bone").content.decode())
    assert not rows(alice_client.get("/?status=upcoming&pathway=myeloma").content.decode())

    document = myeloma_on_zoledronic_acid_14_months_document()
    case = engine.parse_case(document, today=timezone.localdate())
    patient_save_case(
        user=alice,
        case=case,
        mrn="PAGET-1",
        name="Margaret Ellis",
        patient=paget_patient,
        expected_version=paget_patient.version,
    )
    snapshot = AssessmentSnapshot.objects.get(patient=paget_patient)
    assert snapshot.pathway == "myeloma"
    assert not rows(alice_client.get("/?pathway=bone").content.decode())
    assert rows(alice_client.get("/?pathway=myeloma").content.decode())
    priority = next(p for p, rank in engine.PRIORITY_RANK.items() if rank == snapshot.action_rank)
    assert rows(alice_client.get(f"/?priority={priority}").content.decode())


def test_on_postgresql_the_search_is_served_by_trigram_indexes(
    alice: Any, north_clinic: Any
) -> None:
    """The search's SQL (``icontains``) matches the expression of the trigram indexes, so a
    search by MRN or name is an index lookup at any number of patients (bench/pages.py)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("trigram indexes are PostgreSQL's (SQLite scans the patients)")
    stored_patient(north_clinic, alice, mrn="B-000042", name="Margaret Ellis")
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a handful of rows: force the choice
    for field, index in (("mrn", "patient_mrn_trgm_idx"), ("name", "patient_name_trgm_idx")):
        plan = (
            dashboard.Patient.objects.filter(**{f"{field}__icontains": "b-0000"})
            .values_list("pk", flat=True)
            .explain()
        )
        assert index in plan, plan
    assert dashboard.patients_matching([north_clinic.pk], "000042") == [
        dashboard.Patient.objects.get(mrn="B-000042").pk
    ]
