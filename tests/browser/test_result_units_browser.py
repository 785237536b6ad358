"""The patient page's "Add a result" form and the "Correct a result" page in Chromium: the
unit list follows the test, as on the case page (case-entry.js), under the CSP."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from tests.browser.test_clinician_flow import ensure_published_rule_set


@pytest.fixture
def clinician(smoke_user: Any) -> Any:
    """alice at the north clinic, with the shipped rule set in force."""
    ensure_published_rule_set()
    return smoke_user


def _offered(unit: Any, code: str) -> None:
    expect(unit.locator(f'option[value="{code}"]')).to_be_enabled()


def _not_offered(unit: Any, code: str) -> None:
    option = unit.locator(f'option[value="{code}"]')
    expect(option).to_be_disabled()
    expect(option).to_have_attribute("hidden", "")


def test_the_unit_list_follows_the_test_on_the_patient_pages_add_result_form(
    page: Any, live_server: Any, clinician: Any, console_errors: list[str]
) -> None:
    """Every unit of every test was offered (CrCl in U/L, ALP in mg/dL). Now CrCl offers
    mL/min only and takes it; ALP its own units; and the form swapped in after a result was
    added, or refused, follows its test too."""
    from pathways.models import LabResult
    from tests.factories import stored_patient

    patient = stored_patient(clinician.memberships.get().clinic, clinician, mrn="UNIT-1")
    log_in(page, live_server, "alice")
    page.goto(f"{live_server.url}/patients/{patient.pk}/")
    form = page.locator("#add-result-form")
    test, unit = form.get_by_label("Test"), form.get_by_label("Unit")

    # ALP, as the page opens: U/L and µkat/L, no mg/dL nor mL/min.
    expect(test).to_have_value("alp")
    _offered(unit, "U/L")
    _offered(unit, "ukat/L")
    _not_offered(unit, "mg/dL")
    _not_offered(unit, "mL/min")

    test.select_option("crcl")
    expect(unit).to_have_value("mL/min")
    _not_offered(unit, "U/L")
    _not_offered(unit, "mg/dL")

    # Added in place: the new form (swapped in by htmx) follows its test as well.
    today = timezone.localdate()
    form.get_by_label("Value").fill("55")
    form.get_by_label("Collected on").fill(today.isoformat())
    form.get_by_role("button", name="Add result").click()
    expect(page.locator("#patient-status")).to_contain_text("Result added: CrCl 55 mL/min")
    assert LabResult.objects.filter(patient=patient, test="crcl", unit="mL/min").exists()
    expect(test).to_have_value("alp")
    _not_offered(unit, "mL/min")
    test.select_option("creatinine")
    expect(unit).to_have_value("mg/dL")
    _offered(unit, "umol/L")
    _not_offered(unit, "U/L")

    # Refused in place (collected tomorrow): the kept input's unit list still follows its test.
    form.get_by_label("Value").fill("1.1")
    form.get_by_label("Collected on").fill((today + timedelta(days=1)).isoformat())
    form.get_by_role("button", name="Add result").click()
    expect(form).to_contain_text("collected after the assessment date (today)")
    expect(test).to_have_value("creatinine")
    expect(unit).to_have_value("mg/dL")
    _not_offered(unit, "U/L")
    _not_offered(unit, "mL/min")

    # The only console lines: the refused result's 422, as it should be.
    assert len(console_errors) == 1
    assert console_errors[0].startswith(
        "Failed to load resource: the server responded with a status of 422"
    )


def test_the_unit_list_follows_the_test_on_the_correct_a_result_page(
    page: Any, live_server: Any, clinician: Any, console_errors: list[str]
) -> None:
    """The same on "Correct a result": the stored result's test sets the list, and a test
    changed there brings its own units; the correction is saved."""
    from pathways.models import LabResult
    from tests.factories import stored_patient

    patient = stored_patient(clinician.memberships.get().clinic, clinician, mrn="UNIT-2")
    result = patient.lab_results.get(value=412)
    log_in(page, live_server, "alice")
    page.goto(f"{live_server.url}/patients/{patient.pk}/results/{result.pk}/")
    form = page.locator("#result-edit-form")
    test, unit = form.get_by_label("Test"), form.get_by_label("Unit")
    expect(test).to_have_value("alp")
    expect(unit).to_have_value("U/L")
    _not_offered(unit, "mL/min")

    test.select_option("crcl")
    expect(unit).to_have_value("mL/min")
    _not_offered(unit, "U/L")
    test.select_option("alp")
    expect(unit).to_have_value("U/L")

    form.get_by_label("Value").fill("415")
    form.get_by_role("button", name="Save this result").click()
    page.wait_for_url(f"{live_server.url}/patients/{patient.pk}/")
    expect(page.get_by_text("Result changed")).to_be_visible()
    assert LabResult.objects.get(pk=result.pk).value == 415
    assert console_errors == []
