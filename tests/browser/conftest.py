"""Browser tests: pytest-playwright driving Debian's chromium against the live server."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

# Playwright's sync API runs an event loop in this thread; the ORM calls in the tests are
# ordinary synchronous calls, not made from async code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("ALPCARE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
PASSWORD = "correct horse battery staple"


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    for item in items:
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)
    if shutil.which(CHROMIUM) or os.path.exists(CHROMIUM):
        return
    if os.environ.get("ALPCARE_REQUIRE_BROWSER") == "1":
        raise pytest.UsageError(f"ALPCARE_REQUIRE_BROWSER=1 but {CHROMIUM} is missing")
    skip = pytest.mark.skip(reason=f"{CHROMIUM} not installed (apt-get install -y chromium)")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


# Every page reports its Content-Security-Policy violations (securitypolicyviolation events,
# in-page updates included) to the test, whatever the browser prints on its console.
CSP_REPORTER = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.__alpcareCspViolation(
    `${event.violatedDirective} blocked ${event.blockedURI || "inline"}` +
      ` at ${event.sourceFile}:${event.lineNumber}`
  );
});
"""


@pytest.fixture
def console_errors(page: Any) -> Iterator[list[str]]:
    """Collects console errors and CSP violations; tests assert it stays empty, and the fixture
    itself asserts that no page raised a securitypolicyviolation event."""
    errors: list[str] = []
    violations: list[str] = []

    def violation(_source: Any, text: str) -> None:
        violations.append(text)
        errors.append(f"CSP violation: {text}")

    page.expose_binding("__alpcareCspViolation", violation)
    page.add_init_script(CSP_REPORTER)
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield errors
    assert violations == [], f"Content-Security-Policy violations: {violations}"


def log_in(page: Any, live_server: Any, username: str, password: str = PASSWORD) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/")


@pytest.fixture
def smoke_user(transactional_db: Any) -> Any:
    from django.contrib.auth.models import User

    from pathways.models import Clinic, Membership

    clinic = Clinic.objects.create(name="North Haematology", slug="north")
    user = User.objects.create_user("alice", password=PASSWORD)
    Membership.objects.create(user=user, clinic=clinic)
    return user
