"""The patient page prints as a one-to-two page summary for the chart (print stylesheet)."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from pathways.demo import synthetic_case
from tests.browser.conftest import log_in
from tests.browser.test_clinician_flow import ensure_published_rule_set
from tests.factories import (
    myeloma_on_zoledronic_acid_14_months_document,
    pregnant_third_trimester_document,
    stored_patient,
)


def pdf_pages(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page(?![a-z])", pdf))


def test_the_patient_page_prints_on_one_or_two_pages(
    page: Any, live_server: Any, smoke_user: Any, console_errors: list[str]
) -> None:
    ensure_published_rule_set()
    clinic = smoke_user.memberships.get().clinic
    document = synthetic_case(random.Random(7), timezone.localdate(), results=24)
    patient = stored_patient(clinic, smoke_user, document, mrn="PRINT-1", name="Print Test")
    log_in(page, live_server, "alice")
    page.goto(f"{live_server.url}/patients/{patient.pk}/")
    expect(page.locator("tr[data-test]")).not_to_have_count(0)

    page.emulate_media(media="print")
    # On paper: the chart, results and recommendations; no navigation, forms or buttons.
    expect(page.get_by_role("img", name="Total ALP over time")).to_be_visible()
    expect(page.locator("[data-code]").first).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
    expect(page.get_by_text("Mark done").first).to_be_hidden()
    expect(page.get_by_role("button", name="Acknowledge").first).to_be_hidden()
    # Who printed it and when; the ALP chart spans the page's width.
    expect(page.locator("#printed-by")).to_contain_text("Printed by alice on ")
    chart_width = page.locator('[data-chart="alp"] svg').evaluate(
        "svg => svg.getBoundingClientRect().width"
    )
    main_width = page.locator("main").evaluate("main => main.getBoundingClientRect().width")
    assert chart_width >= 0.95 * main_width, (chart_width, main_width)
    # Each chart prints once: the phone's copies stay hidden on paper.
    expect(page.locator(".charts-narrow").first).to_be_hidden()
    expect(page.locator(".small-multiples.charts-narrow")).to_be_hidden()
    titles = page.locator("figure.chart figcaption:visible").all_inner_texts()
    assert len(titles) == len(set(titles)), titles
    expect(page.get_by_role("button", name="Add result")).to_be_hidden()
    # A group shown closed on screen (information, history) prints its cards' titles.
    closed = page.locator("details.recommendation-group:not([open]) [data-code]")
    assert closed.count() > 0, "the case must have a card in a closed group"
    for card in closed.all():
        expect(card.locator(".recommendation-title")).to_be_visible()

    pages = pdf_pages(page.pdf(format="A4"))
    assert 1 <= pages <= 2, f"printed on {pages} pages"
    assert console_errors == []


# The clinician's browser is in another time zone than the site (a laptop left on home time).
@pytest.mark.browser_context_args(timezone_id="America/New_York")
def test_the_printout_says_when_it_was_printed_not_when_the_page_was_opened(
    page: Any, live_server: Any, smoke_user: Any, console_errors: list[str], settings: Any
) -> None:
    """A clinician opens the patient page at 09:00, works on it (cards, follow-ups, results
    change in place) and prints at 12:00: the paper said "Printed … on <09:00>"."""
    settings.TIME_ZONE = "Pacific/Auckland"  # ALPCARE_TIME_ZONE, the site's
    site = ZoneInfo("Pacific/Auckland")
    ensure_published_rule_set()
    clinic = smoke_user.memberships.get().clinic
    patient = stored_patient(clinic, smoke_user, myeloma_on_zoledronic_acid_14_months_document())
    opened = datetime.now(UTC)
    page.clock.install(time=opened)
    log_in(page, live_server, "alice")
    page.goto(f"{live_server.url}/patients/{patient.pk}/")
    served = page.locator("#printed-by").text_content()
    assert served is not None
    assert any(  # before printing, the time the server wrote stands
        f"on {(opened + timedelta(minutes=m)).astimezone(site):%Y-%m-%d %H:%M} " in served
        for m in (0, 1)
    ), served

    printed = opened + timedelta(hours=3)
    page.clock.set_system_time(printed)
    page.emulate_media(media="print")
    page.evaluate("window.dispatchEvent(new Event('beforeprint'))")
    text = page.locator("#printed-by").inner_text()
    expected = {
        f"{(printed + timedelta(minutes=m)).astimezone(site):%Y-%m-%d %H:%M}" for m in (0, 1)
    }
    assert any(text == f"Printed by alice on {stamp} from alpcare." for stamp in expected), (
        text,
        sorted(expected),
    )
    assert console_errors == []


def test_a_confirmation_is_not_printed_on_the_summary(
    page: Any, live_server: Any, smoke_user: Any, console_errors: list[str]
) -> None:
    """After "Set" (responsible clinician) the page says "Responsible clinician: alice." at the
    top: a confirmation for the screen, not part of the patient's summary for the paper chart."""
    ensure_published_rule_set()
    clinic = smoke_user.memberships.get().clinic
    patient = stored_patient(clinic, smoke_user, myeloma_on_zoledronic_acid_14_months_document())
    log_in(page, live_server, "alice")
    page.goto(f"{live_server.url}/patients/{patient.pk}/")
    page.get_by_label("Responsible clinician").select_option(label="alice")
    page.get_by_role("button", name="Set").click()
    confirmation = page.get_by_role("alert").filter(has_text="Responsible clinician: alice.")
    expect(confirmation).to_be_visible()

    page.emulate_media(media="print")
    expect(confirmation).to_be_hidden()
    expect(page.locator("#printed-by")).to_be_visible()
    assert console_errors == []


def test_what_was_considered_and_stood_down_is_printed_with_its_reasons(
    page: Any, live_server: Any, smoke_user: Any, console_errors: list[str]
) -> None:
    """The section is closed on screen; on paper it printed as its heading alone, so the
    summary did not say why the bone scan was not advised (pregnancy)."""
    ensure_published_rule_set()
    clinic = smoke_user.memberships.get().clinic
    document = pregnant_third_trimester_document(timezone.localdate())
    patient = stored_patient(clinic, smoke_user, document, mrn="PRINT-3", name="Print Test")
    log_in(page, live_server, "alice")
    page.goto(f"{live_server.url}/patients/{patient.pk}/")
    considered = page.locator("#considered-not-advised:not([open]) li")
    assert considered.count() > 0, "the case must have a rule stood down"
    expect(considered.first).to_be_hidden()  # closed on screen
    page.emulate_media(media="print")
    for item in considered.all():
        expect(item).to_be_visible()
    assert console_errors == []
