"""Log-in throttling per account and per address, the client address behind proxies, password
rules and the headers every response carries."""

from __future__ import annotations

import runpy
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery staple"
SPRAYED = ("Winter2026!", "Password123", "alpcare2026", "Welcome1!")


def _log_in(client: Any, username: str, password: str, **extra: Any) -> Any:
    return client.post("/accounts/login/", {"username": username, "password": password}, **extra)


def _spray(client: Any, usernames: list[str], **extra: Any) -> list[int]:
    """Four common passwords against each username, as a password-spraying attacker does."""
    return [
        _log_in(client, username, password, **extra).status_code
        for username in usernames
        for password in SPRAYED
    ]


@pytest.mark.django_db
def test_password_spraying_from_one_address_locks_that_address(
    client: Any, alice: User, settings: Any
) -> None:
    assert settings.ALPCARE_LOGIN_ADDRESS_FAILURE_LIMIT == 20
    # Four tries per username never reach the per-account limit of five...
    statuses = _spray(client, [f"staff{n}" for n in range(5)], REMOTE_ADDR="198.51.100.20")
    # ...but the twentieth failure from the address locks it.
    assert statuses[:19] == [200] * 19
    assert statuses[19] == 429
    # Every log-in from that address is refused now, even a right password.
    locked = _log_in(client, "alice", PASSWORD, REMOTE_ADDR="198.51.100.20")
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
    # The clinician logs in from her own computer as usual.
    assert _log_in(client, "alice", PASSWORD, REMOTE_ADDR="198.51.100.21").status_code == 302


@pytest.mark.django_db
def test_nobody_can_lock_a_named_clinician_out_from_elsewhere(client: Any, alice: User) -> None:
    for _ in range(5):
        _log_in(client, "alice", "wrong password", REMOTE_ADDR="203.0.113.66")
    assert _log_in(client, "alice", PASSWORD, REMOTE_ADDR="203.0.113.66").status_code == 429
    # The lockout is per (username, address): alice's own address still works.
    assert _log_in(client, "alice", PASSWORD, REMOTE_ADDR="192.0.2.10").status_code == 302


@pytest.mark.django_db
def test_behind_proxies_the_client_address_comes_from_x_forwarded_for(
    client: Any, alice: User, settings: Any
) -> None:
    settings.ALPCARE_PROXY_COUNT = 1  # one load balancer, at 10.0.0.1, appends the client
    statuses = _spray(
        client,
        [f"staff{n}" for n in range(5)],
        REMOTE_ADDR="10.0.0.1",
        HTTP_X_FORWARDED_FOR="203.0.113.7",
    )
    assert statuses[-1] == 429
    # A forged entry to the left of the balancer's does not get the attacker out.
    forged = _log_in(
        client,
        "staff9",
        "Winter2026!",
        REMOTE_ADDR="10.0.0.1",
        HTTP_X_FORWARDED_FOR="192.0.2.99, 203.0.113.7",
    )
    assert forged.status_code == 429
    # Another client behind the same balancer is not locked out.
    other = _log_in(
        client, "alice", PASSWORD, REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.9"
    )
    assert other.status_code == 302


@pytest.mark.django_db
def test_without_a_proxy_count_everyone_behind_the_balancer_shares_one_address(
    client: Any, alice: User, settings: Any
) -> None:
    # Why the README's load-balancer example sets ALPCARE_PROXY_COUNT: X-Forwarded-For is
    # not trusted (a client could forge it), so the balancer's address is every client's.
    settings.ALPCARE_PROXY_COUNT = 0
    _spray(
        client,
        [f"staff{n}" for n in range(5)],
        REMOTE_ADDR="10.0.0.1",
        HTTP_X_FORWARDED_FOR="203.0.113.7",
    )
    other = _log_in(
        client, "alice", PASSWORD, REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.9"
    )
    assert other.status_code == 429


