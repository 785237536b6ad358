"""Deployment settings, found wanting by an audit: headers on every response (static files too),
probes with the database down, `make run HOST=…`, the secret key and yes/no switches."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parents[1]
GOOD_KEY = "x7!" + "k" * 20 + "Qz9#" + "m" * 30 + "p2&w"


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "ALPCARE_")) and k != "DATABASE_URL"
    }
    clean["DJANGO_SETTINGS_MODULE"] = "alpcare.settings"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


_CLIENT = """
import django, sys
django.setup()
from django.test.utils import setup_test_environment
setup_test_environment()
from django.test import Client
response = Client(raise_request_exception=False).get({url!r}, HTTP_HOST={host!r})
print(f"{{response.status_code}}|{{response.get('Content-Type', '')}}")
"""

_SETTING = """
import django
django.setup()
from django.conf import settings
print({expression})
"""


# -- Security headers on every response: static files ----------------------------------------


def test_static_files_carry_the_content_security_policy(settings: Any) -> None:
    """WhiteNoiseMiddleware answers /static/ itself and sits outside XFrameOptionsMiddleware
    and CSPMiddleware (alpcare/settings.py MIDDLEWARE), so a static file (an SVG, which a
    browser runs as a document when opened directly) has neither header."""
    settings.WHITENOISE_USE_FINDERS = True
    settings.WHITENOISE_AUTOREFRESH = True
    response = Client().get("/static/alpcare/favicon.svg")
    assert response.status_code == 200
    assert "Content-Security-Policy" in response, dict(response.headers)
    assert response.get("X-Frame-Options") == "DENY", dict(response.headers)


# -- Health endpoints with the database down --------------------------------------------------


def test_queue_health_answers_503_not_a_500_page_when_the_database_is_unreachable(
    tmp_path: Path,
) -> None:
    """README: /healthz/queue answers 200 or 503 {"status": "degraded"}; with the database
    unreachable it crashes into Django's 500 HTML page (pathways/monitoring.py queue_health
    calls tasks.queue_health() unguarded)."""
    result = _python(
        _CLIENT.format(url="/healthz/queue", host="localhost"),
        {
            "DJANGO_DEBUG": "1",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'missing' / 'db.sqlite3'}",
        },
    )
    assert result.returncode == 0, result.stderr[-2000:]
    status, content_type = result.stdout.strip().splitlines()[-1].split("|")
    assert (status, content_type) == ("503", "application/json"), result.stdout


# -- make run HOST=... -------------------------------------------------------------------------


def test_make_run_on_another_address_serves_the_address_it_prints() -> None:
    """README: `make run HOST=0.0.0.0 PORT=8001` serves elsewhere (the printed address
    follows). The Makefile sets no DJANGO_ALLOWED_HOSTS and settings default it to
    127.0.0.1,localhost in debug, so every request to the printed http://0.0.0.0:8001/ (or to
    the machine's own address) is a 400 DisallowedHost."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make run HOST=0.0.0.0 PORT=8001" in readme
    result = _python(
        _CLIENT.format(url="/accounts/login/", host="0.0.0.0:8001"),
        {"DJANGO_DEBUG": "1", "ALPCARE_RUN_ADDR": "0.0.0.0:8001"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    status = result.stdout.strip().splitlines()[-1].split("|")[0]
    assert status == "200", result.stdout + result.stderr[-300:]


# -- SECRET_KEY --------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["   ", "changeme"])
def test_a_blank_or_trivial_secret_key_is_refused_outside_debug(key: str) -> None:
    """settings.py only checks `if not SECRET_KEY`: a key of spaces or a placeholder starts a
    production process (Django's W009 is only a warning of `check --deploy`, which gunicorn
    never runs)."""
    result = _python(
        _SETTING.format(expression="repr(settings.SECRET_KEY)"),
        {"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": key, "DJANGO_ALLOWED_HOSTS": "a.example"},
    )
    assert result.returncode != 0, f"started with SECRET_KEY={result.stdout.strip()}"


# -- Boolean switches that default to on --------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "expression"),
    [
        ("DJANGO_HTTPS", "enabled", "settings.SESSION_COOKIE_SECURE"),
        ("ALPCARE_REQUIRE_STAFF_2FA", "required", "settings.ALPCARE_REQUIRE_STAFF_2FA"),
        ("DJANGO_SECURE_SSL_REDIRECT", "always", "settings.SECURE_SSL_REDIRECT"),
    ],
)
def test_an_unrecognised_value_never_silently_switches_a_safeguard_off(
    variable: str, value: str, expression: str
) -> None:
    """envbool() reads anything outside {1,true,yes,on} as False, whatever the default: a
    value meant as "on" turns secure cookies, HSTS, the HTTPS redirect or staff 2FA off in
    production without a word. It should refuse to start (or keep the safe default)."""
    result = _python(
        _SETTING.format(expression=expression),
        {
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": GOOD_KEY,
            "DJANGO_ALLOWED_HOSTS": "a.example",
            variable: value,
        },
    )
    assert result.returncode != 0 or result.stdout.strip() == "True", (
        f"{variable}={value} read as {result.stdout.strip()}"
    )
