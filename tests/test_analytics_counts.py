"""Rule analytics, as an audit found them: a rule exactly at the threshold was flagged (the
share was compared in floating point), and an EHR override with only a comment was counted
under the reason "Other". Each test failed on the code before its fix."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from pathways.analytics import rule_analytics
from pathways.models import CardAction, Clinic, Membership, Patient, RuleFiring

pytestmark = pytest.mark.django_db
CODE = "audit-rule"


def _fired_and_overridden(clinic: Clinic, fired: int, overridden: int, **reason: Any) -> None:
    now = timezone.now()
    for n in range(fired):
        patient = Patient.objects.create(
            clinic=clinic, mrn=f"AUD-{n}", name=f"P {n}", birth_date=date(1950, 1, 1), sex="female"
        )
        _record(patient, now - timedelta(days=1))
        if n < overridden:
            CardAction.objects.create(
                patient=patient, clinic_id=clinic.pk, code=CODE, kind="override", at=now,
                rule_set_version="x", case_digest="", card_digest="", **reason,
            )  # fmt: skip


def _record(patient: Patient, at: datetime) -> None:
    RuleFiring.objects.create(
        patient=patient, clinic_id=patient.clinic_id, code=CODE, change="started", at=at,
        rule_set_version="x",
    )  # fmt: skip


def _row(clinic: Clinic, **options: Any) -> Any:
    today = timezone.localdate()
    rows = rule_analytics([clinic.pk], today - timedelta(days=5), today, **options)
    return next(row for row in rows if row.code == CODE)


def test_a_share_exactly_at_the_threshold_is_not_flagged(north_clinic: Clinic) -> None:
    """README: "rules above the threshold flagged". 11 of 20 is 55 %, and 11 / 20 * 100 is
    55.000…1 in floating point: flagged at a threshold of 55. 12 of 20 is above it."""
    _fired_and_overridden(north_clinic, 20, 11, reason="not-applicable")
    row = _row(north_clinic, threshold=55, min_patients=20)
    assert (row.fired, row.overridden, row.override_percent, row.flagged) == (20, 11, "55 %", False)
    assert _row(north_clinic, threshold=54, min_patients=20).flagged


def test_an_override_with_a_comment_only_is_not_counted_as_the_reason_other(
    north_clinic: Clinic,
) -> None:
    """CDS Hooks feedback may override a card with a userComment and no coded reason; it was
    counted under "Other", the reason that requires a text."""
    _fired_and_overridden(north_clinic, 2, 2, reason="", reason_text="seen by nephrology")
    assert _row(north_clinic).reason_list == [("No coded reason (a comment only)", 2)]


@pytest.mark.parametrize("query", ["end=2000-01-01", "start=2199-01-01"])
def test_a_period_whose_one_given_end_is_past_the_other_default_end_is_not_shown(
    client: Any, north_clinic: Clinic, query: str
) -> None:
    """The form refuses "From" after "To" when both are typed, but with one of them left
    blank (the other defaults to today / today - 90 days) the page answered 200 and counted
    over an upside-down period ("from 2026-09-02 to 2000-01-01"), no field named."""
    staff = User.objects.create_user("nora", password="x" * 16, is_staff=True)
    Membership.objects.create(user=staff, clinic=north_clinic)
    client.force_login(staff)
    response = client.get(f"/admin/rule-analytics/?{query}")
    start, end = response.context["start"], response.context["end"]
    refused = response.status_code == 400 and response.context["form"].errors
    assert refused or start <= end, (response.status_code, start, end)


@pytest.mark.parametrize(
    ("fired", "overridden", "shown"), [(250, 1, "< 1 %"), (250, 249, "> 99 %"), (200, 1, "< 1 %")]
)
def test_a_share_that_rounds_to_none_or_all_does_not_read_as_such(
    north_clinic: Clinic, fired: int, overridden: int, shown: str
) -> None:
    """1 override in 250 read "0 %" beside "Overridden: 1", and 249 in 250 read "100 %"."""
    _fired_and_overridden(north_clinic, fired, overridden, reason="not-applicable")
    assert _row(north_clinic).override_percent == shown


def test_each_column_says_whether_it_counts_patients_or_actions(
    client: Any, north_clinic: Clinic
) -> None:
    """Overridden counts patients (the share's numerator) while acknowledgements, snoozes and
    the reasons count actions: a patient overridden twice is 1 beside 2 reasons. The headers
    say which, so that a clinical lead does not compare the two as alike."""
    _fired_and_overridden(north_clinic, 3, 1, reason="not-applicable")
    staff = User.objects.create_user("nora", password="x" * 16, is_staff=True)
    Membership.objects.create(user=staff, clinic=north_clinic)
    client.force_login(staff)
    html = client.get("/admin/rule-analytics/").content.decode()
    headers = re.findall(r'<th scope="col">([^<]*)</th>', html)
    assert headers[2:] == [
        "Firing now (patients)", "Fired in period (patients)", "Acknowledged (actions)",
        "Accepted, CDS Hooks (actions)", "Snoozed (actions)", "Overridden (patients)",
        "Share overridden (patients)", "Override reasons (actions)",
    ]  # fmt: skip
