"""The worklist and card actions in a real browser: in-page updates, no reload, no CSP
violation (the shared console_errors fixture asserts none was reported)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from pathways.models import CardAction
from tests.browser.conftest import CSP_REPORTER, log_in
from tests.browser.test_clinician_flow import ensure_published_rule_set
from tests.factories import stored_patient
from tests.test_views_worklist import urgent_document


@pytest.fixture
def clinician(smoke_user: Any) -> Any:
    ensure_published_rule_set()
    return smoke_user


def test_urgent_patient_is_on_the_worklist_and_her_cards_are_acted_on_in_page(
    page: Any, live_server: Any, clinician: Any, console_errors: list[str]
) -> None:
    clinic = clinician.memberships.get().clinic
    patient = stored_patient(clinic, clinician, urgent_document(), mrn="URG-1", name="Ada Byrne")
    log_in(page, live_server, "alice")
    row = page.locator('tr[data-mrn="URG-1"]')
    expect(row).to_have_attribute("data-status", "action")
    page.get_by_label("Top priority").select_option("urgent")
    page.wait_for_url("**priority=urgent*")
    expect(row).to_be_visible()
    # The download follows the filter changed in place (it kept the page's first query).
    expect(page.locator("#worklist-csv")).to_have_attribute("href", re.compile("priority=urgent"))

    row.get_by_role("link", name="Ada Byrne").click()
    url = page.url
    card = page.locator('#recommendations [data-code="extreme-alp"]')
    card.get_by_text("Override or snooze").click()
    # The open form stays below its button, beside Acknowledge (inline boxes on one baseline
    # pushed Acknowledge down to the bottom of the open form).
    acknowledge = card.get_by_role("button", name="Acknowledge").bounding_box()
    more = card.locator("summary", has_text="Override or snooze").bounding_box()
    assert acknowledge is not None and more is not None
    assert abs(acknowledge["y"] - more["y"]) <= 2, (acknowledge, more)
    card.get_by_label("Override reason").select_option("other")
    card.get_by_role("button", name="Override").click()  # "Other" without text: refused
    expect(page.locator("#card-error")).to_contain_text("needs a text")
    card = page.locator('#recommendations [data-code="extreme-alp"]')
    card.get_by_text("Override or snooze").click()
    card.get_by_label("Override reason").select_option("other")
    card.get_by_label("Reason text").fill("Seen in bone clinic last week")
    card.get_by_role("button", name="Override").click()
    overridden = page.locator('section[aria-label="Overridden"] [data-code="extreme-alp"]')
    expect(overridden).to_contain_text("Overridden: Other: Seen in bone clinic last week")
    overridden.get_by_role("button", name="Undo").click()
    expect(page.locator('section[aria-label="Overridden"]')).to_have_count(0)

    for code in ("extreme-alp", "fracture-surgery-radiation"):
        page.locator(f'#recommendations [data-code="{code}"]').get_by_role(
            "button", name="Acknowledge"
        ).click()
        expect(page.locator(f'#recommendations [data-code="{code}"]')).to_contain_text(
            "Acknowledged by alice"
        )
    assert page.url == url  # all in page
    assert CardAction.objects.filter(patient=patient, undone_at__isnull=True).count() == 2

    page.get_by_role("link", name="Worklist").first.click()
    expect(page.locator('tr[data-mrn="URG-1"]')).to_have_count(0)
    assert console_errors == []


def test_the_csp_reporter_sees_an_inline_style(page: Any, live_server: Any, clinician: Any) -> None:
    """The fixture's reporter is not blind: an inline style attribute is reported."""
    seen: list[str] = []
    page.expose_binding("__alpcareCspViolation", lambda _source, text: seen.append(text))
    page.add_init_script(CSP_REPORTER)
    log_in(page, live_server, "alice")
    page.evaluate("document.querySelector('main').setAttribute('style', 'color: red')")
    page.wait_for_timeout(300)
    assert any("style-src" in text for text in seen), seen


def test_mark_done_with_an_outcome_then_undo_and_snooze_a_card_in_page(
    page: Any, live_server: Any, clinician: Any, console_errors: list[str]
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from pathways.models import FollowUp
    from tests.test_views_worklist import no_dental_exam_document

    clinic = clinician.memberships.get().clinic
    patient = stored_patient(clinic, clinician, no_dental_exam_document(), mrn="MM-D", name="Sam")
    log_in(page, live_server, "alice")
    page.goto(f"{live_server.url}/patients/{patient.pk}/")
    url = page.url

    review = page.locator('#follow-ups [data-follow-up="bp-review-1y"]').first
    review.get_by_text("Mark done").click()
    review.get_by_label("Outcome").select_option("declined")
    review.get_by_label("Note").fill("Prefers to wait for the haematology visit")
    review.get_by_role("button", name="Save: done").click()
    review = page.locator('#follow-ups [data-follow-up="bp-review-1y"]').first
    expect(review).to_have_attribute("data-status", "done")
    expect(review).to_contain_text("Patient declined")
    review.get_by_role("button", name="Undo").click()
    expect(page.locator('#follow-ups [data-follow-up="bp-review-1y"]').first).not_to_have_attribute(
        "data-status", "done"
    )
    assert FollowUp.objects.get(patient=patient, code="bp-review-1y").completed_at is None

    card = page.locator('#recommendations [data-code="antiresorptive-dental-exam"]')
    card.get_by_text("Override or snooze").click()
    until = timezone.localdate() + timedelta(days=7)
    card.get_by_label("Snooze until").fill(until.isoformat())
    card.get_by_role("button", name="Snooze").click()
    snoozed = page.locator('section[aria-label="Snoozed"] [data-code="antiresorptive-dental-exam"]')
    expect(snoozed).to_contain_text(f"Snoozed until {until:%Y-%m-%d}")
    assert page.url == url
    assert console_errors == []
