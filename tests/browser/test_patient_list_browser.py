"""The patient list's search in a real browser: typing narrows the list in place, the search
goes into the URL, and no Content-Security-Policy violation is reported (console_errors)."""

from __future__ import annotations

from datetime import date
from typing import Any

from playwright.sync_api import expect

from pathways.models import Patient
from pathways.views import PATIENTS_PER_PAGE
from tests.browser.conftest import log_in


def test_typing_a_name_narrows_the_list_in_place(
    page: Any, live_server: Any, smoke_user: Any, console_errors: list[str]
) -> None:
    clinic = smoke_user.memberships.get().clinic
    for mrn, name in (("P-1", "Ada Byrne"), ("P-2", "Edith Moss"), ("P-3", "Adam Hale")):
        Patient.objects.create(
            clinic=clinic, mrn=mrn, name=name, birth_date=date(1950, 1, 1), sex="female"
        )
    log_in(page, live_server, "alice")
    page.goto(f"{live_server.url}/patients/")
    expect(page.locator("tr[data-mrn]")).to_have_count(3)
    page.evaluate("window.__marker = 'same page'")  # gone if the page reloads
    page.get_by_label("Search MRN or name").fill("ada")
    page.wait_for_url("**/patients/?q=ada*")
    expect(page.locator("tr[data-mrn]")).to_have_count(2)
    expect(page.locator("#patient-results caption")).to_contain_text("matching “ada”")
    assert page.evaluate("window.__marker") == "same page"
    assert console_errors == []


def test_paging_by_keyboard_keeps_the_focus_on_the_pages_links(
    page: Any, live_server: Any, smoke_user: Any, console_errors: list[str]
) -> None:
    """ "Next" replaced the list it sits in and the focus fell back to the top of the page: it
    stays on the page links now, and the status line says which patients show."""
    clinic = smoke_user.memberships.get().clinic
    Patient.objects.bulk_create(
        Patient(clinic=clinic, mrn=f"PG-{n:03d}", name=f"Page {n:03d}", birth_date=date(1950, 1, 1))
        for n in range(PATIENTS_PER_PAGE * 2 + 5)
    )
    log_in(page, live_server, "alice")
    page.goto(f"{live_server.url}/patients/")
    pages = page.get_by_role("navigation", name="Pages")
    pages.get_by_role("link", name="Next").focus()
    page.keyboard.press("Enter")
    expect(pages).to_contain_text("Page 2 of 3")
    expect(pages.get_by_role("link", name="Next")).to_be_focused()
    expect(page.locator("#patient-list-status")).to_have_text(
        f"Showing {PATIENTS_PER_PAGE + 1}\u2013{PATIENTS_PER_PAGE * 2} of"
        f" {PATIENTS_PER_PAGE * 2 + 5} patients"
    )
    page.keyboard.press("Enter")  # the last page: no "Next", so "Previous" takes the focus
    expect(pages).to_contain_text("Page 3 of 3")
    expect(pages.get_by_role("link", name="Previous")).to_be_focused()
    assert console_errors == []
