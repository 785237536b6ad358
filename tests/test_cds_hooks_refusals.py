"""The CDS Hooks service refuses what it cannot use with a 4xx that says why, never a 500, and
its cards carry what alpcare's own cards show. Each test is a defect an audit found."""

from __future__ import annotations

import copy
import json
import socketserver
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.test import Client

from pathways.cds_hooks import ORDER_SIGN, PATIENT_VIEW
from pathways.cds_models import CdsClient, CdsFeedback
from tests import test_cds_hooks
from tests.cds_support import (
    EhrKeys,
    draft_order,
    myeloma_with_rising_creatinine,
    serving,
)
from tests.test_cds_hooks import SERVER, _call, _feedback, _order_sign, _patient_view, _url

pytestmark = pytest.mark.django_db
ehr_keys, north_ehr = test_cds_hooks.ehr_keys, test_cds_hooks.north_ehr  # the fixtures

FEEDBACK = f"/cds-services/{PATIENT_VIEW}/feedback"


@pytest.fixture
def ehr() -> Client:
    """An EHR's HTTP client: a server error comes back as a 500, not as an exception."""
    return Client(raise_request_exception=False)


def _refused_clearly(response: Any) -> None:
    assert response.status_code != 500, "a server error"
    assert 400 <= response.status_code < 500, response.status_code
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    assert response.json().get("error"), response.content[:200]