@pytest.mark.django_db
def test_a_successful_log_in_does_not_clear_the_address_count(client: Any, alice: User) -> None:
    # A sprayer who owns one account cannot reset the address-wide count by logging in with it.
    _spray(client, [f"staff{n}" for n in range(4)], REMOTE_ADDR="198.51.100.30")  # 16 failures
    assert _log_in(client, "alice", PASSWORD, REMOTE_ADDR="198.51.100.30").status_code == 302
    client.post("/accounts/logout/", REMOTE_ADDR="198.51.100.30")
    statuses = _spray(client, ["staff9"], REMOTE_ADDR="198.51.100.30")
    assert statuses[-1] == 429


@pytest.mark.django_db
def test_passwords_need_twelve_characters_and_not_a_common_one(client: Any) -> None:
    admin = User.objects.create_superuser("root", password=PASSWORD)
    client.force_login(admin)

    def add_user(username: str, password: str) -> Any:
        return client.post(
            "/admin/auth/user/add/",
            {"username": username, "password1": password, "password2": password},
        )

    short = add_user("nurse1", "Qx7!mZp2#kL")  # 11 characters
    assert short.status_code == 200
    assert "at least 12 characters" in short.content.decode()
    common = add_user("nurse2", "password1234")
    assert common.status_code == 200
    assert "too common" in common.content.decode()
    assert not User.objects.filter(username__in=["nurse1", "nurse2"]).exists()
    assert add_user("nurse3", "Qx7!mZp2#kLw").status_code == 302
    assert User.objects.filter(username="nurse3").exists()


@pytest.mark.django_db
def test_the_demo_passwords_meet_the_password_rules() -> None:
    from pathways.demo import seed_demo

    for login in seed_demo(date(2026, 11, 22)):
        user = User.objects.get(username=login.username)
        validate_password(login.password, user)  # raises ValidationError if not
    with pytest.raises(ValidationError):
        validate_password("short")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path", ["/accounts/login/", "/patients/", "/no-such-page/", "/static/alpcare/favicon.svg"]
)
def test_every_response_switches_off_browser_features(client: Any, path: str) -> None:
    policy = client.get(path)["Permissions-Policy"]
    for feature in ("camera", "microphone", "geolocation", "payment", "usb"):
        assert f"{feature}=()" in policy


@pytest.mark.django_db
def test_pages_carry_no_server_banner_from_the_app(client: Any) -> None:
    assert "Server" not in client.get("/accounts/login/")


def test_gunicorn_sends_no_server_banner_with_the_projects_config() -> None:
    from gunicorn.http import wsgi

    original = wsgi.Response.default_headers
    try:
        runpy.run_path(str(ROOT / "gunicorn.conf.py"))

        class Request:
            version = (1, 1)
            method = "GET"

            def should_close(self) -> bool:
                return False

        response = wsgi.Response(Request(), sock=None, cfg=None)
        response.status = "200 OK"
        response.response_length = 0
        headers = response.default_headers()
        assert headers[0].startswith("HTTP/1.1 200")
        assert any(line.startswith("Date:") for line in headers)
        assert not any(line.lower().startswith("server:") for line in headers)
    finally:
        wsgi.Response.default_headers = original


@pytest.mark.parametrize(
    ("proxies", "forwarded", "address"),
    [
        (0, "203.0.113.7", "10.0.0.1"),  # no proxies trusted: the header is ignored
        (1, "203.0.113.7", "203.0.113.7"),
        (1, "192.0.2.99, 203.0.113.7", "203.0.113.7"),  # the client's own entry is not trusted
        (2, "192.0.2.99, 203.0.113.7, 10.0.0.2", "203.0.113.7"),
        (2, "203.0.113.7", "10.0.0.1"),  # fewer entries than proxies: not through them all
        (1, "", "10.0.0.1"),
    ],
)
def test_the_client_address_is_read_from_the_right_of_x_forwarded_for(
    settings: Any, proxies: int, forwarded: str, address: str
) -> None:
    from django.test import RequestFactory

    from pathways.login_throttle import client_address

    settings.ALPCARE_PROXY_COUNT = proxies
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=forwarded)
    assert client_address(request) == address
