"""The lab inbox as a clinician uses it: a result the feed could not place is matched to a
patient through the row's own labelled fields, and then shows on the patient's page."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from playwright.sync_api import expect

from pathways import feed
from pathways.feed_models import Hl7Feed, Hl7Result
from tests.browser.conftest import log_in
from tests.browser.test_clinician_flow import ensure_published_rule_set
from tests.factories import stored_patient
from tests.test_hl7_feed import oru


def test_an_unmatched_result_is_matched_by_its_labelled_fields(
    page: Any, live_server: Any, smoke_user: Any, console_errors: list[str]
) -> None:
    """Each field of the match form shows its name: they were three bare boxes, named only for
    screen readers."""
    ensure_published_rule_set()
    clinic = smoke_user.memberships.get().clinic
    patient = stored_patient(clinic, smoke_user, mrn="MM-INBOX")
    Hl7Feed.objects.create(
        sending_facility="NORTHLAB",
        clinic=clinic,
        service_user=User.objects.create_user("inbox-lab-feed"),
        assigning_authority="NORTHHOSP",
    )
    feed.receive(oru("INBOX-1", mrn="TEMP-42", value="333"), via="test")
    log_in(page, live_server, "alice")
    page.goto(f"{live_server.url}/lab-feed/inbox/")
    row = page.locator("tbody tr").filter(has_text="TEMP-42")
    for name in ("Patient MRN", "Test", "Unit"):  # shown, not a 1-pixel screen-reader text
        box = row.locator("label").filter(has_text=name).bounding_box()
        assert box is not None and box["width"] > 20 and box["height"] > 10, (name, box)
    # A wrong MRN is refused in the row, nothing applied.
    row.get_by_label("Patient MRN").fill("NOT-HERE")
    row.get_by_role("button", name="Match and apply").click()
    expect(page.get_by_text("No patient with this MRN in North Haematology.")).to_be_visible()
    assert Hl7Result.objects.get().state == Hl7Result.State.UNMATCHED
    row = page.locator("tbody tr").filter(has_text="TEMP-42")
    row.get_by_label("Patient MRN").fill("MM-INBOX")
    row.get_by_role("button", name="Match and apply").click()
    expect(page.get_by_text("Result 6768-6 333 U/L applied.")).to_be_visible()
    expect(page.get_by_text("No unmatched results.")).to_be_visible()
    page.goto(f"{live_server.url}/patients/{patient.pk}/")
    results = page.locator(".results-table tbody tr")
    expect(results.filter(has_text="2026-11-01").filter(has_text="333 U/L")).to_have_count(1)
    # The one console line: the refused match's page comes with its 400 status, as it should.
    assert console_errors == [
        "Failed to load resource: the server responded with a status of 400 (Bad Request)"
    ]


def test_a_result_not_for_alpcare_is_dismissed_with_a_note(
    page: Any, live_server: Any, smoke_user: Any, console_errors: list[str]
) -> None:
    """An inbox row that could never be matched could not be cleared."""
    ensure_published_rule_set()
    clinic = smoke_user.memberships.get().clinic
    Hl7Feed.objects.create(
        sending_facility="NORTHLAB",
        clinic=clinic,
        service_user=User.objects.create_user("inbox-lab-feed"),
    )
    feed.receive(oru("INBOX-2", mrn="VISITOR-3", value="280"), via="test")
    log_in(page, live_server, "alice")
    page.goto(f"{live_server.url}/lab-feed/inbox/")
    row = page.locator("tbody tr").filter(has_text="VISITOR-3")
    row.get_by_text("Dismiss, not stored…").click()
    row.get_by_label("Why it is not stored").fill("Visiting patient, results go to her GP")
    row.get_by_role("button", name="Dismiss", exact=True).click()
    expect(
        page.get_by_text("Dismissed, not stored: 6768-6 280 U/L for MRN VISITOR-3.")
    ).to_be_visible()
    expect(page.get_by_text("No unmatched results.")).to_be_visible()
    dismissed = Hl7Result.objects.get()
    assert dismissed.state == Hl7Result.State.DISMISSED
    assert dismissed.dismissal_note == "Visiting patient, results go to her GP"
    # Listed below the inbox with its note, and put back by one click.
    listed = page.locator(f'[data-dismissed="{dismissed.pk}"]')
    expect(listed).to_contain_text("Visiting patient, results go to her GP")
    listed.get_by_role("button", name="Back to the inbox").click()
    expect(page.get_by_text("Back in the inbox: 6768-6 280 U/L for MRN VISITOR-3.")).to_be_visible()
    expect(page.locator("tbody tr").filter(has_text="VISITOR-3")).to_have_count(1)
    assert Hl7Result.objects.get().state == Hl7Result.State.UNMATCHED
    assert console_errors == []
