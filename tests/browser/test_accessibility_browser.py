"""The clinician screens in a real browser: every control has a name a screen reader can read,
nothing jumps the tab order, and a follow-up can be marked done with the keyboard alone."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from pathways.models import FollowUp
from tests.browser.conftest import log_in
from tests.browser.test_clinician_flow import ensure_published_rule_set
from tests.factories import myeloma_on_zoledronic_acid_14_months_document, stored_patient

# Visible form controls without an accessible name (label, aria-label, aria-labelledby, or a
# button's text), and anything with a positive tabindex.
UNNAMED_CONTROLS = """
() => Array.from(document.querySelectorAll('input, select, textarea, button, [tabindex]'))
  .filter(el => el.type !== 'hidden' && el.getClientRects().length > 0)
  .filter(el => {
    if (el.tabIndex > 0) return true;
    const labelled = el.getAttribute('aria-labelledby');
    const name = [
      ...Array.from(el.labels || []).map(label => label.textContent),
      el.getAttribute('aria-label'),
      labelled && labelled.split(' ').map(id => document.getElementById(id)?.textContent).join(' '),
      el.tagName === 'BUTTON' ? el.textContent : null,
      el.type === 'submit' ? el.value : null,
    ].filter(Boolean).join(' ').trim();
    return name === '' && el.matches('input, select, textarea, button');
  })
  .map(el => el.outerHTML.slice(0, 160))
"""


@pytest.fixture
def patient(smoke_user: Any) -> Any:
    """A myeloma patient of alice's clinic (smoke_user), with the shipped rule set in force."""
    ensure_published_rule_set()
    clinic = smoke_user.memberships.get().clinic
    return stored_patient(
        clinic, smoke_user, myeloma_on_zoledronic_acid_14_months_document(), mrn="MM-14"
    )


def test_every_control_on_the_clinician_screens_has_a_name(
    page: Any, live_server: Any, patient: Any, console_errors: list[str]
) -> None:
    log_in(page, live_server, "alice")
    pages = (
        "/",
        "/patients/",
        "/patients/new/",
        f"/patients/{patient.pk}/",
        "/account/api-tokens/",
    )
    for path in pages:
        page.goto(f"{live_server.url}{path}")
        assert page.evaluate(UNNAMED_CONTROLS) == [], path
    page.goto(f"{live_server.url}/patients/{patient.pk}/edit/")
    rows = page.locator("[name='therapies-TOTAL_FORMS']")
    before = int(rows.input_value())
    page.get_by_role("button", name="Add a therapy").click()  # a row added in place
    expect(rows).to_have_value(str(before + 1))
    assert page.evaluate(UNNAMED_CONTROLS) == [], "edit page"
    # Results are corrected one at a time, each on its own form.
    page.locator(".stored-results a").first.click()
    expect(page.get_by_role("button", name="Save this result")).to_be_visible()
    assert page.evaluate(UNNAMED_CONTROLS) == [], "result page"
    # The check itself finds a control without a name.
    page.evaluate("document.querySelector('main').append(document.createElement('select'))")
    assert len(page.evaluate(UNNAMED_CONTROLS)) == 1
    assert console_errors == []


def test_a_follow_up_is_marked_done_with_the_keyboard_alone(
    page: Any, live_server: Any, patient: Any, console_errors: list[str]
) -> None:
    open_before = FollowUp.objects.filter(patient=patient, completed_at__isnull=True).count()
    assert open_before > 0
    log_in(page, live_server, "alice")
    page.goto(f"{live_server.url}/patients/{patient.pk}/")

    mark_done = page.locator("#follow-ups details.mark-done > summary").first
    for _ in range(200):  # Tab through the page until the first "Mark done" has the focus
        page.keyboard.press("Tab")
        if mark_done.evaluate("summary => summary === document.activeElement"):
            break
    else:
        raise AssertionError("'Mark done' cannot be reached with the Tab key")
    code = mark_done.evaluate("summary => summary.closest('[data-follow-up]').dataset.followUp")
    page.keyboard.press("Enter")  # opens the outcome form
    save = page.locator("#follow-ups details.mark-done[open] button[type=submit]").first
    for _ in range(10):  # Tab on to its "Save: done" button
        page.keyboard.press("Tab")
        if save.evaluate("button => button === document.activeElement"):
            break
    else:
        raise AssertionError("'Save: done' cannot be reached with the Tab key")
    page.keyboard.press("Enter")

    expect(page.locator("#follow-ups details.mark-done[open]")).to_have_count(0)
    # The focus goes on from the follow-up it was on, to its Undo (it fell to the page's body:
    # the update looked for the first control and took the Undo form's hidden field).
    row = page.locator(f'#follow-ups [data-follow-up="{code}"]')
    expect(row.get_by_role("button", name=re.compile("^Undo"))).to_be_focused()
    assert (
        FollowUp.objects.filter(patient=patient, completed_at__isnull=True).count()
        == open_before - 1
    )
    assert console_errors == []


def _tab_to(page: Any, locator: Any, presses: int = 300) -> None:
    for _ in range(presses):
        page.keyboard.press("Tab")
        if locator.evaluate("element => element === document.activeElement"):
            return
    raise AssertionError(f"{locator} cannot be reached with the Tab key")


