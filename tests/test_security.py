"""Secure-by-default settings, session lifetime, login throttling and response headers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from tests.factories import form_data, paget_on_alendronate_document, stored_patient

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery staple"


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_production_settings() -> None:
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "x7!" + "k" * 20 + "Qz9#" + "m" * 30 + "p2&w",
            "DJANGO_ALLOWED_HOSTS": "alpcare.example.org",
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_it_refuses_to_start_without_a_secret_key_outside_debug() -> None:
    result = _manage("check", env={"DJANGO_DEBUG": "0"})
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


@pytest.mark.django_db
def test_pages_carry_csp_without_unsafe_inline_and_deny_framing(alice_client: Any) -> None:
    response = alice_client.get("/patients/")
    csp = response["Content-Security-Policy"]
    assert "script-src 'self' 'nonce-" in csp
    assert "unsafe-inline" not in csp
    assert response["X-Frame-Options"] == "DENY"
    assert "no-store" in response["Cache-Control"]
    nonce = csp.split("'nonce-")[1].split("'")[0]
    assert f'nonce="{nonce}"' in response.content.decode()


@pytest.mark.django_db
def test_patient_pages_are_not_cached(alice_client: Any, alice: Any, north_clinic: Any) -> None:
    patient = stored_patient(north_clinic, alice)
    response = alice_client.get(f"/patients/{patient.pk}/")
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]


@pytest.mark.django_db
def test_it_locks_out_after_repeated_failures_without_leaking(client: Any, alice: Any) -> None:
    from django.conf import settings

    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
        assert response.status_code == 200
        assert "Please enter a correct username and password" in response.content.decode()
    assert (
        client.post("/accounts/login/", {"username": "alice", "password": "wrong"}).status_code
        == 429
    )
    # Now even the right password is refused until the cool-off ends.
    locked = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert locked.status_code == 429
    assert "Too many failed log-in attempts" in locked.content.decode()
    assert "_auth_user_id" not in client.session
    # An unknown username is locked out the same way: the response does not confirm accounts.
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        client.post("/accounts/login/", {"username": "nobody", "password": "wrong"})
    ghost = client.post("/accounts/login/", {"username": "nobody", "password": "wrong"})
    assert ghost.status_code == 429
    assert _without_tokens(ghost.content) == _without_tokens(locked.content)


def _without_tokens(content: bytes) -> str:
    # The CSP nonce and CSRF token differ per response; everything else must be identical.
    return re.sub(r'(nonce="|"x-csrftoken": ")[^"]+', r"\1", content.decode())


@pytest.mark.django_db
def test_login_rotates_the_session_key_and_logout_ends_it(client: Any, alice: Any) -> None:
    client.get("/accounts/login/")
    session = client.session
    session["probe"] = 1
    session.save()
    before = session.session_key
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    after = client.session.session_key
    assert after != before
    assert Session.objects.filter(session_key=after).exists()
    client.post("/accounts/logout/")
    assert not Session.objects.filter(session_key=after).exists()
    assert client.get("/patients/").status_code == 302


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("idle", "since_login", "still_in"),
    [
        (timedelta(minutes=29), timedelta(hours=1), True),
        (timedelta(minutes=31), timedelta(hours=1), False),
        (timedelta(minutes=1), timedelta(hours=11, minutes=59), True),
        (timedelta(minutes=1), timedelta(hours=12, minutes=1), False),
    ],
)
def test_sessions_end_after_30_minutes_idle_or_12_hours(
    alice_client: Any, idle: timedelta, since_login: timedelta, still_in: bool
) -> None:
    assert alice_client.get("/patients/").status_code == 200
    session = alice_client.session
    now = timezone.now()
    session["alpcare_seen_at"] = (now - idle).isoformat()
    session["alpcare_login_at"] = (now - since_login).isoformat()
    session.save()
    response = alice_client.get("/patients/")
    assert (response.status_code == 200) is still_in
    if not still_in:
        assert response["Location"].startswith("/accounts/login/")


@pytest.mark.django_db
def test_a_request_saves_the_session_only_when_its_last_seen_time_is_a_minute_old(
    alice_client: Any,
) -> None:
    """Each live update of the case-entry form wrote the session row (an UPDATE and a commit,
    on SQLite the database's write lock) to move the last-seen time on by a few seconds."""
    from django.contrib.sessions.models import Session
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def session_writes(path: str) -> int:
        with CaptureQueriesContext(connection) as queries:
            assert alice_client.get(path).status_code == 200
        return sum('UPDATE "django_session"' in q["sql"] for q in queries.captured_queries)

    session_writes("/patients/")
    assert session_writes("/patients/") == 0
    assert session_writes("/") == 0
    key = alice_client.session.session_key
    seen = timezone.now() - timedelta(seconds=61)
    session = alice_client.session
    session["alpcare_seen_at"] = seen.isoformat()
    session.save()
    assert session_writes("/patients/") == 1
    stored = Session.objects.get(session_key=key).get_decoded()
    assert datetime.fromisoformat(stored["alpcare_seen_at"]) > seen + timedelta(seconds=60)
    # An unreadable stored time is written afresh, not kept.
    session = alice_client.session
    session["alpcare_seen_at"] = "not a time"
    session.save()
    assert session_writes("/patients/") == 1


@pytest.mark.django_db
def test_an_htmx_update_after_the_session_ended_sends_the_browser_to_log_in(
    alice_client: Any,
) -> None:
    """htmx followed the login redirect itself and swapped the login page into the panel it was
    updating; now the whole browser goes, and comes back to the page it was on."""
    client = Client()  # not logged in
    htmx = {"HX-Request": "true", "HX-Current-URL": "http://testserver/patients/new/?from=list"}
    response = client.post("/case/preview/", "{}", content_type="application/json", headers=htmx)
    assert response.status_code == 200
    assert response["HX-Redirect"] == "/accounts/login/?next=%2Fpatients%2Fnew%2F%3Ffrom%3Dlist"
    # Without htmx, the redirect as before.
    response = client.post("/case/preview/", "{}", content_type="application/json")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/case/preview/"
    # A session that ended while the page was open (idle too long): the same.
    assert alice_client.get("/").status_code == 200
    session = alice_client.session
    session["alpcare_seen_at"] = (timezone.now() - timedelta(hours=1)).isoformat()
    session.save()
    htmx["HX-Current-URL"] = "http://testserver/?status=overdue"
    response = alice_client.get("/?status=overdue&q=MM", headers=htmx)
    assert response["HX-Redirect"] == "/accounts/login/?next=%2F%3Fstatus%3Doverdue"
    # A page on another site is not used as "next".
    elsewhere = {**htmx, "HX-Current-URL": "https://evil.test/patients/"}
    response = client.get("/patients/?q=1", headers=elsewhere)
    assert response["HX-Redirect"] == "/accounts/login/?next=%2Fpatients%2F%3Fq%3D1"


@pytest.mark.django_db
def test_admin_pages_name_the_site_icon(client: Any) -> None:
    # Otherwise browsers request /favicon.ico, a 404 logged as a console error.
    page = client.get("/admin/login/").content.decode()
    assert 'rel="icon"' in page and "alpcare/favicon.svg" in page


# --- Responses built by an outer layer, and what an unreadable post echoes (a defect hunt) ---

_HTMX_ON_PAGE = {"HX-Request": "true", "HX-Current-URL": "http://testserver/patients/"}


def _has_the_security_headers(response: Any) -> None:
    assert "Content-Security-Policy" in response, dict(response.headers)
    assert response.get("X-Frame-Options") == "DENY", dict(response.headers)
    assert "no-store" in response.get("Cache-Control", ""), dict(response.headers)


@pytest.mark.django_db
def test_responses_built_outside_the_header_layers_carry_the_security_headers(
    alice_client: Any,
) -> None:
    """The htmx whole-page redirect, the end of a session and the trailing-slash redirect are
    built by layers that sat outside CSP, X-Frame-Options and no-store: they had none."""
    htmx = alice_client.get("/api/docs", headers=_HTMX_ON_PAGE)
    assert htmx.status_code == 200 and htmx["HX-Redirect"] == "/api/v1/docs"
    _has_the_security_headers(htmx)
    slash = alice_client.get("/patients")
    assert (slash.status_code, slash["Location"]) == (301, "/patients/")
    _has_the_security_headers(slash)
    session = alice_client.session
    session["alpcare_seen_at"] = (timezone.now() - timedelta(hours=1)).isoformat()
    session.save()
    ended = alice_client.get("/patients/")
    assert ended.status_code == 302 and ended["Location"].startswith("/accounts/login/")
    _has_the_security_headers(ended)


@pytest.mark.django_db
def test_the_api_answer_to_an_ended_session_is_not_cached(alice_client: Any) -> None:
    session = alice_client.session
    session["alpcare_seen_at"] = (timezone.now() - timedelta(hours=1)).isoformat()
    session.save()
    response = alice_client.get("/api/v1/patients/1/case")
    assert response.status_code == 401
    assert "no-store" in response["Cache-Control"]
    assert response["WWW-Authenticate"].startswith("Token ")  # RFC 9110: a 401's challenge


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "body", "content_type"),
    [
        ("/case/preview/", '{"<img src=x onerror=alert(1)>": 1}', "application/json"),
        ("/patients/new/", "labs-TOTAL_FORMS=%3Cimg+src%3Dx+onerror%3Dalert(1)%3E",
         "application/x-www-form-urlencoded"),
        ("/case/rows/lab/", "labs-TOTAL_FORMS=%3Cimg+src%3Dx+onerror%3Dalert(1)%3E",
         "application/x-www-form-urlencoded"),
    ],
)  # fmt: skip
def test_a_post_the_page_could_not_send_is_refused_in_plain_text(
    alice_client: Any, url: str, body: str, content_type: str
) -> None:
    """The refusal quotes what was posted (a field's name or value): it came back as HTML."""
    response = alice_client.post(url, body, content_type=content_type)
    assert response.status_code == 400
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert "<img src=x onerror=alert(1)>" in response.content.decode()  # quoted, as text


