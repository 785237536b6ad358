"""Rule tuning end to end: an editor raises the extreme-ALP threshold in a draft and sees where
patients lie, submits it for review, a publisher returns it and later approves and publishes it,
the clinician is told with their own counts, it is rolled back, and the analytics page shows
the rule's override rate once a clinician overrides its card."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from pathways import rules
from pathways.models import AssessmentSnapshot, Parameter, Rule, RuleExample, RuleSet
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


def _assert_apart(page: Any, first: str, second: str) -> None:
    """The two elements do not lie over each other on the page."""
    a, b = page.locator(first).bounding_box(), page.locator(second).bounding_box()
    assert a is not None and b is not None
    overlap_x = a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
    overlap_y = a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"]
    assert not (overlap_x and overlap_y), (first, a, second, b)


def _moved_labs(text: str) -> str:
    """The extreme-alp boundary examples' lab lines, moved from 1000 U/L to 1200 U/L."""
    lines = []
    for line in text.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if parts[0] == "alp" and parts[2] == "ukat/L":
            parts[1] = "20.01"  # 1200.6 U/L
        elif parts[0] == "alp" and float(parts[1]) >= 1000:
            parts[1] = f"{float(parts[1]) + 200:g}"
        lines.append(", ".join(parts))
    return "\n".join(lines)


