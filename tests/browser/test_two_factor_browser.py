from __future__ import annotations

from typing import Any

from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.browser.conftest import PASSWORD
from tests.conftest import rule_editor
from tests.test_two_factor import _code


def test_staff_set_up_two_factor_with_the_qr_page_then_open_the_admin(
    page: Any, live_server: Any, transactional_db: Any, settings: Any, console_errors: list[str]
) -> None:
    settings.ALPCARE_REQUIRE_STAFF_2FA = True
    rule_editor("rui")
    page.goto(f"{live_server.url}/admin/")
    page.get_by_label("Username").fill("rui")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("button", name="Set up two-factor log-in").click()
    qr = page.get_by_role("img", name="QR code for the otpauth link below")
    assert qr.is_visible()
    assert page.evaluate("(img) => img.naturalWidth", qr.element_handle()) > 0
    page.get_by_label("Code from your authenticator app").fill(
        _code(TOTPDevice.objects.get(user__username="rui"))
    )
    page.get_by_role("button", name="Turn two-factor on").click()
    assert page.locator("#recovery-codes li").count() == 10
    page.get_by_role("link", name="Continue").click()
    page.wait_for_url(f"{live_server.url}/admin/")
    assert page.get_by_role("heading", name="Site administration").is_visible()
    assert console_errors == []
