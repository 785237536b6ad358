from __future__ import annotations

from typing import Any

from tests.browser.conftest import log_in


def test_a_clinician_logs_in_and_lands_on_the_dashboard(
    page: Any, live_server: Any, smoke_user: Any, console_errors: list[str]
) -> None:
    log_in(page, live_server, "alice")
    assert page.get_by_role("button", name="Log out").is_visible()
    assert console_errors == []
