"""Case entry by keyboard: Enter saves, a new row takes the focus, the age shows beside the
birth date, the name shows how much room is left, and a failed save puts the focus on the
summary of what needs attention."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django.utils import timezone
from playwright.sync_api import expect

from pathways.engine.dates import age_in_years
from pathways.models import Patient
from tests.browser.conftest import log_in
from tests.browser.test_clinician_flow import ensure_published_rule_set


def _focused_name(page: Any) -> str:
    return str(page.evaluate("() => document.activeElement && document.activeElement.name"))


def test_entry_by_keyboard(
    page: Any, live_server: Any, smoke_user: Any, console_errors: list[str]
) -> None:
    ensure_published_rule_set()
    log_in(page, live_server, "alice")
    page.goto(f"{live_server.url}/patients/new/")
    page.get_by_label("MRN").fill("KEY-1")
    page.get_by_label("Name").fill("Ada Keyboard")
    expect(page.locator("#id_name-counter")).to_have_text("12 / 200 characters")
    birth = timezone.localdate().replace(year=timezone.localdate().year - 70)
    page.get_by_label("Birth date").fill(birth.isoformat())
    expect(page.locator("#age-hint")).to_have_text("Age 70 y")
    page.get_by_label("Sex").select_option("female")

    # "Add a result" puts the focus in the new row, whose unit list follows its test.
    page.get_by_role("button", name="Add a result").click()
    expect(page.locator('[name="labs-1-test"]')).to_be_focused()
    page.locator('[name="labs-1-test"]').select_option("calcium")
    expect(page.locator('[name="labs-1-unit"]')).to_have_value("mg/dL")
    expect(page.locator('[name="labs-1-unit"] option[value="U/L"]')).to_be_disabled()
    expect(page.locator('[name="labs-1-unit"] option[value="mmol/L"]')).to_be_enabled()

    # A failed save: the summary takes the focus and links to the field.
    page.locator('[name="labs-0-value"]').fill("412")
    page.locator('[name="labs-0-collected_on"]').fill("2199-01-01")
    page.locator('[name="labs-0-value"]').press("Enter")
    summary = page.locator("#error-summary")
    expect(summary).to_be_focused()
    expect(summary).to_contain_text("Result 1: Collected on: collected after the assessment date")
    expect(page.locator('[name="labs-0-collected_on"]')).to_have_attribute("aria-invalid", "true")
    assert not Patient.objects.filter(mrn="KEY-1").exists()

    # Enter in a field saves (it does not add a row).
    page.locator('[name="labs-0-collected_on"]').fill(timezone.localdate().isoformat())
    page.locator('[name="labs-1-DELETE"]').check()
    page.locator('[name="labs-0-value"]').press("Enter")
    page.wait_for_url(f"{live_server.url}/patients/*/")
    expect(page.get_by_text("Saved Ada Keyboard")).to_be_visible()
    assert Patient.objects.get(mrn="KEY-1").lab_results.count() == 1
    # The one console line: the refused save's page comes with its 400 status, as it should.
    assert console_errors == [
        "Failed to load resource: the server responded with a status of 400 (Bad Request)"
    ]


def test_the_age_beside_the_birth_date_counts_a_29_february_birthday_as_the_engine_does(
    page: Any, live_server: Any, smoke_user: Any
) -> None:
    """On 28 February of a year without a 29th, a 29 February birthday has come (spec §2's
    calendar months; the header and the engine say 18): the form said 17. Found by a defect
    hunt."""
    ensure_published_rule_set()
    log_in(page, live_server, "alice")
    page.clock.set_fixed_time(datetime(2026, 2, 28, 12, 0))
    page.goto(f"{live_server.url}/patients/new/")
    page.get_by_label("Birth date").fill("2008-02-29")
    assert age_in_years(date(2008, 2, 29), date(2026, 2, 28)) == 18
    expect(page.locator("#age-hint")).to_have_text("Age 18 y")
    page.get_by_label("Birth date").fill("2008-03-01")
    expect(page.locator("#age-hint")).to_have_text("Age 17 y")
