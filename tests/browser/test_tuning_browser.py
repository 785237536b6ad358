"""Rule tuning end to end: an editor raises the extreme-ALP threshold in a draft and sees its
impact, a second user publishes it, the clinician's screens change, and it is rolled back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from pathways import rules
from pathways.models import AssessmentSnapshot, RuleSet
from tests.browser.conftest import log_in
from tests.browser.test_clinician_flow import ensure_published_rule_set
from tests.conftest import rule_editor
from tests.factories import paget_on_alendronate_document, stored_patient


@pytest.fixture
def tuning_team(smoke_user: Any) -> Iterator[dict[str, Any]]:
    ensure_published_rule_set()
    rules.clear_cache()  # keys are reused after a flush
    clinic = smoke_user.memberships.get().clinic
    document = paget_on_alendronate_document()
    document["labs"][-1]["value"] = 1100  # extreme under 1000 U/L, not under 1200 U/L
    patient = stored_patient(clinic, smoke_user, document, mrn="PAGET-1100", name="Edith Moss")
    yield {
        "patient": patient,
        "editor": rule_editor("rui", clinic=clinic),
        "publisher": rule_editor("pat", clinic=clinic, publisher=True),
    }
    rules.clear_cache()  # the versions published here are flushed with the test


def _switch_user(page: Any, live_server: Any, username: str) -> None:
    page.context.clear_cookies()
    log_in(page, live_server, username)


def _moved_example(case: dict[str, Any]) -> dict[str, Any]:
    """The extreme-alp boundary examples, moved from 1000 U/L to 1200 U/L."""
    for lab in case.get("labs", []):
        if lab["test"] == "alp" and lab["unit"] == "ukat/L":
            lab["value"] = 20.01  # 1200.6 U/L
        elif lab["test"] == "alp" and lab["value"] >= 1000:
            lab["value"] = round(lab["value"] + 200, 1)
    return case


def test_an_editor_tunes_the_extreme_alp_threshold_a_publisher_publishes_and_rolls_back(
    page: Any, live_server: Any, tuning_team: dict[str, Any], console_errors: list[str]
) -> None:
    patient = tuning_team["patient"]
    original = RuleSet.objects.get(is_current=True)
    patient_url = f"{live_server.url}/patients/{patient.pk}/"
    assert "extreme-alp" in AssessmentSnapshot.objects.get(patient=patient).recommendation_codes

    # The clinician sees the urgent alert first.
    log_in(page, live_server, "alice")
    expect(page.locator('tr[data-mrn="PAGET-1100"] [data-code="extreme-alp"]')).not_to_have_count(0)
    page.goto(patient_url)
    expect(page.locator('#recommendations [data-code="extreme-alp"]')).to_have_count(1)

    # The editor starts a draft and raises the threshold.
    _switch_user(page, live_server, "rui")
    page.goto(f"{live_server.url}/admin/pathways/ruleset/")
    page.get_by_role("button", name="Start a draft from the version in force").click()
    expect(page.locator(".messagelist")).to_contain_text("started from")
    draft = RuleSet.objects.get(status=RuleSet.Status.DRAFT)
    page.locator("#content").get_by_role("link", name="Parameters", exact=True).click()
    page.locator("#content").get_by_role("link", name="extreme_alp", exact=True).click()
    page.get_by_label("Value (U/L)").fill("1200")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")

    # Its examples now fail, and say why; the editor moves them to the new boundary.
    page.goto(f"{live_server.url}/admin/pathways/ruleset/{draft.pk}/change/")
    expect(page.locator("#check-status")).to_contain_text("cannot be published yet")
    expect(page.get_by_text("must fire, did not fire").first).to_be_visible()
    page.locator("#content").get_by_role("link", name="Rules", exact=True).click()
    page.locator("#content").get_by_role("link", name="extreme-alp", exact=True).click()
    expect(page.locator("#example-outcomes .tuning-fail")).not_to_have_count(0)
    cases = page.locator("textarea[name$='-case']:not([name*='__prefix__'])")
    examples = cases.count()
    for index in range(examples):
        textarea = cases.nth(index)
        textarea.fill(json.dumps(_moved_example(json.loads(textarea.input_value()))))
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator("#example-outcomes .tuning-fail")).to_have_count(0)
    expect(page.locator("#example-outcomes .tuning-pass")).to_have_count(examples)

    # The impact preview: the alert disappears for this patient.
    page.goto(f"{live_server.url}/admin/pathways/ruleset/{draft.pk}/change/")
    expect(page.locator("#check-status")).to_contain_text("examples pass")
    page.locator("#content").get_by_role("link", name="Impact preview").click()
    page.get_by_role("button", name="Run the impact preview").click()  # a background task
    expect(page.locator('#preview-rules tr[data-code="extreme-alp"] .tuning-removed')).to_have_text(
        "1"
    )
    expect(page.locator("#preview-patients")).to_contain_text("Edith Moss")
    expect(page.locator("#preview-patients")).to_contain_text("\N{MINUS SIGN} extreme-alp")
    # The editor may not publish.
    expect(page.get_by_role("link", name="Publish…")).to_have_count(0)

    # A second user, the publisher, publishes it with a note.
    _switch_user(page, live_server, "pat")
    page.goto(f"{live_server.url}/admin/pathways/ruleset/{draft.pk}/publish/")
    expect(page.locator("#four-eyes")).to_have_count(0)
    page.get_by_label("Change note").fill("Raise the extreme-ALP alert to 1200 U/L")
    page.get_by_role("button", name=f"Publish {draft.label}").click()
    expect(page.locator(".messagelist")).to_contain_text("published and in force")
    expect(page.locator("#reassessments .run-status").first).to_have_text("finished")
    draft.refresh_from_db()
    assert draft.is_current and draft.version

    # The clinician's dashboard and patient page change, and name the new version.
    _switch_user(page, live_server, "alice")
    row = page.locator('tr[data-mrn="PAGET-1100"]').first
    expect(row).to_be_visible()
    expect(page.locator('tr[data-mrn="PAGET-1100"] [data-code="extreme-alp"]')).to_have_count(0)
    page.goto(patient_url)
    expect(page.locator('#recommendations [data-code="extreme-alp"]')).to_have_count(0)
    expect(page.locator("#recommendations")).to_contain_text(f"Rule set {draft.version}")

    # The publisher rolls back to the shipped version.
    _switch_user(page, live_server, "pat")
    page.goto(f"{live_server.url}/admin/pathways/ruleset/{original.pk}/change/")
    page.locator("#content").get_by_role("link", name="Re-publish (rollback)…").click()
    page.get_by_label("Change note").fill("Roll back: alerts were missed")
    page.get_by_role("button", name=f"Re-publish {original.label}").click()
    expect(page.locator(".messagelist")).to_contain_text("re-published (rollback)")

    _switch_user(page, live_server, "alice")
    expect(page.locator('tr[data-mrn="PAGET-1100"] [data-code="extreme-alp"]')).not_to_have_count(0)
    page.goto(patient_url)
    expect(page.locator('#recommendations [data-code="extreme-alp"]')).to_have_count(1)
    expect(page.locator("#recommendations")).to_contain_text(f"Rule set {original.label}")
    assert console_errors == []
