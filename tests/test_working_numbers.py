"""The numbers in the advice's working and the patient header, read against the thresholds
they are compared with (spec §2, reference-intervals.md): found by an audit of the patient page.
A value is never rounded across the band edge or threshold the advice used."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from pathways.assessment import assess_patient
from tests.factories import form_data, stored_patient

HTMX = {"HX-Request": "true"}


def working(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-working="([a-z_]+)"[^>]*>([^<]*)</dd>', unescape(html)))


def vitals(html: str) -> str:
    match = re.search(r'id="patient-vitals">(.*?)</p>', html, re.S)
    assert match
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", match.group(1))).strip())


def rationale(html: str, code: str) -> str:
    card = unescape(html).split(f'data-code="{code}"', 1)[1]
    match = re.search(r'class="rationale mb-1">([^<]*)<', card)
    assert match
    return match.group(1)


def born(years: int) -> str:
    """A birth date ``years`` and 40 days ago (29 February counts from the 28th)."""
    today = timezone.localdate()
    anniversary = today.replace(year=today.year - years, day=min(today.day, 28))
    return (anniversary - timedelta(days=40)).isoformat()


def days_ago(days: int) -> str:
    return (timezone.localdate() - timedelta(days=days)).isoformat()


def myeloma_document(labs: list[dict[str, Any]], **clinical: Any) -> dict[str, Any]:
    return {
        "patient": {"birth_date": born(70), "sex": "male", "weight_kg": 72},
        "labs": [
            {"test": "alp", "value": 180, "unit": "U/L", "collected_at": days_ago(10)},
            *labs,
        ],
        "clinical": {
            "diagnoses": ["multiple_myeloma"],
            "dental_exam_done": True,
            "myeloma": {"requires_therapy": True, "whole_body_imaging_done": True},
            **clinical,
        },
    }


# ---------------------------------------------------------------------------------------------
# CrCl rounded across a dose band edge (reference-intervals.md, zoledronic acid dose by CrCl:
# 40 to < 50 -> 3.3 mg, 50 to <= 60 -> 3.5 mg, > 60 -> 4.0 mg, < 30 not recommended; spec §2
# "Renal impairment: CrCl current < 60").


@pytest.mark.django_db
def test_working_crcl_is_not_rounded_onto_the_next_dose_band(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    """Measured CrCl 49.7 mL/min: the za-dose card says 3.3 mg for CrCl 49.7; the working under
    the same advice read "50 mL/min ... zoledronic acid dosed at CrCl 50 mL/min" (the 3.5 mg
    band). The working must show a number on the same side of the band edge as the one used."""
    document = myeloma_document(
        [{"test": "crcl", "value": 49.7, "unit": "mL/min", "collected_at": days_ago(10)}]
    )
    patient = stored_patient(north_clinic, alice, document, mrn="CRCL-49")
    html = alice_client.get(f"/patients/{patient.pk}/").content.decode()
    assert "3.3 mg" in rationale(html, "za-dose")
    assert "49.7" in rationale(html, "za-dose")
    crcl = working(html)["crcl"]
    shown = [float(n) for n in re.findall(r"(\d+(?:\.\d+)?) mL/min", crcl)]
    assert shown and all(value < 50 for value in shown), crcl


@pytest.mark.django_db
def test_working_crcl_below_30_does_not_read_30(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    """Measured CrCl 29.6: za-not-recommended-renal fires ("not recommended below CrCl 30");
    the working read "CrCl 30 mL/min", the very value at which it would be allowed."""
    document = myeloma_document(
        [{"test": "crcl", "value": 29.6, "unit": "mL/min", "collected_at": days_ago(10)}]
    )
    patient = stored_patient(north_clinic, alice, document, mrn="CRCL-29")
    html = alice_client.get(f"/patients/{patient.pk}/").content.decode()
    result = assess_patient(patient)
    assert "za-not-recommended-renal" in [r.code for r in result.recommendations]
    crcl = working(html)["crcl"]
    assert not crcl.startswith("30 mL/min"), crcl
    assert crcl.startswith("29.6 mL/min"), crcl


@pytest.mark.django_db
def test_header_estimated_crcl_is_not_rounded_out_of_renal_impairment(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    """Cockcroft-Gault (140 - 70) x 72 / (72 x 1.17) = 59.8 mL/min: renal impairment (< 60) and
    the 3.5 mg band; the header read "CrCl 60 mL/min (Cockcroft-Gault)", i.e. not impaired."""
    document = myeloma_document(
        [{"test": "creatinine", "value": 1.17, "unit": "mg/dL", "collected_at": days_ago(10)}]
    )
    patient = stored_patient(north_clinic, alice, document, mrn="CRCL-CG")
    html = alice_client.get(f"/patients/{patient.pk}/").content.decode()
    result = assess_patient(patient)
    assert result.findings.crcl_current is not None and result.findings.crcl_current < 60
    assert "mm-denosumab-renal" in [r.code for r in result.recommendations]  # impaired
    header = vitals(html)
    match = re.search(r"CrCl (\d+(?:\.\d+)?) mL/min", header)
    assert match and float(match.group(1)) < 60, header


# ---------------------------------------------------------------------------------------------
# A measured test whose state is unknown (a child's, without the lab's limit) is shown as "not
# measured" beside its value (reference-intervals.md: "its state is unknown, never normal or
# high" -- it was measured).


@pytest.mark.django_db
def test_a_childs_measured_ggt_is_not_called_not_measured(
    alice_client: Client,
) -> None:
    """A child's GGT without the lab's limit has state unknown (reference-intervals.md); it was
    measured, and the working said "GGT 15 U/L (not measured)"."""
    document = {
        "patient": {"birth_date": born(12), "sex": "female"},
        "labs": [
            {"test": "alp", "value": 600, "unit": "U/L", "collected_at": days_ago(5)},
            {"test": "ggt", "value": 15, "unit": "U/L", "collected_at": days_ago(5)},
        ],
    }
    html = alice_client.post("/case/preview/", form_data(document), headers=HTMX).content
    source = working(html.decode())["alp_source"]
    assert "GGT 15 U/L" in source
    assert "not measured" not in source.split(";")[0], source
    assert "GGT 15 U/L (no reference limit for this patient)" in source


# ---------------------------------------------------------------------------------------------
# An old ALP above its ULN is neither elevated nor normal (spec §2: "A latest ALP older than the
# recent window drives no advice: it is neither elevated nor normal for the rules ... the
# findings still report it, with its date").


@pytest.mark.django_db
def test_an_old_alp_above_its_uln_is_not_called_not_elevated(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    """ALP 250 U/L (1.94 x ULN) drawn 120 days ago: the working read "250 U/L on ... · 1.94 x ULN
    · not elevated", beside alp-repeat-stale saying it is above its ULN and must be repeated."""
    document = {
        "patient": {"birth_date": born(60), "sex": "male"},
        "labs": [{"test": "alp", "value": 250, "unit": "U/L", "collected_at": days_ago(120)}],
    }
    patient = stored_patient(north_clinic, alice, document, mrn="ALP-OLD")
    html = alice_client.get(f"/patients/{patient.pk}/").content.decode()
    assert 'data-code="alp-repeat-stale"' in html
    alp = working(html)["alp"]
    assert "1.94" in alp
    assert "not elevated" not in alp, alp
    assert "not recent: neither elevated nor normal until repeated" in alp