@contextmanager
def _raw_server(reply: bytes) -> Iterator[str]:
    """A "FHIR server" that answers every request with ``reply`` bytes and closes."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.recv(65536)
            self.request.sendall(reply)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    with serving(server) as base:
        yield base


def _fetching_body(fhir_server: str) -> dict[str, Any]:
    prefetch = myeloma_with_rising_creatinine()
    del prefetch["observations"]  # fetched from the FHIR server
    return _patient_view(
        prefetch,
        fhirServer=fhir_server,
        fhirAuthorization={"access_token": "t", "token_type": "Bearer"},
    )


# ---------------------------------------------------------------------------------------------
# Cards.


def test_a_cards_detail_carries_the_evidence_note_alpcare_shows(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    """The same advice as in alpcare: _card.html shows the rule's evidence note; the card for
    iv-bp-withhold-creatinine-rise (which has one) leaves it out."""
    from pathways.rules import current_rule_set

    rule = next(r for r in current_rule_set().rules if r.code == "iv-bp-withhold-creatinine-rise")
    assert rule.evidence_note
    body = _patient_view(myeloma_with_rising_creatinine(creatinine_now=1.6))
    cards = _call(client, ehr_keys, PATIENT_VIEW, body).json()["cards"]
    (card,) = [c for c in cards if c["source"].get("topic", {}).get("code") == rule.code]
    assert rule.evidence_note in card["detail"]


@pytest.mark.parametrize(
    "reply",
    [
        b"garbage that is no HTTP status line\r\n\r\n",  # http.client.BadStatusLine
        b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nContent-Length: 5000\r\n\r\n"
        b'{"resourceType": "Bundle", ',  # http.client.IncompleteRead
        b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n"
        b"Content-Length: 200000\r\n\r\n" + b"[" * 100_000 + b"]" * 100_000,  # RecursionError
    ],
    ids=["bad-status-line", "truncated-body", "nested-json"],
)
def test_a_broken_fhir_server_is_a_412_not_a_500(
    ehr: Client, ehr_keys: EhrKeys, north_ehr: CdsClient, reply: bytes
) -> None:
    """CDS Hooks 2.0: 412 when the service cannot retrieve the FHIR data; brief: never a 500."""
    with _raw_server(reply) as fhir_server:
        north_ehr.fhir_base_url = fhir_server
        north_ehr.save()
        response = _call(ehr, ehr_keys, PATIENT_VIEW, _fetching_body(fhir_server))
    _refused_clearly(response)
    assert response.status_code == 412


def test_order_sign_without_draft_orders_is_refused(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    """CDS Hooks order-sign: context.draftOrders REQUIRED. Missing, it was answered 200 with
    no cards, as if nothing bone-targeted were being signed."""
    body = _order_sign(myeloma_with_rising_creatinine(), draft_order("M05BA08", 4))
    del body["context"]["draftOrders"]
    response = _call(client, ehr_keys, ORDER_SIGN, body)
    _refused_clearly(response)
    assert "draftOrders" in response.json()["error"]


def test_a_prefetch_with_a_repeated_key_is_refused_naming_it(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    """`"value": 150, "value": 15000` in an Observation was read as the last value (ALP
    15000 U/L: urgent cards) with a 200: which one the EHR meant cannot be known."""
    text = json.dumps(_patient_view(myeloma_with_rising_creatinine()))
    assert text.count('"value": 150,') == 1
    text = text.replace('"value": 150,', '"value": 150, "value": 15000,')
    response = client.post(
        _url(PATIENT_VIEW),
        text,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {ehr_keys.token(SERVER + _url(PATIENT_VIEW))}",
    )
    _refused_clearly(response)
    assert 'duplicate key "value"' in response.json()["error"]


def test_a_large_prefetch_is_answered_or_refused_with_a_json_reason(
    ehr: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    """A real record: 3 MB of observations. Answered, or refused with a JSON error naming why
    (brief: every refused request says why)."""
    prefetch = myeloma_with_rising_creatinine()
    entries = prefetch["observations"]["entry"]
    weight = entries[0]["resource"]
    for index in range(8000):
        extra = copy.deepcopy(weight)
        extra["id"] = f"w-{index}"
        extra["note"] = [{"text": "x" * 300}]
        entries.append({"resource": extra})
    body = _patient_view(prefetch)
    assert len(json.dumps(body)) > 2_621_440
    response = _call(ehr, ehr_keys, PATIENT_VIEW, body)
    if response.status_code != 200:
        _refused_clearly(response)


def test_a_jwt_with_exp_as_a_numeric_string_is_a_401_not_a_500(
    ehr: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    """PyJWT accepts exp "1700000000" (int() of it); the lifetime check then compares a str
    with a float: TypeError."""
    token = ehr_keys.token(SERVER + _url(PATIENT_VIEW), exp=str(int(time.time()) + 300))
    body = _patient_view(myeloma_with_rising_creatinine())
    response = _call(ehr, ehr_keys, PATIENT_VIEW, body, token=token)
    _refused_clearly(response)
    assert response.status_code == 401


def test_a_jwt_issued_long_ago_is_refused(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    """cds_auth: "a JWT valid for longer than [1 hour] is refused"; brief: exp/iat within
    limits. iat two days ago, exp in 5 minutes: a JWT valid for two days."""
    now = int(time.time())
    token = ehr_keys.token(SERVER + _url(PATIENT_VIEW), iat=now - 2 * 86400, exp=now + 300)
    body = _patient_view(myeloma_with_rising_creatinine())
    response = _call(client, ehr_keys, PATIENT_VIEW, body, token=token)
    assert response.status_code == 401, response.content[:200]


def _cards(client: Client, keys: EhrKeys) -> list[dict[str, Any]]:
    body = _patient_view(myeloma_with_rising_creatinine(creatinine_now=1.6))
    response = _call(client, keys, PATIENT_VIEW, body)
    assert response.status_code == 200
    return response.json()["cards"]


def test_an_override_reason_that_is_not_an_object_is_refused(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    """overrideReason is an OverrideReason object (CDS Hooks 2.0 Feedback); a string was
    stored as an override with no reason, in silence."""
    card = _cards(client, ehr_keys)[0]["uuid"]
    body = _feedback(card, "overridden", overrideReason="contraindicated")
    response = _call(client, ehr_keys, PATIENT_VIEW, body, path=FEEDBACK)
    _refused_clearly(response)
    assert "overrideReason" in response.json()["error"]
    assert not CdsFeedback.objects.exists()


def test_a_jwks_url_answering_non_json_is_a_401_not_a_500(ehr: Client, north_clinic: Any) -> None:
    """The EHR's JWKS endpoint answers 200 with an HTML page (a login page, a proxy's error):
    PyJWKClient lets json's ValueError through."""
    keys = EhrKeys(kid="html-1")
    page = b"<html>maintenance</html>"
    reply = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: "
        + str(len(page)).encode()
        + b"\r\n\r\n"
        + page
    )
    with _raw_server(reply) as base:
        CdsClient.objects.create(
            name="HTML EHR", issuer="https://html-ehr.example.org", clinic=north_clinic,
            jwks_url=f"{base}/jwks.json",
        )  # fmt: skip
        token = keys.token(SERVER + _url(PATIENT_VIEW), iss="https://html-ehr.example.org")
        response = _call(
            ehr, keys, PATIENT_VIEW, _patient_view(myeloma_with_rising_creatinine()), token=token
        )
    _refused_clearly(response)
    assert response.status_code == 401
