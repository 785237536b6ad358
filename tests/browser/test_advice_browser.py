"""What the clinician sees, in a real browser (issue 11): a pregnant patient in the third
trimester typed into the case-entry form — the context line appears above the live advice, the
bone scan is stood down and listed, collapsed, under "Considered, not advised" with its reason;
after saving, the patient page shows the same, and each citation shows its kind and opens to its
full text. No console errors, no Content-Security-Policy violation."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from tests.browser.test_clinician_flow import LIVE_TIMEOUT, ensure_published_rule_set


def _add_result(page: Any, index: int, test: str, unit: str, value: str, day: str) -> None:
    if index:
        page.get_by_role("button", name="Add a result").click()
    page.locator(f'[name="labs-{index}-test"]').select_option(test)
    page.locator(f'[name="labs-{index}-unit"]').select_option(unit)
    page.locator(f'[name="labs-{index}-collected_on"]').fill(day)
    page.locator(f'[name="labs-{index}-collected_time"]').fill("09:00")
    page.locator(f'[name="labs-{index}-value"]').fill(value)


def _shows_the_pregnancy_and_the_stood_down_bone_scan(page: Any, panel: str) -> None:
    pregnant = page.locator(f'{panel} [data-context="pregnant"]')
    expect(pregnant).to_contain_text("Pregnant, week 30 (third trimester)", timeout=LIVE_TIMEOUT)
    expect(pregnant).to_contain_text("ULN 229 U/L, built-in: pregnancy, third trimester")
    # The context line sits above the advice.
    line = page.locator(f"{panel} .context-line").bounding_box()
    first_card = page.locator(f"{panel} .recommendation").first.bounding_box()
    assert line["y"] < first_card["y"], (line, first_card)

    considered = page.locator(f"{panel} details.considered")
    bone_scan = considered.locator('[data-suppressed="bone-scan"]')
    expect(considered.locator("summary")).to_contain_text("Considered, not advised")
    expect(bone_scan).to_be_hidden()  # collapsed
    considered.locator("summary").click()
    expect(bone_scan).to_be_visible()
    expect(bone_scan).to_contain_text("radionuclide scan avoided in pregnancy")
    expect(page.locator(f'{panel} .recommendation[data-code="bone-scan"]')).to_have_count(0)


def test_a_pregnant_patient_sees_the_context_line_and_what_was_considered_not_advised(
    page: Any, live_server: Any, smoke_user: Any, console_errors: list[str]
) -> None:
    ensure_published_rule_set()
    drawn = (timezone.localdate() - timedelta(days=12)).isoformat()
    log_in(page, live_server, "alice")
    page.get_by_role("link", name="New patient").first.click()
    page.get_by_label("MRN").fill("PREG-30")
    page.get_by_label("Name").fill("Ines Duarte")
    page.get_by_label("Birth date").fill("1992-05-14")
    page.get_by_label("Sex").select_option("female")
    page.get_by_label("Pregnant", exact=True).check()
    page.get_by_label("Gestational weeks").fill("30")
    page.get_by_label("Bone pain", exact=True).check()
    _add_result(page, 0, "alp", "U/L", "260", drawn)
    _add_result(page, 1, "ggt", "U/L", "18", drawn)
    _add_result(page, 2, "bone_alp", "ug/L", "30", drawn)

    # Live, as the form is typed: the pregnancy above the advice, the bone scan stood down.
    _shows_the_pregnancy_and_the_stood_down_bone_scan(page, "#assessment")
    expect(page.locator('#assessment [data-working="uln"]')).to_contain_text(
        "built-in: pregnancy, third trimester"
    )
    # The next live update replaces the panel; the section the reader opened stays open.
    with page.expect_response("**/case/preview/"):
        page.get_by_label("Weight (kg)").fill("71")
    expect(page.locator('#assessment [data-suppressed="bone-scan"]')).to_be_visible()

    page.get_by_role("button", name="Save").click()
    page.wait_for_url(f"{live_server.url}/patients/*/")
    expect(page.get_by_text("Saved Ines Duarte")).to_be_visible()
    _shows_the_pregnancy_and_the_stood_down_bone_scan(page, "#recommendations")

    # Each citation shows its kind; opening the sources shows the full text.
    card = page.locator('#recommendations [data-code="pregnancy-alp-above-range"]')
    expect(card.locator("summary .source-kind")).to_have_text("guideline")
    full_text = card.locator('[data-citation="ACG-2016-PREG"]')
    expect(full_text).to_be_hidden()
    card.locator("details.citations > summary").click()
    expect(full_text).to_contain_text("ACG clinical guideline: liver disease and pregnancy")
    noted = page.locator("#recommendations .evidence-note").first
    expect(noted).to_be_visible()
    expect(noted).to_contain_text("Evidence note:")
    assert console_errors == []
