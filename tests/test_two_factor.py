"""Two-factor log-in: required for staff (the admin refuses them without it), available to
clinicians, a code after the password, recovery codes that work once."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from pathways.twofactor import recovery_code_digest, recovery_codes_regenerate
from tests.conftest import rule_editor

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery staple"


@pytest.fixture
def staff_2fa_required(settings: Any) -> None:
    settings.ALPCARE_REQUIRE_STAFF_2FA = True


def _code(device: TOTPDevice, steps_ahead: int = 0) -> str:
    """What the user's authenticator app shows now (or ``steps_ahead`` 30-second steps on:
    a code is accepted once, and the next step's is within django-otp's tolerance)."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, 0)
    totp.time = time.time() + steps_ahead * device.step
    return f"{totp.token():0{device.digits}d}"


def _log_in(client: Any, username: str, next_url: str = "") -> Any:
    data = {"username": username, "password": PASSWORD}
    if next_url:
        data["next"] = next_url
    return client.post("/accounts/login/", data)


def _enrol(client: Any) -> tuple[TOTPDevice, list[str]]:
    """Set two-factor up through the pages: start, read the secret, confirm with a code."""
    assert client.post("/accounts/two-factor/setup/").status_code == 302
    page = client.get("/accounts/two-factor/").content.decode()
    assert 'src="data:image/svg+xml' in page  # the QR code
    assert "otpauth://totp/" in page
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page)
    assert secret is not None
    device = TOTPDevice.objects.get(confirmed=False)
    from base64 import b32decode

    assert b32decode(secret.group(1)) == device.bin_key
    code = _code(device)  # as the app shows it, "123 456"
    confirmed = client.post("/accounts/two-factor/confirm/", {"code": f"{code[:3]} {code[3:]}"})
    assert confirmed.status_code == 200
    codes = re.findall(r"<li>([a-z0-9]{8})</li>", confirmed.content.decode())
    assert len(codes) == 10
    device.refresh_from_db()
    assert device.confirmed
    return device, codes


@pytest.mark.django_db
def test_staff_without_two_factor_cannot_use_the_admin_when_required(
    client: Any, staff_2fa_required: None
) -> None:
    rule_editor("rui")
    response = _log_in(client, "rui", next_url="/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/two-factor/")
    for url in ("/admin/", "/admin/pathways/ruleset/", "/patients/"):
        refused = client.get(url)
        assert refused.status_code == 302, url
        assert refused["Location"].startswith("/accounts/two-factor/?next=")
    # The admin's own log-in form does not get round it.
    client.post("/accounts/logout/")
    client.post("/admin/login/", {"username": "rui", "password": PASSWORD, "next": "/admin/"})
    assert client.get("/admin/")["Location"].startswith("/accounts/two-factor/")
    page = client.get("/accounts/two-factor/").content.decode()
    assert "Staff accounts must use two-factor log-in" in page
    assert ">Patients</a>" not in page and ">Log out</button>" in page  # no menu until set up


