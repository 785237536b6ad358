"""The API's pages in Chromium: the Swagger UI renders every operation under the CSP, and a
clinician creates an API token from the navigation."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from tests.browser.conftest import log_in
from tests.browser.test_clinician_flow import ensure_published_rule_set
from tests.factories import paget_on_alendronate_document


def test_the_api_docs_show_every_operation_under_the_csp(
    page: Any, live_server: Any, smoke_user: Any, console_errors: list[str]
) -> None:
    log_in(page, live_server, "alice")
    response = page.goto(f"{live_server.url}/api/docs")
    assert response is not None and response.ok
    assert "unsafe-inline" not in (response.headers.get("content-security-policy") or "")
    page.wait_for_selector(".opblock-summary-path", timeout=15000)
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert sorted(path.replace("\u200b", "") for path in paths) == [
        "/api/v1/assess",
        "/api/v1/fhir",
        "/api/v1/fhir/Patient/{pk}",
        "/api/v1/fhir/Patient/{pk}/$everything",
        "/api/v1/hl7",
        "/api/v1/patients/{pk}/assessment",
        "/api/v1/patients/{pk}/case",
    ]
    assert page.get_by_role("button", name="Authorize").is_visible()
    # Schemas render too: an unresolved reference would show a resolver error here.
    assert page.locator(".errors-wrapper").count() == 0
    assert console_errors == []


def test_a_clinician_creates_a_token_from_the_navigation_and_it_works(
    page: Any, live_server: Any, smoke_user: Any, console_errors: list[str]
) -> None:
    ensure_published_rule_set()
    log_in(page, live_server, "alice")
    page.get_by_role("link", name="API tokens").click()
    page.get_by_label("Name").fill("EHR integration")
    page.get_by_label("assess: assess case documents").check()
    page.get_by_role("button", name="Create token").click()
    key = page.get_by_label("Key").input_value()
    assert key.startswith("alp_")
    request = urllib.request.Request(
        f"{live_server.url}/api/v1/assess",
        data=json.dumps(paget_on_alendronate_document()).encode(),
        headers={"Authorization": f"Token {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200
        assert json.load(answer)["pathway"] == "bone"
    page.get_by_role("button", name="Revoke EHR integration").click()
    assert page.get_by_role("cell", name="revoked").is_visible()
    assert console_errors == []