def test_an_editor_tunes_the_extreme_alp_threshold_through_review_and_clinicians_are_told(
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

    # The editor starts a draft and raises the threshold (the parameter by its label).
    _switch_user(page, live_server, "rui")
    # The rule list at 1440 px shows every column beside the admin's menu and filters (the last
    # clinical review was scrolled out of sight).
    viewport = page.viewport_size
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server.url}/admin/pathways/rule/")
    results = page.locator("#changelist .results")
    expect(results.locator("td.field-last_review").first).to_be_visible()
    assert results.evaluate("r => r.scrollWidth <= r.clientWidth"), results.evaluate(
        "r => [r.scrollWidth, r.clientWidth]"
    )
    page.set_viewport_size(viewport)
    page.goto(f"{live_server.url}/admin/pathways/ruleset/")
    page.get_by_role("button", name="Start a draft from the version in force").click()
    expect(page.locator(".messagelist")).to_contain_text("started from")
    draft = RuleSet.objects.get(status=RuleSet.Status.DRAFT)
    page.locator("#content").get_by_role("link", name="Parameters", exact=True).click()
    page.locator("#result_list").get_by_role("link", name="Extreme ALP").click()
    page.get_by_label("Extreme ALP (U/L)").fill("1200")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")

    # Its examples now fail, and say why; the editor moves them in the structured case form.
    page.goto(f"{live_server.url}/admin/pathways/ruleset/{draft.pk}/change/")
    expect(page.locator("#check-status")).to_contain_text("cannot be published yet")
    expect(page.get_by_text("must fire, did not fire").first).to_be_visible()
    examples = list(
        RuleExample.objects.filter(rule_set=draft, rule__code="extreme-alp").order_by("pk")
    )
    for example in examples:
        page.goto(f"{live_server.url}/admin/pathways/ruleexample/{example.pk}/change/")
        labs = page.get_by_role("textbox", name="Lab results")
        labs.fill(_moved_labs(labs.input_value()))
        page.get_by_role("button", name="Save", exact=True).click()
        expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    rule = Rule.objects.get(rule_set=draft, code="extreme-alp")
    page.goto(f"{live_server.url}/admin/pathways/rule/{rule.pk}/change/")
    expect(page.locator("#example-outcomes .tuning-fail")).to_have_count(0)
    expect(page.locator("#example-outcomes .tuning-pass")).to_have_count(len(examples))

    # The impact preview: where the editor's patients lie, and the alert lost by this patient.
    page.goto(f"{live_server.url}/admin/pathways/ruleset/{draft.pk}/change/")
    expect(page.locator("#check-status")).to_contain_text("examples pass")
    page.locator("#content").get_by_role("link", name="Impact preview").click()
    page.get_by_role("button", name="Run the impact preview").click()  # a background task
    chart = page.locator('[data-parameter="extreme_alp"]')
    expect(chart.locator("svg .histogram-bar")).not_to_have_count(0)
    expect(chart.locator("svg .threshold-new")).to_have_count(1)
    expect(chart.locator(".nearest-patients")).to_contain_text("PAGET-1100")
    expect(page.locator('#preview-rules tr[data-code="extreme-alp"] .tuning-removed')).to_have_text(
        "1"
    )
    expect(page.locator("#preview-patients")).to_contain_text("Edith Moss")

    # The editor submits it for review, with the rationale (the admin's Changes / Diff /
    # History buttons lay over this box until they were kept below the panel).
    page.goto(f"{live_server.url}/admin/pathways/ruleset/{draft.pk}/change/")
    _assert_apart(page, "#content-main > .object-tools", "#submit-form")
    page.get_by_label("Rationale (why this change is needed)").fill(
        "Fewer false extreme-ALP alerts"
    )
    page.get_by_role("button", name="Submit for review").click()
    expect(page.locator(".messagelist")).to_contain_text("submitted for review")

    # The publisher returns it with a comment.
    _switch_user(page, live_server, "pat")
    page.goto(f"{live_server.url}/admin/pathways/ruleset/{draft.pk}/change/")
    _assert_apart(page, "#content-main > .object-tools", "#return-form")
    page.get_by_label("Comments for the editors").fill("Cite the source in the description")
    page.get_by_role("button", name="Return to draft").click()
    expect(page.locator(".messagelist")).to_contain_text("returned to draft")

    # The editor reads the comment, changes the draft and submits it again.
    _switch_user(page, live_server, "rui")
    page.goto(f"{live_server.url}/admin/pathways/ruleset/{draft.pk}/change/")
    expect(page.locator("#review-comments")).to_contain_text("Cite the source")
    parameter = Parameter.objects.get(rule_set=draft, name="extreme_alp")
    page.goto(f"{live_server.url}/admin/pathways/parameter/{parameter.pk}/change/")
    description = page.get_by_label("Description")
    description.fill(description.input_value() + " Raised to 1200 U/L after local review.")
    page.get_by_role("button", name="Save", exact=True).click()
    page.goto(f"{live_server.url}/admin/pathways/ruleset/{draft.pk}/change/")
    page.get_by_role("button", name="Submit for review").click()
    expect(page.locator(".messagelist")).to_contain_text("submitted for review")
    expect(page.get_by_role("link", name="Approve and publish…")).to_have_count(0)

    # The publisher, who changed nothing, approves and publishes it.
    _switch_user(page, live_server, "pat")
    page.goto(f"{live_server.url}/admin/pathways/ruleset/{draft.pk}/publish/")
    expect(page.locator("#four-eyes")).to_have_count(0)
    expect(page.locator("#rationale")).to_contain_text("Fewer false extreme-ALP alerts")
    page.get_by_label("Approval note").fill("Reviewed against the local audit")
    page.get_by_role("button", name=f"Publish {draft.label}").click()
    expect(page.locator(".messagelist")).to_contain_text("published and in force")
    expect(page.locator("#reassessments .run-status").first).to_have_text("finished")
    expect(page.locator("#review-history")).to_contain_text("Returned to draft")
    draft.refresh_from_db()
    assert draft.is_current and draft.version

    # The clinician is told, with their own patients' counts, and can read what changed.
    _switch_user(page, live_server, "alice")
    notice = page.locator("#publication-notice")
    expect(notice).to_contain_text(draft.version)
    expect(notice).to_contain_text("Fewer false extreme-ALP alerts")
    expect(notice.locator('[data-code="extreme-alp"]')).to_contain_text("1 patient(s) lost it")
    notice.get_by_role("link", name="What changed").click()
    change = page.locator('.rule-change[data-code="extreme-alp"] .threshold')
    expect(change).to_contain_text("1000 U/L")
    expect(change).to_contain_text("1200 U/L")
    page.goto(f"{live_server.url}/")
    page.locator("#publication-notice").get_by_role("button", name="Dismiss").click()
    expect(page.locator("#publication-notice")).to_have_count(0)

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
    page.get_by_label("Approval note").fill("Roll back: alerts were missed")
    page.get_by_role("button", name=f"Re-publish {original.label}").click()
    expect(page.locator(".messagelist")).to_contain_text("re-published (rollback)")

    _switch_user(page, live_server, "alice")
    expect(page.locator('tr[data-mrn="PAGET-1100"] [data-code="extreme-alp"]')).not_to_have_count(0)
    page.goto(patient_url)
    expect(page.locator('#recommendations [data-code="extreme-alp"]')).to_have_count(1)
    expect(page.locator("#recommendations")).to_contain_text(f"Rule set {original.label}")

    # The clinician overrides the card with a coded reason ...
    card = page.locator('#recommendations [data-code="extreme-alp"]')
    card.locator("summary", has_text="Override or snooze").click()
    card.get_by_label("Override reason").select_option("patient-declined")
    card.get_by_role("button", name="Override").click()
    expect(
        page.locator('#recommendations [data-code="extreme-alp"] .card-action-state')
    ).to_contain_text("Overridden: Patient declined")

    # ... and the clinical lead sees how the rule is received: overridden for 1 of 1 patient.
    _switch_user(page, live_server, "pat")
    page.goto(f"{live_server.url}/admin/rule-analytics/")
    row = page.locator('#rule-analytics tr[data-rule="extreme-alp"]')
    expect(row.locator(".override-share")).to_have_text("100 %")
    expect(row).to_contain_text("Patient declined: 1")
    assert console_errors == []
