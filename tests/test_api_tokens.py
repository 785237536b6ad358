"""API tokens: one's own tokens page, scopes per operation, expiry, no minting for others."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from pathways.models import ApiToken, _token_digest
from tests.factories import paget_on_alendronate_document, stored_patient

pytestmark = pytest.mark.django_db


def _assess(client: Client, key: str) -> Any:
    return client.post(
        "/api/v1/assess",
        json.dumps(paget_on_alendronate_document()),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {key}",
    )


def _create_on_the_page(client: Client, **fields: Any) -> Any:
    data = {"name": "EHR integration", "scopes": ["assess"], "lifetime_days": "365", **fields}
    return client.post("/account/api-tokens/", data)


# --- the page ----------------------------------------------------------------------------------


def test_the_clinician_screens_link_to_the_token_page(alice_client: Client) -> None:
    assert 'href="/account/api-tokens/"' in alice_client.get("/").content.decode()
    page = alice_client.get("/account/api-tokens/")
    assert page.status_code == 200
    assert "No tokens yet." in page.content.decode()


def test_a_clinician_creates_a_token_and_sees_its_key_once(
    alice_client: Client, alice: User
) -> None:
    response = _create_on_the_page(alice_client, scopes=["assess", "read"])
    assert response.status_code == 200
    token = ApiToken.objects.get(user=alice)
    page = response.content.decode()
    key = page.split('id="new-token-key"')[1].split('value="')[1].split('"')[0]
    assert key.startswith(token.prefix) and key not in token.digest
    assert token.scope_list == ["assess", "read"]
    assert abs(token.expires_at - (timezone.now() + timedelta(days=365))) < timedelta(minutes=1)
    assert _assess(Client(), key).status_code == 200
    # Shown once: the page never shows it again.
    assert key not in alice_client.get("/account/api-tokens/").content.decode()


def test_a_shorter_life_can_be_chosen(alice_client: Client, alice: User) -> None:
    _create_on_the_page(alice_client, lifetime_days="30")
    token = ApiToken.objects.get(user=alice)
    assert abs(token.expires_at - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)


def test_a_token_needs_a_name_and_a_scope(alice_client: Client) -> None:
    response = _create_on_the_page(alice_client, name="", scopes=[])
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    response = _create_on_the_page(alice_client, scopes=["admin"])
    assert response.status_code == 400
    assert not ApiToken.objects.exists()


def test_the_page_needs_a_login(client: Client) -> None:
    response = client.get("/account/api-tokens/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert _create_on_the_page(client).status_code == 302
    assert not ApiToken.objects.exists()


def test_creating_and_revoking_are_csrf_protected(alice: User) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert _create_on_the_page(client).status_code == 403
    assert not ApiToken.objects.exists()
    token, _ = ApiToken.issue(user=alice, name="laptop", scopes=["read"])
    assert client.post(f"/account/api-tokens/{token.pk}/revoke/").status_code == 403
    token.refresh_from_db()
    assert not token.revoked


def test_a_user_revokes_their_own_token(alice_client: Client, alice: User) -> None:
    token, key = ApiToken.issue(user=alice, name="old laptop", scopes=["assess"])
    response = alice_client.post(f"/account/api-tokens/{token.pk}/revoke/")
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked
    assert _assess(Client(), key).status_code == 401
    assert "revoked" in alice_client.get("/account/api-tokens/").content.decode()


def test_nobody_revokes_or_sees_another_users_token(client: Client, alice: User, bob: User) -> None:
    token, key = ApiToken.issue(user=alice, name="alice's EHR link", scopes=["assess"])
    client.force_login(bob)
    assert client.post(f"/account/api-tokens/{token.pk}/revoke/").status_code == 404
    assert "alice&#x27;s EHR link" not in client.get("/account/api-tokens/").content.decode()
    token.refresh_from_db()
    assert not token.revoked
    assert _assess(Client(), key).status_code == 200


# --- scopes and expiry on the API --------------------------------------------------------------


def test_each_operation_needs_its_scope(client: Client, alice: User, north_clinic: Any) -> None:
    patient = stored_patient(north_clinic, alice)
    _, assess_only = ApiToken.issue(user=alice, name="assess", scopes=["assess"])
    _, read_only = ApiToken.issue(user=alice, name="read", scopes=["read"])
    case_url = f"/api/v1/patients/{patient.pk}/case"

    refused = client.get(case_url, HTTP_AUTHORIZATION=f"Token {assess_only}")
    assert refused.status_code == 403
    assert refused["Content-Type"] == "application/json"
    assert refused.json() == {
        "errors": [{"field": "", "message": 'this token lacks the "read" scope'}]
    }
    assert client.get(case_url, HTTP_AUTHORIZATION=f"Token {read_only}").status_code == 200
    assert _assess(client, read_only).status_code == 403
    assert _assess(client, assess_only).status_code == 200


@pytest.mark.parametrize("scope", ["write", "hl7", "cds"])
def test_the_other_scopes_open_none_of_todays_operations(
    client: Client, alice: User, north_clinic: Any, scope: str
) -> None:
    patient = stored_patient(north_clinic, alice)
    _, key = ApiToken.issue(user=alice, name=scope, scopes=[scope])
    assert _assess(client, key).status_code == 403
    url = f"/api/v1/patients/{patient.pk}/assessment"
    assert client.get(url, HTTP_AUTHORIZATION=f"Token {key}").status_code == 403


def test_tokens_expire_after_a_year_by_default(client: Client, alice: User) -> None:
    token, key = ApiToken.issue(user=alice, name="integration", scopes=["assess"])
    assert abs(token.expires_at - (timezone.now() + timedelta(days=365))) < timedelta(minutes=1)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = _assess(client, key)
    assert response.status_code == 401
    assert response.json()["errors"][0]["message"]


def test_a_token_cannot_be_issued_without_a_known_scope(alice: User) -> None:
    with pytest.raises(ValueError):
        ApiToken.issue(user=alice, name="nothing", scopes=[])
    with pytest.raises(ValueError):
        ApiToken.issue(user=alice, name="too much", scopes=["assess", "admin"])


# --- the admin -----------------------------------------------------------------------------------


@pytest.fixture
def token_staff(north_clinic: Any) -> User:
    """A staff user allowed to manage API tokens in the admin, but not a superuser."""
    user = User.objects.create_user("sam", password="correct horse battery staple")
    user.is_staff = True
    user.save()
    user.user_permissions.add(
        *Permission.objects.filter(content_type__model="apitoken"),
    )
    return User.objects.get(pk=user.pk)


@pytest.fixture
def root(db: Any) -> User:
    return User.objects.create_superuser("root", password="correct horse battery staple")


def _admin_add(client: Client, user: User, **fields: Any) -> Any:
    expires = (timezone.now() + timedelta(days=90)).astimezone()
    data = {
        "user": str(user.pk),
        "name": "minted",
        "scopes": ["assess", "read"],
        "expires_at_0": expires.strftime("%Y-%m-%d"),
        "expires_at_1": expires.strftime("%H:%M:%S"),
        **fields,
    }
    return client.post("/admin/pathways/apitoken/add/", data)


def test_staff_cannot_mint_a_token_for_another_user(
    client: Client, token_staff: User, root: User, alice: User
) -> None:
    client.force_login(token_staff)
    for victim in (root, alice):
        response = _admin_add(client, victim)
        assert response.status_code == 200  # the form again, with an error
        assert "Select a valid choice" in response.content.decode()
        assert not ApiToken.objects.filter(user=victim).exists()


def test_staff_mint_tokens_for_themselves_and_see_only_theirs(
    client: Client, token_staff: User, alice: User
) -> None:
    ApiToken.issue(user=alice, name="alice's own", scopes=["read"])
    client.force_login(token_staff)
    response = _admin_add(client, token_staff)
    assert response.status_code == 200  # the key's page
    token = ApiToken.objects.get(user=token_staff)
    assert token.scope_list == ["assess", "read"]
    listing = client.get("/admin/pathways/apitoken/").content.decode()
    assert "minted" in listing and "alice&#x27;s own" not in listing
    other = ApiToken.objects.get(user=alice)
    assert client.get(f"/admin/pathways/apitoken/{other.pk}/change/").status_code in (302, 404)


def test_a_token_never_changes_hands(client: Client, token_staff: User, root: User) -> None:
    token, _ = ApiToken.issue(user=token_staff, name="mine", scopes=["read"])
    client.force_login(token_staff)
    response = client.post(
        f"/admin/pathways/apitoken/{token.pk}/change/",
        {"user": str(root.pk), "name": "mine", "scopes": ["read"]},
    )
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.user == token_staff


def test_a_superuser_mints_a_token_for_another_user(
    client: Client, root: User, alice: User
) -> None:
    client.force_login(root)
    response = _admin_add(client, alice, scopes=["hl7"])
    assert response.status_code == 200
    token = ApiToken.objects.get(user=alice)
    assert token.scope_list == ["hl7"]
    assert timedelta(days=89) < token.expires_at - timezone.now() <= timedelta(days=90)


def test_the_admin_refuses_an_expiry_beyond_a_year(client: Client, root: User) -> None:
    client.force_login(root)
    far = (timezone.now() + timedelta(days=800)).astimezone()
    response = _admin_add(
        client,
        root,
        expires_at_0=far.strftime("%Y-%m-%d"),
        expires_at_1=far.strftime("%H:%M:%S"),
    )
    assert response.status_code == 200
    assert "At most 365 days from now." in response.content.decode()
    assert not ApiToken.objects.exists()


def test_a_key_minted_in_the_admin_is_shown_on_its_page_never_in_a_cookie_or_the_session(
    client: Client, root: User
) -> None:
    """It was put in a message: on the redirect, in the messages cookie (signed, not
    encrypted), or the session when too big for the cookie."""
    client.force_login(root)
    response = _admin_add(client, root)
    assert response.status_code == 200
    page = response.content.decode()
    key = re.search(r'id="issued-key"[^>]* value="([^"]+)"', page)
    assert key is not None
    assert client.get("/api/v1/patients/1/case", HTTP_AUTHORIZATION=f"Token {key.group(1)}")[
        "Content-Type"
    ].startswith("application/json")
    assert ApiToken.objects.get(user=root).digest == _token_digest(key.group(1))
    carried = " ".join(str(value) for value in response.cookies.values())
    carried += json.dumps(dict(client.session), default=str)
    assert key.group(1) not in carried
    token = ApiToken.objects.get(user=root)
    change = client.get(f"/admin/pathways/apitoken/{token.pk}/change/").content.decode()
    assert key.group(1) not in change


def test_a_revoked_token_cannot_be_unrevoked_in_the_admin(client: Client, root: User) -> None:
    """The box stayed editable: unticking it made a revoked (perhaps leaked) key work again."""
    token, key = ApiToken.issue(user=root, name="leaked", scopes=["read"])
    client.force_login(root)
    url = f"/admin/pathways/apitoken/{token.pk}/change/"
    expires = token.expires_at.astimezone()
    form = {
        "name": "leaked", "scopes": ["read"], "expires_at_0": expires.strftime("%Y-%m-%d"),
        "expires_at_1": expires.strftime("%H:%M:%S"),
    }  # fmt: skip
    assert client.post(url, {**form, "revoked": "on"}).status_code == 302
    assert client.post(url, form).status_code == 302  # the box unticked
    token.refresh_from_db()
    assert token.revoked
    assert 'name="revoked"' not in client.get(url).content.decode()
    response = client.get("/api/v1/patients/1/case", HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 401


@pytest.mark.parametrize(
    "authorization",
    [None, "Token alp_not-a-real-key", "Basic YWxpY2U6cw=="],
    ids=["no-header", "unknown-token", "other-scheme"],
)
def test_a_401_names_the_scheme_in_www_authenticate(
    client: Client, db: Any, authorization: str | None
) -> None:
    """RFC 9110 §15.5.2: a 401 MUST carry a WWW-Authenticate challenge; the API sent none, so
    a generic HTTP client could not tell it wants `Token`. Found by an audit."""
    headers: dict[str, Any] = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = client.post("/api/v1/assess", "{}", content_type="application/json", **headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Token realm="alpcare API"'


def _create_form(client: Client) -> dict[str, Any]:
    """The create form as the browser submits it: its hidden inputs (CSRF, any one-time nonce)
    plus the visible fields."""
    page = client.get("/account/api-tokens/").content.decode()
    hidden = dict(
        (m.group(1), m.group(2))
        for m in re.finditer(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page)
    )
    return {**hidden, "name": "EHR integration", "scopes": ["read"], "lifetime_days": "90"}


def test_resubmitting_the_create_form_does_not_mint_a_second_token(
    alice_client: Client, alice: User
) -> None:
    """The key is rendered on the POST's response (no redirect), so a reload or a double click
    re-sends the same POST: a second live token with the same name and scopes is minted whose
    key the user never kept (the first page is gone), an orphan credential. Found by an audit."""
    form = _create_form(alice_client)
    first = alice_client.post("/account/api-tokens/", form)
    assert first.status_code == 200 and 'id="new-token-key"' in first.content.decode()
    again = alice_client.post("/account/api-tokens/", form)  # reload / double submit
    assert ApiToken.objects.filter(user=alice).count() == 1
    assert 'id="new-token-key"' not in again.content.decode()


@pytest.mark.parametrize(
    "name",
    ["\u200b", "\u200b\u200b\u2060", "EHR\nlink", "lab\x1b[2Jfeed"],
    ids=["zero-width-space", "only-invisible", "line-break", "escape-sequence"],
)
def test_a_name_that_is_blank_when_shown_or_has_control_characters_is_refused(
    alice_client: Client, alice: User, name: str
) -> None:
    """The name is required and whitespace-only is refused ("This field is required."), but a
    name of invisible characters passes (the listing and the revoke button's label show nothing)
    and so do line breaks and terminal escapes (the MRN field refuses those). Found by an audit."""
    form = _create_form(alice_client)
    response = alice_client.post("/account/api-tokens/", {**form, "name": name})
    assert response.status_code == 400
    assert 'id="error_1_id_name"' in response.content.decode()  # the error names the field
    assert not ApiToken.objects.filter(user=alice).exists()


def test_using_a_token_does_not_write_last_used_on_every_request(
    client: Client, alice: User, north_clinic: Any
) -> None:
    """ApiToken.authenticate runs an UPDATE of last_used_at on every authenticated call (before
    the scope check, so refused calls too): a read-only GET storm becomes a write storm on one
    row (SQLite: the single write lock the worker and scheduler share). The session middleware
    already writes its "seen at" only when the stored time is SEEN_AT_RESOLUTION old. Found by
    an audit."""
    patient = stored_patient(north_clinic, alice)
    _, key = ApiToken.issue(user=alice, name="poller", scopes=["read"])
    url = f"/api/v1/patients/{patient.pk}/case"
    with CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            assert client.get(url, HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    writes = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith("UPDATE") and "pathways_apitoken" in q["sql"]
    ]
    assert len(writes) <= 1, f"{len(writes)} UPDATEs of the token for 5 calls in a second"
    assert ApiToken.objects.get(name="poller").last_used_at is not None


@pytest.mark.parametrize("scheme", ["token", "TOKEN"])
def test_the_authorization_scheme_is_case_insensitive(
    client: Client, alice: User, scheme: str
) -> None:
    """RFC 9110 §11.1: the auth-scheme is case-insensitive. `token <key>` with a valid key is
    answered 401 "missing, unknown, revoked or expired API token" (TokenAuth: startswith).
    Found by an audit."""
    _, key = ApiToken.issue(user=alice, name="ehr", scopes=["assess"])
    response = client.post(
        "/api/v1/assess",
        json.dumps(paget_on_alendronate_document()),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"{scheme} {key}",
    )
    assert response.status_code == 200