@pytest.mark.django_db
def test_an_mrn_with_a_line_break_is_refused_and_the_calendar_escapes_one_that_came_in(
    alice_client: Any, alice: Any, north_clinic: Any
) -> None:
    """A line break in the MRN made the follow-ups .ics a server error (icalendar refused the
    raw calendar name); typed, it could start a property of its own."""
    mrn = "M1\r\nATTENDEE:mailto:x@evil.example"
    page = alice_client.post("/patients/new/", form_data(paget_on_alendronate_document(), mrn=mrn))
    assert page.status_code == 400
    assert "No line breaks or other control characters." in page.content.decode()
    imported = stored_patient(north_clinic, alice, mrn=mrn)  # as a FHIR import could store it
    response = alice_client.get(f"/patients/{imported.pk}/follow-ups.ics")
    assert response.status_code == 200
    assert b"\r\nATTENDEE" not in response.content
    assert b"X-WR-CALNAME:alpcare follow-ups MRN M1\\nATTENDEE" in response.content


@pytest.mark.django_db
def test_a_confirmation_naming_the_patient_is_never_kept_in_a_cookie(alice_client: Any) -> None:
    """OWASP ASVS V8.2.2: no sensitive data in browser storage. "Saved <name> (MRN …)" went to
    Django's default message cookie (signed, not encrypted); it now stays in the session."""
    data = {**form_data(paget_on_alendronate_document(), mrn="MRN-COOKIE-77"), "name": "Mina Jar"}
    response = alice_client.post("/patients/new/", data)
    assert response.status_code == 302
    assert "messages" not in response.cookies
    shown = alice_client.get(response["Location"]).content.decode()
    assert "Saved Mina Jar (MRN MRN-COOKIE-77)." in shown


@pytest.mark.parametrize("at", ["2am", "25:00", "02:60"])
def test_a_daily_run_time_that_is_no_time_stops_the_start_not_every_scheduler_pass(
    at: str,
) -> None:
    """Read at each scheduler pass, a bad value failed every pass and no daily run was ever
    started. Found by an audit."""
    result = _manage("check", env={"DJANGO_DEBUG": "1", "ALPCARE_DAILY_REASSESS_AT": at})
    assert result.returncode != 0
    assert f"ALPCARE_DAILY_REASSESS_AT must be a local time HH:MM, not {at!r}" in result.stderr


def test_a_daily_run_time_with_seconds_is_read(settings: Any) -> None:
    from pathways import tasks

    settings.ALPCARE_DAILY_REASSESS_AT = "02:00:00"
    zone = timezone.get_current_timezone()
    assert tasks.daily_due(datetime(2026, 12, 1, 2, 0, tzinfo=zone))
    assert not tasks.daily_due(datetime(2026, 12, 1, 1, 59, tzinfo=zone))
