"""What the patient page, the worklist export and the chart show, checked against the engine
(found by a defect hunt; each test failed before): the header's units and latest values,
the history group, the CSV's numbers, the chart's significant changes and its bone ALP units."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, timedelta
from typing import Any

import pytest

from pathways.assessment import assess_patient
from pathways.models import FollowUp
from tests.factories import (
    myeloma_on_zoledronic_acid_14_months_document,
    paget_on_alendronate_document,
    stored_patient,
)

pytestmark = pytest.mark.django_db


def _vitals(html: str) -> str:
    match = re.search(r'id="patient-vitals">(.*?)</p>', html, re.S)
    assert match
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", match.group(1))).strip()


def test_header_bone_alp_in_activity_units_is_shown_in_u_per_l(
    alice_client: Any, alice: Any, north_clinic: Any
) -> None:
    document = myeloma_on_zoledronic_acid_14_months_document()
    document["labs"] = [lab for lab in document["labs"] if lab["test"] != "bone_alp"]
    document["labs"].append(
        {
            "test": "bone_alp",
            "value": 45,
            "unit": "U/L",
            "collected_at": "2026-10-20",
            "reference_high": 40,
        }
    )
    patient = stored_patient(north_clinic, alice, document, mrn="BALP-UL")
    html = alice_client.get(f"/patients/{patient.pk}/").content.decode()
    vitals = _vitals(html)
    # An activity result (U/L) is not a mass: it must not read "45 µg/L".
    assert "B-ALP 45 U/L on 2026-10-20" in vitals, vitals


def test_header_latest_alp_is_the_engines_latest_when_an_untimed_and_a_midnight_result_share_a_day(
    alice_client: Any, alice: Any, north_clinic: Any
) -> None:
    day = (date.today() - timedelta(days=5)).isoformat()
    document = myeloma_on_zoledronic_acid_14_months_document()
    document["as_of"] = date.today().isoformat()
    document["labs"] = [
        {"test": "alp", "value": 200, "unit": "U/L", "collected_at": day},
        {"test": "alp", "value": 300, "unit": "U/L", "collected_at": f"{day}T00:00"},
    ]
    patient = stored_patient(north_clinic, alice, document, mrn="TIE")
    result = assess_patient(patient)
    assert result.findings.alp_latest == 300  # the engine: a bare date sorts first on its day
    html = alice_client.get(f"/patients/{patient.pk}/").content.decode()
    assert f"ALP 300 U/L on {day}" in _vitals(html), _vitals(html)


def _group_of(html: str, code: str) -> str:
    groups = re.findall(r'data-group="([a-z]+)"(.*?)(?=data-group="|id="considered|$)', html, re.S)
    for name, body in groups:
        if f'data-code="{code}"' in body:
            return name
    raise AssertionError(code)


def test_alp_3_6_months_card_goes_to_history_once_both_follow_ups_are_marked_done(
    alice_client: Any, alice: Any, north_clinic: Any
) -> None:
    today = date.today()
    start = today - timedelta(days=240)
    document = myeloma_on_zoledronic_acid_14_months_document()
    document["as_of"] = today.isoformat()
    document["labs"] = [
        {
            "test": "alp",
            "value": 150,
            "unit": "U/L",
            "collected_at": (start - timedelta(days=3)).isoformat(),
        },
        {
            "test": "crcl",
            "value": 78,
            "unit": "mL/min",
            "collected_at": (today - timedelta(days=3)).isoformat(),
        },
    ]
    document["clinical"]["myeloma"]["treatment_start"] = start.isoformat()
    document["clinical"]["myeloma"]["bortezomib_start"] = None
    document["clinical"]["therapies"] = []
    patient = stored_patient(north_clinic, alice, document, mrn="MM-36")
    for code in ("alp-3-months", "alp-6-months"):
        follow_up = FollowUp.objects.get(patient=patient, code=code, completed_at=None)
        response = alice_client.post(
            f"/patients/{patient.pk}/follow-ups/{follow_up.pk}/done/",
            {"outcome": "done", "done_on": today.isoformat(), "note": ""},
        )
        assert response.status_code == 302
    html = alice_client.get(f"/patients/{patient.pk}/").content.decode()
    for code in ("alp-3-months", "alp-6-months"):
        row = html.split(f'data-follow-up="{code}"', 1)[1].split("</li>", 1)[0]
        assert 'data-status="done"' in row  # the schedule on screen says both are done
    assert _group_of(html, "mm-alp-3-6-months") == "history"


def test_csv_latest_alp_is_the_value_the_worklist_shows(
    alice_client: Any, alice: Any, north_clinic: Any
) -> None:
    today = date.today()
    document = paget_on_alendronate_document(as_of=today.isoformat())
    document["labs"] = [
        {
            "test": "alp",
            "value": 1234567,
            "unit": "U/L",
            "collected_at": (today - timedelta(days=3)).isoformat(),
        },
    ]
    stored_patient(north_clinic, alice, document, mrn="BIG-1")
    html = alice_client.get("/").content.decode()
    assert "1234567 U/L" in html  # the worklist row
    response = alice_client.get("/worklist.csv")
    table = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    row = next(r for r in table if r["mrn"] == "BIG-1")
    assert float(row["alp_latest_u_l"]) == 1234567, row["alp_latest_u_l"]


def _points(html: str) -> list[tuple[str, str]]:
    section = html.split('data-chart="alp"', 1)[1].split("</figure>", 1)[0]
    return re.findall(r'<g class="(point[^"]*)"[^>]*><title>([^<]*)</title>', section)


def _page(alice_client: Any, alice: Any, north_clinic: Any, values: tuple[float, float], mrn: str):
    today = date.today()
    document = paget_on_alendronate_document(as_of=today.isoformat())
    document["labs"] = [
        {
            "test": "alp",
            "value": values[0],
            "unit": "U/L",
            "reference_high": 129,
            "collected_at": (today - timedelta(days=40)).isoformat(),
        },
        {
            "test": "alp",
            "value": values[1],
            "unit": "U/L",
            "reference_high": 129,
            "collected_at": (today - timedelta(days=5)).isoformat(),
        },
    ]
    patient = stored_patient(north_clinic, alice, document, mrn=mrn)
    html = alice_client.get(f"/patients/{patient.pk}/").content.decode()
    return patient, html


def test_a_rise_within_rcv_up_is_not_drawn_as_significant(
    alice_client: Any, alice: Any, north_clinic: Any
) -> None:
    # +17.5 %: above the revision-1 symmetric 16.9 %, below RCV-up 18.4 % (spec section 2).
    patient, html = _page(alice_client, alice, north_clinic, (200, 235), "RISE")
    result = assess_patient(patient)
    assert result.findings.rcv_rise_pct == pytest.approx(18.4, abs=0.1)
    assert "alp-significant-rise" not in [r.code for r in result.recommendations]
    latest_class, latest_title = _points(html)[-1]
    assert "point-significant" not in latest_class, latest_title


def test_a_fall_beyond_rcv_down_is_drawn_as_significant(
    alice_client: Any, alice: Any, north_clinic: Any
) -> None:
    # -16 %: beyond RCV-down 15.5 % (spec section 2), within the old symmetric 16.9 %.
    _, html = _page(alice_client, alice, north_clinic, (200, 168), "FALL")
    latest_class, latest_title = _points(html)[-1]
    assert "point-significant" in latest_class, latest_title


def test_the_bone_alp_chart_draws_one_unit_and_counts_the_results_in_another(
    alice_client: Any, alice: Any, north_clinic: Any
) -> None:
    """Every point was labelled with the latest result's unit: 20 µg/L read as 20 U/L, and a
    mass and an activity were drawn on one axis against one limit."""
    today = date.today()
    first, second = (
        (today - timedelta(days=60)).isoformat(),
        (today - timedelta(days=5)).isoformat(),
    )
    document = myeloma_on_zoledronic_acid_14_months_document()
    document["as_of"] = today.isoformat()
    document["labs"] = [lab for lab in document["labs"] if lab["test"] != "bone_alp"]
    document["labs"] += [
        {"test": "bone_alp", "value": 20, "unit": "ug/L", "collected_at": first},
        {"test": "bone_alp", "value": 60, "unit": "U/L", "collected_at": second,
         "reference_high": 50},
    ]  # fmt: skip
    patient = stored_patient(north_clinic, alice, document, mrn="BALP-MIX")
    html = alice_client.get(f"/patients/{patient.pk}/").content.decode()
    section = html.split('data-chart="bone_alp"', 1)[1].split("</figure>", 1)[0]
    titles = re.findall(r'<g class="point[^"]*"[^>]*><title>([^<]*)</title>', section)
    assert titles == [f"{second}: Bone ALP 60 U/L"]
    assert "1 in another unit not shown." in section