@pytest.mark.django_db
def test_staff_enrol_then_log_in_with_a_code_and_use_the_admin(
    client: Any, staff_2fa_required: None
) -> None:
    rule_editor("rui")
    _log_in(client, "rui")
    device, _ = _enrol(client)
    assert client.get("/admin/").status_code == 200  # enrolling verified this session

    client.post("/accounts/logout/")
    response = _log_in(client, "rui", next_url="/admin/pathways/ruleset/")
    assert response["Location"] == "/accounts/login/code/?next=%2Fadmin%2Fpathways%2Fruleset%2F"
    assert client.get("/admin/")["Location"].startswith("/accounts/login/code/?next=")
    form = client.get(response["Location"]).content.decode()
    assert "Code from the app, or a recovery code" in form and 'name="otp_device"' not in form
    # Before the code, the menu and the user's name are not shown (each link led back here).
    assert ">Worklist</a>" not in form and ">Rules admin</a>" not in form
    assert 'title="Two-factor log-in"' not in form and ">Log out</button>" in form

    wrong = client.post(
        "/accounts/login/code/",
        {"otp_token": "000000", "next": "/admin/"},
    )
    assert wrong.status_code == 200
    assert client.get("/admin/").status_code == 302

    device.throttling_failure_count = 0  # the wrong code above throttles the next try 1 s
    device.save()
    right = client.post(
        "/accounts/login/code/",
        {"otp_token": _code(device, 1), "next": "/admin/"},
    )
    assert right.status_code == 302
    assert right["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    assert ">Worklist</a>" in client.get("/accounts/two-factor/").content.decode()


@pytest.mark.django_db
def test_a_recovery_code_works_once(client: Any, staff_2fa_required: None) -> None:
    rule_editor("rui")
    _log_in(client, "rui")
    _, codes = _enrol(client)
    recovery = StaticDevice.objects.get(user__username="rui")
    client.post("/accounts/logout/")

    _log_in(client, "rui")
    used = client.post(  # typed in capitals, as printed codes are often read back
        "/accounts/login/code/",
        {"otp_token": codes[0].upper(), "next": "/admin/"},
    )
    assert used.status_code == 302
    assert client.get("/admin/").status_code == 200
    client.post("/accounts/logout/")

    _log_in(client, "rui")
    again = client.post(
        "/accounts/login/code/",
        {"otp_token": codes[0], "next": "/admin/"},
    )
    assert again.status_code == 200
    assert client.get("/admin/").status_code == 302
    assert recovery.token_set.count() == 9


@pytest.mark.django_db
def test_the_code_typed_decides_between_the_authenticator_and_a_recovery_code(
    client: Any, staff_2fa_required: None
) -> None:
    """The form asked to choose "Authenticator app" or "A recovery code" first, defaulting to
    the app: a recovery code typed without changing the choice was "Invalid token", and
    counted as a failed authenticator code (django-otp then throttles the authenticator)."""
    rule_editor("rui")
    _log_in(client, "rui")
    device, codes = _enrol(client)
    client.post("/accounts/logout/")

    _log_in(client, "rui")
    used = client.post("/accounts/login/code/", {"otp_token": f" {codes[0]} ", "next": "/admin/"})
    assert (used.status_code, used["Location"]) == (302, "/admin/")
    device.refresh_from_db()
    assert device.throttling_failure_count == 0
    assert StaticDevice.objects.get(user__username="rui").token_set.count() == 9
    client.post("/accounts/logout/")

    # The app's code as it shows it ("123 456"), spaces and all.
    _log_in(client, "rui")
    code = _code(device, 1)
    right = client.post("/accounts/login/code/", {"otp_token": f"{code[:3]} {code[3:]}"})
    assert right.status_code == 302
    assert client.get("/admin/").status_code == 200
    client.post("/accounts/logout/")

    # A wrong six-digit code counts against the app, not against the recovery codes.
    _log_in(client, "rui")
    wrong = client.post("/accounts/login/code/", {"otp_token": "000000"})
    assert wrong.status_code == 200 and "Invalid token" in wrong.content.decode()
    device.refresh_from_db()
    assert device.throttling_failure_count == 1
    recovery = StaticDevice.objects.get(user__username="rui")
    assert recovery.throttling_failure_count == 0


@pytest.mark.django_db
def test_recovery_codes_can_be_regenerated_and_old_ones_stop_working(
    client: Any, staff_2fa_required: None
) -> None:
    rule_editor("rui")
    _log_in(client, "rui")
    _, old_codes = _enrol(client)
    response = client.post("/accounts/two-factor/recovery-codes/")
    new_codes = re.findall(r"<li>([a-z0-9]{8})</li>", response.content.decode())
    assert len(new_codes) == 10 and not set(new_codes) & set(old_codes)
    # Shown once: the status page does not show them again.
    assert new_codes[0] not in client.get("/accounts/two-factor/").content.decode()
    # Staff cannot turn two-factor off while it is required.
    client.post("/accounts/two-factor/off/")
    assert TOTPDevice.objects.filter(confirmed=True).exists()


@pytest.mark.django_db
def test_clinicians_are_not_asked_for_a_code_unless_enrolled(
    client: Any, alice: User, north_clinic: Any, staff_2fa_required: None
) -> None:
    response = _log_in(client, "alice")
    assert response["Location"] == "/"
    assert client.get("/patients/").status_code == 200
    assert (
        "Two-factor log-in is <strong>off</strong>"
        in client.get("/accounts/two-factor/").content.decode()
    )


@pytest.mark.django_db
def test_a_clinician_may_turn_two_factor_on_and_off(
    client: Any, alice: User, north_clinic: Any
) -> None:
    _log_in(client, "alice")
    device, _ = _enrol(client)
    client.post("/accounts/logout/")

    response = _log_in(client, "alice")
    assert response["Location"].startswith("/accounts/login/code/")
    assert client.get("/patients/")["Location"].startswith("/accounts/login/code/")
    # The API does not answer a half-logged-in session either.
    half = client.get("/api/v1/openapi.json")
    assert half.status_code == 401 and half["WWW-Authenticate"].startswith("Token ")
    client.post(
        "/accounts/login/code/",
        {"otp_token": _code(device, 1)},
    )
    assert client.get("/patients/").status_code == 200

    client.post("/accounts/two-factor/off/")
    assert not TOTPDevice.objects.exists()
    client.post("/accounts/logout/")
    assert _log_in(client, "alice")["Location"] == "/"


@pytest.mark.django_db
def test_turning_two_factor_on_logs_the_user_out_of_their_other_sessions(
    client: Any, alice: User, bob: User
) -> None:
    """Whether a session owes a code is decided at its log-in: one opened before two-factor
    was turned on went on reaching patients without a code, and could turn it off again."""
    earlier, someone_else = Client(), Client()
    _log_in(earlier, "alice")
    _log_in(someone_else, "bob")
    assert earlier.get("/patients/").status_code == 200
    _log_in(client, "alice")
    _enrol(client)
    assert earlier.get("/patients/")["Location"].startswith("/accounts/login/")
    earlier.post("/accounts/two-factor/off/")
    assert TOTPDevice.objects.filter(user=alice, confirmed=True).exists()
    assert client.get("/patients/").status_code == 200  # this session gave its code
    assert someone_else.get("/patients/").status_code == 200  # another user's is untouched


@pytest.mark.django_db
def test_a_session_that_gave_no_code_changes_nothing_about_two_factor(
    client: Any, alice: User
) -> None:
    """An authenticator added another way (the admin) while a session was open: the session
    could turn two-factor off or make new recovery codes without giving a code."""
    _log_in(client, "alice")
    device = TOTPDevice.objects.create(user=alice, name="authenticator", confirmed=True)
    recovery_codes_regenerate(user=alice)
    for action in ("off", "recovery-codes"):
        response = client.post(f"/accounts/two-factor/{action}/")
        assert response["Location"].startswith(
            "/accounts/login/code/?next=%2Faccounts%2Ftwo-factor%2F"
        )
    assert TOTPDevice.objects.filter(pk=device.pk).exists()
    assert client.get("/patients/")["Location"].startswith("/accounts/login/code/")


@pytest.mark.django_db
def test_a_wrong_code_does_not_turn_two_factor_on(client: Any, alice: User) -> None:
    _log_in(client, "alice")
    client.post("/accounts/two-factor/setup/")
    response = client.post("/accounts/two-factor/confirm/", {"code": "123456x"})
    assert response.status_code == 400
    assert "That code is not right" in response.content.decode()
    assert not TOTPDevice.objects.filter(confirmed=True).exists()
    client.post("/accounts/logout/")
    assert _log_in(client, "alice")["Location"] == "/"


@pytest.mark.django_db
def test_staff_use_the_admin_without_two_factor_when_not_required(
    client: Any, settings: Any
) -> None:
    settings.ALPCARE_REQUIRE_STAFF_2FA = False
    rule_editor("rui")
    _log_in(client, "rui")
    assert client.get("/admin/").status_code == 200


@pytest.mark.parametrize(("debug", "expected"), [("0", "True"), ("1", "False")])
def test_two_factor_is_required_for_staff_unless_debug(debug: str, expected: str) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "ALPCARE_"))}
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from django.conf import settings; print(settings.ALPCARE_REQUIRE_STAFF_2FA)",
        ],
        cwd=ROOT,
        env={**clean, "DJANGO_DEBUG": debug, "DJANGO_SECRET_KEY": secrets.token_urlsafe(50)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout.strip().splitlines()[-1] == expected, result.stderr


@pytest.mark.django_db
def test_the_demo_editor_logs_in_with_a_printed_recovery_code(
    client: Any, staff_2fa_required: None
) -> None:
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("seed_demo", stdout=out)
    lines = out.getvalue().splitlines()
    index = next(i for i, line in enumerate(lines) if "username editor" in line)
    password = lines[index].split()[3]
    codes = re.search(r"recovery codes ([a-z0-9, ]+) \(each works once\)", lines[index + 1])
    assert codes is not None
    client.post("/accounts/login/", {"username": "editor", "password": password})
    response = client.post(
        "/accounts/login/code/",
        {"otp_token": codes.group(1).split(", ")[0]},
    )
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


@pytest.mark.django_db
def test_a_session_is_let_through_when_an_administrator_removed_the_authenticator(
    client: Any, alice: User
) -> None:
    _log_in(client, "alice")
    _enrol(client)
    client.post("/accounts/logout/")
    assert _log_in(client, "alice")["Location"].startswith("/accounts/login/code/")
    TOTPDevice.objects.all().delete()  # a lost phone: the administrator deletes the device
    response = client.get("/patients/", follow=True)
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == "/patients/"


@pytest.mark.django_db
def test_a_session_that_gave_no_code_cannot_move_to_a_new_authenticator(
    client: Any, alice: User
) -> None:
    """Correct: with a confirmed authenticator, "set up" / "confirm" (Move to a new
    authenticator app) need a session that gave a code, like "new recovery codes" and
    "turn off" do (twofactor._code_first: "A session that has not given a code ... changes
    nothing about two-factor until it gives one"; README: a lost phone is moved after
    logging in *with a recovery code*; ASVS 2.8/3.x: changing an authenticator needs the
    current authenticator). A session opened before an authenticator was added another
    way (the admin) swapped it for one the session's holder controls, got ten new recovery
    codes and was marked verified, without any code from the existing authenticator."""
    client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    existing = TOTPDevice.objects.create(user=alice, name="authenticator", confirmed=True)
    old_codes = {
        recovery_code_digest(alice.pk, code) for code in recovery_codes_regenerate(user=alice)
    }

    client.post("/accounts/two-factor/setup/")
    pending = TOTPDevice.objects.filter(user=alice, confirmed=False).first()
    if pending is not None:
        client.post("/accounts/two-factor/confirm/", {"code": _code(pending)})

    assert TOTPDevice.objects.filter(pk=existing.pk, confirmed=True).exists(), (
        "the existing authenticator was replaced by a session that gave no code"
    )
    assert set(StaticToken.objects.values_list("token", flat=True)) == old_codes, (
        "recovery codes were regenerated by a session that gave no code"
    )


@pytest.mark.django_db
def test_staff_session_that_gave_no_code_cannot_replace_the_authenticator(
    client: Any, settings: Any
) -> None:
    """Same as above for staff who must enrol: the enrol-only pages (setup/confirm) stay
    open to a staff session once an authenticator exists, so it replaces it without a code.
    Once enrolled, the session owes a code, as at a log-in."""
    settings.ALPCARE_REQUIRE_STAFF_2FA = True
    rui = rule_editor("rui")
    client.post("/accounts/login/", {"username": "rui", "password": PASSWORD})
    existing = TOTPDevice.objects.create(user=rui, name="authenticator", confirmed=True)
    recovery_codes_regenerate(user=rui)

    client.post("/accounts/two-factor/setup/")
    pending = TOTPDevice.objects.filter(user=rui, confirmed=False).first()
    if pending is not None:
        client.post("/accounts/two-factor/confirm/", {"code": _code(pending)})
    assert TOTPDevice.objects.filter(pk=existing.pk, confirmed=True).exists()
    assert client.get("/admin/").status_code != 200, "reached the admin without a code"


@pytest.mark.django_db
def test_the_secret_being_set_up_is_shown_only_to_the_session_that_started_it() -> None:
    """Someone holding only a staff member's password, in another session, read the secret of
    the authenticator the real user was setting up: once the user confirmed it, password and
    that secret passed the second factor for good. Found by an audit."""
    rule_editor("rui")
    real, intruder = Client(), Client()
    _log_in(real, "rui")
    _log_in(intruder, "rui")
    assert real.post("/accounts/two-factor/setup/").status_code == 302
    peeked = intruder.get("/accounts/two-factor/").content.decode()
    assert 'id="totp-secret"' not in peeked and "otpauth://" not in peeked
    refused = intruder.post("/accounts/two-factor/confirm/", {"code": "123456"}, follow=True)
    assert "Start the set-up first" in refused.content.decode()
    assert 'id="totp-secret"' in real.get("/accounts/two-factor/").content.decode()
    device = TOTPDevice.objects.get(user__username="rui", confirmed=False)
    assert real.post("/accounts/two-factor/confirm/", {"code": _code(device)}).status_code == 200


@pytest.mark.django_db
def test_recovery_codes_are_kept_as_digests_and_still_work_once(client: Any, alice: User) -> None:
    """Recovery codes were stored as typed (django-otp's static tokens): a copy of the database
    (a backup, a replica) gave working codes. Found by an audit."""
    TOTPDevice.objects.create(user=alice, name="Authenticator app", confirmed=True)
    codes = recovery_codes_regenerate(user=alice)
    stored = set(StaticToken.objects.filter(device__user=alice).values_list("token", flat=True))
    assert not stored & set(codes) and len(stored) == len(codes)
    _log_in(client, "alice")
    assert client.post("/accounts/login/code/", {"otp_token": codes[0].upper()}).status_code == 302
    client.post("/accounts/logout/")
    _log_in(client, "alice")
    again = client.post("/accounts/login/code/", {"otp_token": codes[0]})
    assert again.status_code == 200  # each works once
    assert StaticToken.objects.filter(device__user=alice).count() == len(codes) - 1


@pytest.mark.django_db
def test_codes_stored_in_clear_before_are_kept_as_digests_by_the_migration(alice: User) -> None:
    import importlib

    from django.apps import apps as current_apps

    migration = importlib.import_module("pathways.migrations.0031_recovery_codes_kept_as_digests")
    device = StaticDevice.objects.create(user=alice, name="Recovery codes", confirmed=True)
    StaticToken.objects.create(device=device, token="abcd2345")
    migration.digest_codes(current_apps, None)
    assert StaticToken.objects.get().token == recovery_code_digest(alice.pk, "abcd2345")


@pytest.mark.django_db
def test_a_clinician_session_open_when_an_authenticator_is_added_in_the_admin_owes_a_code(
    client: Any, alice: User
) -> None:
    """Each session decides at its log-in whether it owes a code: one opened with the password
    alone, before an administrator added an authenticator for the user, went on reading
    patients without ever giving one (README: two-factor on leaves no session without a code;
    OWASP ASVS V3.3.3)."""
    assert (
        client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})["Location"]
        == "/"
    )
    assert client.get("/patients/").status_code == 200
    # An administrator enrols an authenticator for alice (django-otp's admin).
    TOTPDevice.objects.create(user=alice, name="Authenticator app", confirmed=True)
    recovery_codes_regenerate(user=alice)
    response = client.get("/patients/")
    assert response.status_code == 302, "the open session still reads patients without a code"
    assert response["Location"].startswith("/accounts/login/code/")


@pytest.mark.django_db
def test_a_staff_session_open_when_an_authenticator_is_added_owes_a_code_when_not_required(
    client: Any, settings: Any, north_clinic: Any
) -> None:
    settings.ALPCARE_REQUIRE_STAFF_2FA = False
    rui = User.objects.create_user("rui", password=PASSWORD, is_staff=True)
    client.post("/accounts/login/", {"username": "rui", "password": PASSWORD})
    assert client.get("/admin/").status_code == 200
    TOTPDevice.objects.create(user=rui, name="Authenticator app", confirmed=True)
    response = client.get("/admin/")
    assert response.status_code == 302, "the admin stays open to a session that gave no code"
    assert response["Location"].startswith("/accounts/login/code/")