def _wait_for_focus_in_card(page: Any, code: str | None) -> None:
    """The focus lands in the card with this code once the in-page update has settled."""
    page.wait_for_function(
        "code => document.activeElement.closest('[data-code]')?.getAttribute('data-code') === code",
        arg=code,
        timeout=5000,
    )


def test_card_actions_by_keyboard_keep_the_focus_on_the_card(
    page: Any, live_server: Any, patient: Any, console_errors: list[str]
) -> None:
    log_in(page, live_server, "alice")
    page.goto(f"{live_server.url}/patients/{patient.pk}/")
    card = page.locator("#recommendations li.recommendation").first
    code = card.get_attribute("data-code")

    # Acknowledge with Enter: the panel is replaced, the focus stays on the same card.
    _tab_to(page, card.get_by_role("button", name="Acknowledge"))
    page.keyboard.press("Enter")
    expect(card.locator(".card-action-state")).to_contain_text("Acknowledged")
    _wait_for_focus_in_card(page, code)
    # On the card's Undo, which took the place of Acknowledge (not on its list of sources).
    expect(card.get_by_role("button", name=re.compile("^Undo"))).to_be_focused()
    page.keyboard.press("Enter")
    expect(card.locator(".card-action-state")).to_have_count(0)
    expect(card.get_by_role("button", name=re.compile("^Acknowledge"))).to_be_focused()

    # Override another card with a coded reason, by keyboard only.
    code = page.locator("#recommendations li.recommendation").nth(1).get_attribute("data-code")
    card = page.locator(f'#recommendations [data-code="{code}"]')
    _tab_to(page, card.locator("summary", has_text="Override or snooze"))
    page.keyboard.press("Enter")
    _tab_to(page, card.get_by_label("Override reason"), presses=5)
    page.keyboard.press("ArrowDown")  # the first reason
    _tab_to(page, card.get_by_role("button", name="Override"), presses=5)
    page.keyboard.press("Enter")
    expect(card.locator(".card-action-state")).to_contain_text("Overridden")
    _wait_for_focus_in_card(page, code)
    expect(card.get_by_role("button", name=re.compile("^Undo"))).to_be_focused()
    assert console_errors == []


# Marks a live region's node, to tell afterwards whether the update kept it or replaced it.
MARK = "id => { window.__region = document.getElementById(id); }"
SAME = "id => document.getElementById(id) === window.__region"


def _region_says(page: Any, region: str, text: str | re.Pattern[str]) -> None:
    """The live region (role=status) now says ``text``, and it is the node that was on the page
    before the update: a screen reader announces a region's changes, not a new region's text."""
    status = page.locator(f"#{region}")
    expect(status).to_have_attribute("role", "status")
    expect(status).to_have_text(text)
    assert page.evaluate(SAME, region), f"#{region} was replaced, so its text goes unannounced"


def test_in_page_updates_announce_one_line_from_a_region_that_stays(
    page: Any, live_server: Any, patient: Any, console_errors: list[str]
) -> None:
    """Item 7: after a filter, a search, a card action or a case edit a screen reader hears a
    short summary. The replaced content was itself marked aria-live, so it was read whole, or,
    arriving as a new region, not at all."""
    log_in(page, live_server, "alice")
    # The worklist: a search.
    page.evaluate(MARK, "worklist-status")
    page.get_by_label("Search MRN or name").fill("MM-14")
    _region_says(page, "worklist-status", "Showing 1\u20131 of 1 patient needing action")
    page.get_by_label("Search MRN or name").fill("NO-SUCH-MRN")
    _region_says(page, "worklist-status", "No patients need action with these filters.")
    expect(page.locator("#dashboard-results")).not_to_have_attribute("aria-live", re.compile(""))
    # The patient list: a search.
    page.goto(f"{live_server.url}/patients/")
    page.evaluate(MARK, "patient-list-status")
    page.get_by_label("Search MRN or name").fill("MM-14")
    _region_says(
        page, "patient-list-status", "Showing 1\u20131 of 1 patient matching \u201cMM-14\u201d"
    )
    # The patient page: a card acknowledged, then undone.
    page.goto(f"{live_server.url}/patients/{patient.pk}/")
    expect(page.locator("#patient-live [aria-live]")).to_have_count(0)
    page.evaluate(MARK, "patient-status")
    card = page.locator("#recommendations li.recommendation").first
    card.get_by_role("button", name="Acknowledge").click()
    summary = re.compile(r"^Card acknowledged\. \d+ recommendations?(: .*)?\.$")
    _region_says(page, "patient-status", summary)
    card.get_by_role("button", name=re.compile("^Undo")).click()
    _region_says(page, "patient-status", re.compile(r"^Card action undone\. \d+ recommend"))
    # Case entry: a field changed, the assessment updated live.
    page.goto(f"{live_server.url}/patients/{patient.pk}/edit/")
    page.evaluate(MARK, "case-status")
    page.get_by_label("Weight (kg)").fill("64")
    _region_says(
        page, "case-status", re.compile(r"Updated from your entries.*recommendation", re.S)
    )
    # A value the engine cannot use: the line says so; the panel keeps the last assessment.
    page.get_by_label("Weight (kg)").fill("-5")
    _region_says(page, "case-status", re.compile(r"1 entry needs attention\. Showing the last"))
    assert console_errors == []
