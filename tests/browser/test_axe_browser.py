"""axe-core (axe-playwright-python) over the clinician screens and a rule page in the admin:
no serious or critical accessibility violation. Slow, so it runs once, in the PostgreSQL run."""

from __future__ import annotations

from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.contrib.auth.models import User
from django.db import connection
from playwright.sync_api import expect

from pathways import feed
from pathways.feed_models import Hl7Feed, Hl7Result
from pathways.models import Rule, RuleSet
from tests.browser.conftest import log_in
from tests.browser.test_clinician_flow import ensure_published_rule_set
from tests.conftest import rule_editor
from tests.factories import myeloma_on_zoledronic_acid_14_months_document, stored_patient
from tests.test_hl7_feed import oru

BLOCKING = {"serious", "critical"}


def blocking_violations(page: Any) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now, one line each."""
    results = Axe().run(page)
    return [
        f"{violation['id']} ({violation['impact']}): {violation['help']} at "
        + ", ".join(str(node["target"]) for node in violation["nodes"][:3])
        for violation in results.response["violations"]
        if violation["impact"] in BLOCKING
    ]


@pytest.fixture
def patient(smoke_user: Any) -> Any:
    if connection.vendor != "postgresql":
        pytest.skip("axe is slow: it runs once, in the PostgreSQL run of the suite")
    ensure_published_rule_set()
    clinic = smoke_user.memberships.get().clinic
    return stored_patient(
        clinic, smoke_user, myeloma_on_zoledronic_acid_14_months_document(), mrn="MM-AXE"
    )


def test_the_clinician_screens_have_no_serious_violation(
    page: Any, live_server: Any, patient: Any
) -> None:
    # No console_errors fixture here: axe itself re-parses the stylesheets in inline <style>
    # elements, which the CSP rightly refuses; the other browser tests assert a clean console.
    # The lab inbox with a parked result (its match and dismissal forms) and a dismissed one.
    Hl7Feed.objects.create(
        sending_facility="NORTHLAB",
        clinic=patient.clinic,
        service_user=User.objects.create_user("axe-lab-feed"),
    )
    feed.receive(oru("AXE-1", mrn="TEMP-AXE"), via="test")
    feed.receive(oru("AXE-2", mrn="VISITOR-AXE"), via="test")
    visitor = Hl7Result.objects.get(mrn="VISITOR-AXE")
    feed.inbox_dismiss(visitor, user=patient.clinic.memberships.first().user, note="Not ours")
    log_in(page, live_server, "alice")
    found: dict[str, list[str]] = {}
    for path in (
        "/",
        "/patients/",
        f"/patients/{patient.pk}/",
        "/patients/new/",
        "/lab-feed/inbox/",
    ):
        page.goto(f"{live_server.url}{path}")
        found[path] = blocking_violations(page)
    # Case entry with its errors showing: a result dated after today, refused on saving.
    page.goto(f"{live_server.url}/patients/new/")
    page.get_by_label("Birth date").fill("1952-04-11")
    page.locator('[name="labs-0-value"]').fill("412")
    page.locator('[name="labs-0-collected_on"]').fill("2199-01-01")
    page.locator('[name="labs-0-value"]').press("Enter")
    expect(page.locator("#error-summary")).to_be_visible()
    found["case entry with errors"] = blocking_violations(page)
    # At a phone's width: the worklist, the patient list and the results as cards, the narrow
    # charts.
    page.set_viewport_size({"width": 390, "height": 844})
    for path in ("/", "/patients/", f"/patients/{patient.pk}/"):
        page.goto(f"{live_server.url}{path}")
        found[f"{path} at 390 px"] = blocking_violations(page)
    assert found == {path: [] for path in found}


def test_a_rule_page_in_the_admin_has_no_serious_violation(
    page: Any, live_server: Any, patient: Any
) -> None:
    clinic = patient.clinic
    rule_editor("axel", clinic=clinic)
    rule = Rule.objects.filter(rule_set=RuleSet.objects.get(is_current=True)).first()
    assert rule is not None
    log_in(page, live_server, "axel")
    page.goto(f"{live_server.url}/admin/pathways/rule/{rule.pk}/change/")
    expect(page.locator("#content")).to_be_visible()
    assert blocking_violations(page) == []
    # The check itself finds a violation: an image without a text alternative.
    page.evaluate("document.querySelector('#content').append(document.createElement('img'))")
    assert any(line.startswith("image-alt") for line in blocking_violations(page))
