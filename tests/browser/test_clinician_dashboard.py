"""The dashboard in a real browser: filters via htmx keep the URL in sync, so a filtered view
can be bookmarked and reloaded."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from pathways.models import FollowUp, Patient
from pathways.services import worklist_copies_store
from tests.browser.conftest import log_in
from tests.browser.test_clinician_flow import ensure_published_rule_set
from tests.factories import myeloma_on_zoledronic_acid_14_months_document, stored_patient


@pytest.fixture
def clinician(smoke_user: Any) -> Any:
    ensure_published_rule_set()
    return smoke_user


def test_filters_are_kept_in_the_url_and_survive_a_reload(
    page: Any, live_server: Any, clinician: Any, console_errors: list[str]
) -> None:
    clinic = clinician.memberships.get().clinic
    paget = stored_patient(clinic, clinician, mrn="PAGET-1", name="Margaret Ellis")
    stored_patient(
        clinic,
        clinician,
        myeloma_on_zoledronic_acid_14_months_document(),
        mrn="MM-14",
        name="Samuel Okafor",
    )
    # Only one follow-up overdue, 12 days ago; the others upcoming.
    today = timezone.localdate()
    for follow_up in FollowUp.objects.all():
        follow_up.due = today + timedelta(days=30)
        follow_up.save()
    overdue = FollowUp.objects.filter(patient=paget).first()
    assert overdue is not None
    overdue.due = today - timedelta(days=12)
    overdue.save()
    for patient in Patient.objects.all():  # the worklist's copies, as after any app write
        worklist_copies_store(patient=patient)

    log_in(page, live_server, "alice")
    expect(page.locator("tr[data-mrn]")).not_to_have_count(0)
    expect(page.locator("#count-overdue")).to_have_text("1")

    page.get_by_text("Overdue", exact=False).first.click()
    page.wait_for_url("**/?*status=overdue*")
    expect(page.locator('tr[data-mrn]:not([data-status="overdue"])')).to_have_count(0)
    expect(page.locator('tr[data-mrn="PAGET-1"]')).to_contain_text("12 days overdue")

    page.get_by_label("Pathway").select_option("myeloma")
    page.wait_for_url("**pathway=myeloma*")
    expect(page.locator("tr[data-mrn]")).to_have_count(0)
    expect(page.locator("#count-overdue")).to_have_text("0")

    page.reload()
    expect(page.get_by_label("Pathway")).to_have_value("myeloma")
    expect(page.locator("#status-overdue")).to_be_checked()
    expect(page.locator("tr[data-mrn]")).to_have_count(0)

    page.go_back()
    page.wait_for_url("**status=overdue*")
    expect(page.locator('tr[data-mrn="PAGET-1"]')).to_be_visible()
    assert console_errors == []
