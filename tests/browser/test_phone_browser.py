"""At a phone's width (390 x 844): the navigation folds behind a menu button and the screens
do not scroll sideways."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from pathways import feed
from pathways.feed_models import Hl7Feed
from pathways.models import ApiToken
from tests.browser.conftest import log_in
from tests.browser.test_clinician_flow import ensure_published_rule_set
from tests.factories import myeloma_on_zoledronic_acid_14_months_document, stored_patient
from tests.test_hl7_feed import oru

SIDEWAYS = "() => document.documentElement.scrollWidth - window.innerWidth"
# The number of lines an element's text takes on screen.
LINES = (
    "e => { const r = document.createRange(); r.selectNodeContents(e);"
    " return new Set([...r.getClientRects()].map(x => Math.round(x.top))).size; }"
)

# The words (runs of letters between spaces and hyphens) of up to 20 characters that a table
# cell breaks over two lines: a cell that may break anywhere made "Entered" read "Entere" / "d".
BROKEN_WORDS = r"""() => {
  const broken = [];
  for (const cell of document.querySelectorAll('.table-cards td')) {
    const texts = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = texts.nextNode(); node; node = texts.nextNode()) {
      for (const word of node.data.matchAll(/[^\s\-\u2010-\u2014]+/g)) {
        if (word[0].length > 20) continue;
        const range = document.createRange();
        range.setStart(node, word.index);
        range.setEnd(node, word.index + word[0].length);
        const lines = new Set([...range.getClientRects()].filter(r => r.width > 0)
          .map(r => Math.round(r.top)));
        if (lines.size > 1) broken.push(word[0]);
      }
    }
  }
  return broken;
}"""


def assert_charts_readable(page: Any, suffix: str) -> None:
    """Each chart shown draws its smallest text at 9 px or more on the screen."""
    for name in ("alp", "bone_alp", "crcl"):
        chart = page.locator(f'[data-chart="{name}{suffix}"]')
        expect(chart).to_be_visible()
        smallest = chart.locator("svg").evaluate(
            "svg => Math.min(...[...svg.querySelectorAll('text')].map(t =>"
            " parseFloat(getComputedStyle(t).fontSize) * svg.getScreenCTM().a))"
        )
        assert smallest >= 9, (name, suffix, smallest, page.viewport_size)


def test_chart_text_stays_readable_at_every_width(
    page: Any, live_server: Any, patient: Any, console_errors: list[str]
) -> None:
    """The wide charts shrunk below 700 px drew their text under 9 px (about 5 px on a phone):
    there the narrow copy shows instead."""
    log_in(page, live_server, "alice")
    for width in (360, 390, 576, 640, 699, 700, 768, 1024, 1200, 1440):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{live_server.url}/patients/{patient.pk}/")
        assert_charts_readable(page, "-narrow" if width < 700 else "")
    assert console_errors == []


@pytest.fixture
def patient(smoke_user: Any) -> Any:
    ensure_published_rule_set()
    clinic = smoke_user.memberships.get().clinic
    return stored_patient(
        clinic, smoke_user, myeloma_on_zoledronic_acid_14_months_document(), mrn="MM-PHONE"
    )


def test_the_navigation_folds_on_a_phone_and_log_out_stays_reachable(
    page: Any, live_server: Any, patient: Any, console_errors: list[str]
) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    log_in(page, live_server, "alice")
    log_out = page.get_by_role("button", name="Log out")
    expect(log_out).to_be_hidden()
    page.get_by_role("button", name="Menu").click()
    expect(log_out).to_be_visible()
    box = log_out.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 390
    for path in ("/", "/patients/", f"/patients/{patient.pk}/", f"/patients/{patient.pk}/edit/"):
        page.goto(f"{live_server.url}{path}")
        assert page.evaluate(SIDEWAYS) <= 0, path
    # On the patient page the advice comes before the chart.
    page.goto(f"{live_server.url}/patients/{patient.pk}/")
    advice = page.locator("#recommendations").bounding_box()
    chart = page.locator('[data-chart="alp-narrow"]').bounding_box()
    assert advice is not None and chart is not None and advice["y"] < chart["y"]
    # The phone shows the charts drawn at its width: their text stays readable (the wide chart
    # shrunk to the phone drew it at about 5 px).
    expect(page.locator('[data-chart="alp"]')).to_be_hidden()
    assert_charts_readable(page, "-narrow")
    # The results too are one card each, their actions inside the card.
    result = page.locator(".results-table tbody tr").first
    expect(result).to_have_css("display", "block")
    box = page.locator(".results-table")
    assert box.evaluate("e => e.scrollWidth - e.clientWidth") <= 0
    edit = result.get_by_role("link", name="Edit").bounding_box()
    card = result.bounding_box()
    assert edit is not None and card is not None
    assert card["x"] <= edit["x"] and edit["x"] + edit["width"] <= card["x"] + card["width"]
    # The worklist is one card per patient row, each value under its column's name.
    page.goto(f"{live_server.url}/")
    row = page.locator('tr[data-mrn="MM-PHONE"]').first
    expect(row).to_have_css("display", "block")
    box = row.bounding_box()
    assert box is not None and box["width"] <= 390
    label = row.locator('td[data-label="Patient"]').evaluate(
        "td => getComputedStyle(td, '::before').content"
    )
    assert label == '"Patient"'
    # Each value keeps its own lines beside its label: the name over the MRN, the ALP over its
    # date (a flex cell put them side by side and squeezed the date to "2026-11-" / "25").
    cell = row.locator('td[data-label="Patient"]')
    name = cell.get_by_role("link").bounding_box()
    mrn = cell.locator("small").bounding_box()
    assert name is not None and mrn is not None
    assert mrn["y"] >= name["y"] + name["height"] - 1
    assert abs(mrn["x"] - name["x"]) <= 1
    assert row.locator(".alp-date").evaluate(LINES) == 1  # one line, not broken
    # A label never breaks inside a word ("Top recommenda" / "tion").
    wrap = row.locator('td[data-label="Top recommendation"]').evaluate(
        "td => getComputedStyle(td, '::before').overflowWrap"
    )
    assert wrap == "normal"
    # The sort list takes the row: its longest choice, "Due date (soonest first)", shows whole.
    sort = page.locator("#id_sort").bounding_box()
    assert sort is not None and sort["width"] >= 300
    # The patient list too is one card per patient: no column cut off in a box that scrolls
    # sideways, no MRN or birth date broken over two lines.
    page.goto(f"{live_server.url}/patients/")
    row = page.locator('tr[data-mrn="MM-PHONE"]')
    expect(row).to_have_css("display", "block")
    box = page.locator("#patient-results .table-responsive")
    assert box.evaluate("e => e.scrollWidth - e.clientWidth") <= 0
    for label in ("MRN", "Born"):
        assert row.locator(f'td[data-label="{label}"]').evaluate(LINES) == 1, label
    # At a desktop's width the links show without the menu button.
    page.set_viewport_size({"width": 1440, "height": 900})
    expect(page.get_by_role("button", name="Menu")).to_be_hidden()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    expect(page.locator('tr[data-mrn="MM-PHONE"]').first).to_have_css("display", "table-row")
    page.goto(f"{live_server.url}/patients/{patient.pk}/")  # side by side: the chart on the left
    advice = page.locator("#recommendations").bounding_box()
    chart = page.locator('[data-chart="alp"]').bounding_box()
    assert advice is not None and chart is not None and chart["x"] < advice["x"]
    expect(page.locator('[data-chart="alp-narrow"]')).to_be_hidden()
    assert_charts_readable(page, "")
    page.goto(f"{live_server.url}/")
    # Every status count is a filled badge (white text on the status colour), "Needs action" too.
    for status in ("action", "overdue", "due_soon", "upcoming", "all"):
        expect(page.locator(f"#count-{status}")).not_to_have_css(
            "background-color", "rgba(0, 0, 0, 0)"
        )
    assert console_errors == []


def test_the_lab_inbox_and_the_token_page_fit_a_phone(
    page: Any, live_server: Any, smoke_user: Any, console_errors: list[str]
) -> None:
    """Their tables are one card per row on a phone, like the worklist: they used to widen the
    page to 465 and 484 px."""
    clinic = smoke_user.memberships.get().clinic
    Hl7Feed.objects.create(
        sending_facility="NORTHLAB",
        clinic=clinic,
        service_user=User.objects.create_user("phone-lab-feed"),
        assigning_authority="NORTHHOSP",
    )
    feed.receive(oru("PHONE-1", mrn="NOT-ON-FILE"), via="test")  # parked: no such patient
    ApiToken.issue(user=smoke_user, name="ward tablet", scopes=["assess", "read"])
    page.set_viewport_size({"width": 390, "height": 844})
    log_in(page, live_server, "alice")
    for path, text in (
        ("/lab-feed/inbox/", "NOT-ON-FILE"),
        ("/account/api-tokens/", "ward tablet"),
    ):
        page.goto(f"{live_server.url}{path}")
        row = page.locator("tbody tr").filter(has_text=text)
        expect(row).to_have_css("display", "block")
        assert page.evaluate(SIDEWAYS) <= 0, path
        button = row.get_by_role("button").first.bounding_box()
        assert button is not None and button["x"] + button["width"] <= 390, path
    assert console_errors == []


def test_table_values_break_only_between_words_at_every_width(
    page: Any, live_server: Any, patient: Any, smoke_user: Any, console_errors: list[str]
) -> None:
    """Only typed or received text may break inside a word, and then only to fit: every cell
    breaking anywhere let the tables squeeze "Entered", "Overdue" and "examination" over two
    lines at a desktop's width. A 200-character name without a space still wraps in its cell
    instead of widening the page or its table."""
    clinic = smoke_user.memberships.get().clinic
    long_name = "Wolfeschlegelsteinhausenbergerdorff" * 5 + "Smith" * 5
    stored_patient(
        clinic,
        smoke_user,
        myeloma_on_zoledronic_acid_14_months_document(),
        mrn="L" * 40,
        name=long_name,
    )
    Hl7Feed.objects.create(
        sending_facility="NORTHLAB",
        clinic=clinic,
        service_user=User.objects.create_user("wrap-lab-feed"),
        assigning_authority="NORTHHOSP",
    )
    feed.receive(oru("WRAP-1", mrn="NOT-ON-FILE"), via="test")
    ApiToken.issue(user=smoke_user, name="ward tablet", scopes=["assess", "read"])
    log_in(page, live_server, "alice")
    paths = ("/", "/patients/", f"/patients/{patient.pk}/", "/lab-feed/inbox/")
    for width in (390, 768, 800, 1024, 1280, 1440):
        page.set_viewport_size({"width": width, "height": 900})
        for path in (*paths, "/account/api-tokens/"):
            page.goto(f"{live_server.url}{path}")
            where = (width, path)
            assert page.evaluate(BROKEN_WORDS) == [], where
            assert page.evaluate(SIDEWAYS) <= 0, where
            for table in page.locator(".table-responsive").all():
                assert table.evaluate("e => e.scrollWidth - e.clientWidth") <= 0, where
        page.goto(f"{live_server.url}/")
        name = page.get_by_role("link", name=long_name)
        expect(name).to_be_visible()
        assert name.evaluate(LINES) > 1, width  # wrapped within its cell
    assert console_errors == []


def test_case_entry_on_a_phone_keeps_save_and_the_advice_in_view(
    page: Any, live_server: Any, patient: Any, console_errors: list[str]
) -> None:
    """Below 992 px the recommendations follow the whole form, about 2,600 px down on a
    phone: Save and the advice in a few words now stay at the foot of the screen, with a
    link down to the advice, updated with each live assessment."""
    page.set_viewport_size({"width": 390, "height": 844})
    log_in(page, live_server, "alice")
    page.goto(f"{live_server.url}/patients/{patient.pk}/edit/")
    assert page.evaluate("document.documentElement.scrollHeight") > 2 * 844
    save = page.get_by_role("button", name="Save", exact=True)
    link = page.locator(".case-advice-link")
    for box in (save.bounding_box(), link.bounding_box()):
        assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 844, box
    summary = page.locator("#live-summary")
    expect(link).to_have_text(f"{summary.text_content()}: see below")
    page.get_by_label("Bone pain").check()  # a live assessment: the line follows it
    expect(page.locator("#case-status")).to_contain_text("Updated from your entries")
    expect(link).to_have_text(f"{summary.text_content()}: see below")
    # A field that takes the focus (Tab) is not left under the bar: with the fracture date
    # on screen but behind the bar, Tab from the fracture scrolls it clear.
    date = page.get_by_label("Fracture date")
    date.evaluate(
        "e => window.scrollBy({top: e.getBoundingClientRect().bottom - innerHeight + 10,"
        " behavior: 'instant'})"
    )
    page.get_by_label("Fracture", exact=True).focus()
    page.keyboard.press("Tab")
    expect(date).to_be_focused()
    page.wait_for_function(  # scrolled into view (smoothly), clear of the bar
        "() => document.activeElement.getBoundingClientRect().bottom"
        " <= document.querySelector('.case-actions').getBoundingClientRect().top"
    )
    link.click()
    heading = page.get_by_role("heading", name="Recommendations and follow-up")
    expect(heading).to_be_in_viewport()
    # At a desktop's width the panel is beside the form: no link.
    page.set_viewport_size({"width": 1440, "height": 900})
    expect(link).to_be_hidden()
    assert console_errors == []


def test_a_long_follow_up_note_and_lab_comment_wrap_at_every_width(
    page: Any, live_server: Any, patient: Any, smoke_user: Any, console_errors: list[str]
) -> None:
    """A follow-up's note of 2,000 characters without a space (its cap) widened the patient page
    by about 20,000 px, and a lab comment of 10,000 made the results table scroll sideways at a
    desktop's width (the wrapping rule matched table cells only). Found by a defect hunt."""
    from pathways.services import follow_up_mark_done

    patient.lab_results.update(lab_comment="L" * 10_000)
    done = patient.follow_ups.filter(completed_at=None).exclude(code="dental-exam").first()
    assert done is not None
    follow_up_mark_done(follow_up=done, user=smoke_user, note="N" * 2000)
    log_in(page, live_server, "alice")
    for width in (390, 1280):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{live_server.url}/patients/{patient.pk}/")
        expect(page.locator("#follow-ups .follow-up-note")).to_have_count(1)
        assert page.evaluate(SIDEWAYS) <= 0, width
        table = page.locator(".results-table").evaluate("e => e.scrollWidth - e.clientWidth")
        assert table <= 0, width
    assert console_errors == []
