"""The patient page's header (age, pathway, current therapies, latest ALP / B-ALP / CrCl with
their dates, "old" outside the recent window) and the responsible clinician behind the
worklist's "Only my patients"."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from pathways.assessment import assess_patient
from pathways.engine.templates import format_number
from pathways.models import Membership, Patient
from tests.factories import (
    myeloma_on_zoledronic_acid_14_months_document,
    paget_on_alendronate_document,
    stored_patient,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def myeloma_patient(alice: User, north_clinic: Any) -> Patient:
    return stored_patient(
        north_clinic, alice, myeloma_on_zoledronic_acid_14_months_document(), mrn="MM-HEAD"
    )


def _text(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}">(.*?)</p>', html, re.S)
    assert match, element_id
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", match.group(1))).strip()


def test_the_header_gives_age_pathway_therapies_and_dated_latest_values(
    alice_client: Any, myeloma_patient: Patient
) -> None:
    html = alice_client.get(f"/patients/{myeloma_patient.pk}/").content.decode()
    vitals = _text(html, "patient-vitals")
    assert vitals.startswith("70 y · male · multiple myeloma")  # born 1956-11-04
    assert "ALP 140 U/L on 2026-10-20" in vitals
    # B-ALP and CrCl were measured in September 2025: outside the 90-day window, marked old.
    assert "B-ALP 31 µg/L on 2025-09-01 old" in vitals
    assert "CrCl 78 mL/min on 2025-09-01 old" in vitals
    assert "ALP 140 U/L on 2026-10-20 old" not in vitals
    assert _text(html, "current-therapies") == "On zoledronic acid since 2025-09-10"


def test_the_crcl_shown_is_the_one_the_advice_works_with(
    alice_client: Any, alice: User, north_clinic: Any
) -> None:
    """A recent creatinine and an older measured CrCl: the advice uses Cockcroft-Gault from the
    creatinine (spec §2, CrCl current), so the header does too, dated by that creatinine; the
    older 78 mL/min read as normal renal function while the advice used an impaired one."""
    today = timezone.localdate()
    drawn = (today - timedelta(days=10)).isoformat()
    document = myeloma_on_zoledronic_acid_14_months_document()
    document["as_of"] = today.isoformat()
    document["labs"].append(
        {"test": "creatinine", "value": 2.0, "unit": "mg/dL", "collected_at": drawn}
    )
    patient = stored_patient(north_clinic, alice, document, mrn="MM-CG")
    html = alice_client.get(f"/patients/{patient.pk}/").content.decode()
    page = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    crcl = assess_patient(patient).findings.crcl_current
    assert crcl is not None and round(crcl) == 38
    shown = format_number(crcl)  # as the cards show it: not rounded across a threshold
    working = f"CrCl {shown} mL/min · Cockcroft\u2013Gault from creatinine 2 mg/dL and 78 kg"
    assert f"{working} · {drawn}" in page
    vitals = _text(html, "patient-vitals")
    assert f"CrCl {shown} mL/min (Cockcroft\u2013Gault) on {drawn}" in vitals
    assert "78 mL/min" not in vitals


def test_a_patient_without_therapy_or_bone_alp_says_so(
    alice_client: Any, alice: User, north_clinic: Any
) -> None:
    document = paget_on_alendronate_document()
    document["clinical"]["therapies"] = []
    patient = stored_patient(north_clinic, alice, document, mrn="PAGET-HEAD")
    html = alice_client.get(f"/patients/{patient.pk}/").content.decode()
    assert _text(html, "current-therapies") == "No current bone-targeted therapy"
    assert "B-ALP" not in _text(html, "patient-vitals")


def test_a_clinician_of_the_clinic_is_made_responsible_and_it_is_kept_in_the_history(
    alice_client: Any, alice: User, bob: User, north_clinic: Any, myeloma_patient: Patient
) -> None:
    html = alice_client.get(f"/patients/{myeloma_patient.pk}/").content.decode()
    assert f'<option value="{alice.pk}">' in html
    assert f'<option value="{bob.pk}"' not in html  # south's clinician is not offered
    response = alice_client.post(
        f"/patients/{myeloma_patient.pk}/responsible/", {"responsible": alice.pk}, follow=True
    )
    assert "Responsible clinician: alice." in response.content.decode()
    myeloma_patient.refresh_from_db()
    assert myeloma_patient.responsible == alice
    assert myeloma_patient.history.first().responsible_id == alice.pk
    # Another clinic's clinician is refused, and nothing changes.
    response = alice_client.post(
        f"/patients/{myeloma_patient.pk}/responsible/", {"responsible": bob.pk}, follow=True
    )
    assert "choose a clinician of this clinic" in response.content.decode()
    myeloma_patient.refresh_from_db()
    assert myeloma_patient.responsible == alice
    for not_an_id in ("alice", "\u00b2"):  # "²" passed str.isdigit, then int(): a 500
        response = alice_client.post(
            f"/patients/{myeloma_patient.pk}/responsible/", {"responsible": not_an_id}, follow=True
        )
        assert "choose a clinician of this clinic" in response.content.decode()
        myeloma_patient.refresh_from_db()
        assert myeloma_patient.responsible == alice  # a choice that is not an id changes nothing
    alice_client.post(f"/patients/{myeloma_patient.pk}/responsible/", {"responsible": ""})
    myeloma_patient.refresh_from_db()
    assert myeloma_patient.responsible is None


def test_another_clinics_clinician_cannot_set_it(
    client: Any, bob: User, myeloma_patient: Patient
) -> None:
    client.force_login(bob)
    response = client.post(f"/patients/{myeloma_patient.pk}/responsible/", {"responsible": ""})
    assert response.status_code == 404


def test_only_my_patients_on_the_worklist(
    alice_client: Any, alice: User, north_clinic: Any, myeloma_patient: Patient
) -> None:
    colleague = User.objects.create_user("carol")
    Membership.objects.create(user=colleague, clinic=north_clinic)
    other = stored_patient(
        north_clinic,
        alice,
        myeloma_on_zoledronic_acid_14_months_document(),
        mrn="MM-CAROL",
        name="Edith Moss",
    )
    alice_client.post(f"/patients/{myeloma_patient.pk}/responsible/", {"responsible": alice.pk})
    alice_client.post(f"/patients/{other.pk}/responsible/", {"responsible": colleague.pk})
    everyone = alice_client.get("/").content.decode()
    assert 'data-mrn="MM-HEAD"' in everyone and 'data-mrn="MM-CAROL"' in everyone
    mine = alice_client.get("/?mine=on").content.decode()
    assert 'data-mrn="MM-HEAD"' in mine and 'data-mrn="MM-CAROL"' not in mine
    assert 'name="mine" class="form-check-input" id="id_mine" checked' in mine


def test_a_lab_feeds_service_user_is_not_offered_as_responsible_clinician(
    alice: Any, north_clinic: Any
) -> None:
    """The demo's lab feed user is a member of its clinic (its results are recorded as its own)
    and was offered as a responsible clinician, as was a deactivated account. Found by a
    review."""
    from pathways.feed_models import Hl7Feed
    from pathways.services import clinic_clinicians

    feed_user = User.objects.create_user("northlab-feed")
    Membership.objects.create(user=feed_user, clinic=north_clinic)
    Hl7Feed.objects.create(sending_facility="NORTHLAB", clinic=north_clinic, service_user=feed_user)
    gone = User.objects.create_user("gone", is_active=False)
    Membership.objects.create(user=gone, clinic=north_clinic)
    assert list(clinic_clinicians(north_clinic.pk)) == [alice]
