"""The patient list's search in a real browser: typing narrows the list in place, the search
goes into the URL, and no Content-Security-Policy violation is reported (console_errors)."""

from __future__ import annotations

from datetime import date
from typing import Any

from playwright.sync_api import expect

from pathways.models import Patient
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
