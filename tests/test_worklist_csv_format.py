"""The worklist CSV as a clinician opens it: in Excel, which reads UTF-8 only after a byte-order
mark, and across clinics, where one MRN can be two people (an MRN is unique within a clinic)."""

from __future__ import annotations

import codecs
import csv
import io
from typing import Any

import pytest
from django.test import Client

from pathways.exports import CSV_COLUMNS
from pathways.models import Clinic, Membership
from tests.factories import stored_patient

pytestmark = pytest.mark.django_db
EVERY_ROW = "/worklist.csv?status=upcoming"  # the factories' patients: follow-ups later on


def csv_body(client: Client, url: str = EVERY_ROW) -> bytes:
    response = client.get(url)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    return b"".join(response.streaming_content)  # type: ignore[attr-defined]


def csv_rows(body: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))


def as_excel_reads(body: bytes) -> str:
    """Excel reads a CSV as UTF-8 only after a BOM; without one, as the local code page."""
    if body.startswith(codecs.BOM_UTF8):
        return body.decode("utf-8-sig")
    return body.decode("cp1252", errors="replace")


def second_clinic_for(user: Any, name: str, slug: str) -> Clinic:
    clinic = Clinic.objects.create(name=name, slug=slug)
    Membership.objects.create(user=user, clinic=clinic)
    return clinic


def test_the_csv_starts_with_one_byte_order_mark_then_its_header(
    alice_client: Client, alice: Any, north_clinic: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pathways.views.CSV_CHUNK", 1)  # three chunks: the mark is written once
    for number in range(3):
        stored_patient(north_clinic, alice, mrn=f"P-{number}", name=f"Patient {number}")
    body = csv_body(alice_client)
    assert body.startswith(codecs.BOM_UTF8) and body.count(codecs.BOM_UTF8) == 1
    header = next(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert header == CSV_COLUMNS
    assert sorted(row["mrn"] for row in csv_rows(body)) == ["P-0", "P-1", "P-2"]


def test_a_name_with_accents_reads_the_same_in_excel(
    alice_client: Client, alice: Any, north_clinic: Clinic
) -> None:
    stored_patient(north_clinic, alice, mrn="MU-1", name="Jürgen Müller-Ødegård")
    [row] = csv.DictReader(io.StringIO(as_excel_reads(csv_body(alice_client))))
    assert row["name"] == "Jürgen Müller-Ødegård"  # not "JÃ¼rgen MÃ¼ller"


def test_a_user_of_two_clinics_tells_apart_two_patients_with_one_mrn(
    alice_client: Client, alice: Any, north_clinic: Clinic
) -> None:
    west = second_clinic_for(alice, "West Bone Clinic", "west")
    stored_patient(north_clinic, alice, mrn="100234", name="Ada Byrne")
    stored_patient(west, alice, mrn="100234", name="Bea Walsh")
    table = csv_rows(csv_body(alice_client))
    assert CSV_COLUMNS.index("clinic") == CSV_COLUMNS.index("mrn") - 1
    assert sorted((row["clinic"], row["mrn"], row["name"]) for row in table) == [
        ("North Haematology", "100234", "Ada Byrne"),
        ("West Bone Clinic", "100234", "Bea Walsh"),
    ]


def test_a_clinic_name_read_as_a_formula_is_neutralised(alice_client: Client, alice: Any) -> None:
    clinic = second_clinic_for(alice, '=HYPERLINK("http://evil.example","Open")', "formula")
    stored_patient(clinic, alice, mrn="F-1", name="Formula Clinic Patient")
    [row] = csv_rows(csv_body(alice_client))
    assert row["clinic"] == '\'=HYPERLINK("http://evil.example","Open")'


def test_the_clinic_column_costs_no_query_per_row(
    alice_client: Client, alice: Any, north_clinic: Clinic, django_assert_max_num_queries: Any
) -> None:
    west = second_clinic_for(alice, "West Bone Clinic", "west")
    stored_patient(north_clinic, alice, mrn="N-0", name="North 0")
    stored_patient(west, alice, mrn="W-0", name="West 0")
    csv_body(alice_client)  # the rule set, read once per process
    with django_assert_max_num_queries(20) as two_rows:
        assert len(csv_rows(csv_body(alice_client))) == 2
    for number in range(1, 6):
        stored_patient(north_clinic, alice, mrn=f"N-{number}", name=f"North {number}")
        stored_patient(west, alice, mrn=f"W-{number}", name=f"West {number}")
    with django_assert_max_num_queries(len(two_rows)):
        table = csv_rows(csv_body(alice_client))
    assert len(table) == 12
    assert {row["mrn"][0]: row["clinic"] for row in table} == {
        "N": "North Haematology",
        "W": "West Bone Clinic",
    }
