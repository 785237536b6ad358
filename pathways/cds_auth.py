"""CDS Hooks client authentication: the JWT the specification prescribes (CDS Hooks 2.0,
"Trusting CDS Clients").

The EHR signs a short-lived JWT (ES384 or RS384) with its private key; alpcare checks the
signature against the public keys of the trusted client the `iss` names (its JWKS, inline or
fetched from its JWKS URL), the audience (the endpoint called), the expiry, and that the `jti`
has not been seen before. Anything else is a 401 without patient data.
"""

from __future__ import annotations

import json
import math
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import jwt
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from pathways.cds_models import CdsClient, CdsJwtUse

ALGORITHMS: Final = ("ES384", "RS384")
LEEWAY_SECONDS: Final = 30  # clock skew between the EHR and alpcare
# Replayed jtis are refused as long as their JWT is valid; a JWT valid for longer than this is
# refused too, which keeps the store of used jtis small (the EHR signs one per call).
MAX_LIFETIME: Final = timedelta(hours=1)
PURGE_EVERY: Final = 100  # every 100th accepted JWT drops the expired jtis
_JWKS_CACHE_SECONDS: Final = 300
_JWKS_TIMEOUT_SECONDS: Final = 5
_JWKS_REFRESH_SECONDS: Final = 60


class CdsAuthError(Exception):
    """Why a request is not trusted: the message goes back in the 401 (no patient data)."""


_jwks_clients: dict[str, jwt.PyJWKClient] = {}
_jwks_lock = threading.Lock()


def _jwks_client(url: str) -> jwt.PyJWKClient:
    with _jwks_lock:
        if url not in _jwks_clients:
            _jwks_clients[url] = jwt.PyJWKClient(
                url, cache_jwk_set=True, lifespan=_JWKS_CACHE_SECONDS, timeout=_JWKS_TIMEOUT_SECONDS
            )
        return _jwks_clients[url]


_inline_key_sets: dict[str, list[jwt.PyJWK]] = {}


def _inline_keys(jwks: dict[str, Any]) -> list[jwt.PyJWK]:
    """Parsed once per distinct JWKS (parsing a key costs more than verifying with it)."""
    text = json.dumps(jwks, sort_keys=True)
    with _jwks_lock:
        keys = _inline_key_sets.get(text)
    if keys is None:
        keys = list(jwt.PyJWKSet.from_dict(jwks).keys)
        with _jwks_lock:
            _inline_key_sets[text] = keys
    return keys


_refreshed_at: dict[str, float] = {}  # JWKS URL -> when an unknown kid last had it re-read


def _may_refresh(url: str) -> bool:
    """A JWKS URL is re-read for an unknown kid (the EHR rotated its key) at most once a
    minute: a stream of made-up kids must not turn into a stream of fetches."""
    now = time.monotonic()
    with _jwks_lock:
        if now - _refreshed_at.get(url, -math.inf) < _JWKS_REFRESH_SECONDS:
            return False
        _refreshed_at[url] = now
        return True


def _signing_keys(client: CdsClient, *, refresh: bool = False) -> list[jwt.PyJWK]:
    try:
        if client.jwks:
            return _inline_keys(client.jwks)
        if client.jwks_url:
            return list(_jwks_client(client.jwks_url).get_jwk_set(refresh=refresh).keys)
    except (jwt.PyJWKClientError, jwt.PyJWKSetError, jwt.PyJWKError, ValueError) as error:
        # ValueError: a JWKS URL answering with something that is not JSON (an HTML page).
        raise CdsAuthError(f"the client's keys could not be read: {error}") from None
    raise CdsAuthError("no keys are configured for this client")


def _key_for(client: CdsClient, header: dict[str, Any]) -> Any:
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        # CDS Hooks 2.0, the JWT header: "kid | REQUIRED | The identifier of the key-pair used
        # to sign this JWT".
        raise CdsAuthError("the JWT header has no kid naming the key that signed it")
    wanted_type = "EC" if header["alg"] == "ES384" else "RSA"

    def candidates(keys: list[jwt.PyJWK]) -> list[jwt.PyJWK]:
        return [
            key
            for key in keys
            if key.key_type == wanted_type
            and key.key_id == kid
            and key.public_key_use in (None, "sig")
        ]

    found = candidates(_signing_keys(client))
    if not found and not client.jwks and client.jwks_url and _may_refresh(client.jwks_url):
        found = candidates(_signing_keys(client, refresh=True))  # a key rotated in since
    if not found:
        raise CdsAuthError(f"no {wanted_type} key with kid {kid!r} in the client's JWKS")
    return found[0].key


def bearer_token(request: HttpRequest) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise CdsAuthError("Authorization: Bearer <JWT signed by a trusted CDS client> required")
    return token.strip()


def authenticate(request: HttpRequest, audiences: list[str]) -> CdsClient:
    """The trusted client that signed the request's JWT; raises CdsAuthError otherwise.

    `audiences`: the URLs this call may be addressed to (the service endpoint called).
    """
    token = bearer_token(request)
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as error:
        raise CdsAuthError(f"not a JWT: {error}") from None
    if header.get("alg") not in ALGORITHMS:
        raise CdsAuthError(f"alg must be one of {', '.join(ALGORITHMS)}")
    issuer = unverified.get("iss")
    client = CdsClient.objects.filter(issuer=issuer, active=True).select_related("clinic").first()
    if not isinstance(issuer, str) or client is None:
        raise CdsAuthError("iss is not a trusted CDS client")
    try:
        claims = jwt.decode(
            token,
            key=_key_for(client, header),
            algorithms=[header["alg"]],
            audience=audiences,
            issuer=client.issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["iss", "aud", "exp", "iat", "jti"]},
        )
    except jwt.PyJWTError as error:
        raise CdsAuthError(f"JWT rejected: {error}") from None
    now = timezone.now()
    for name in ("exp", "iat"):  # PyJWT takes "1700000300" too (RFC 7519: a NumericDate)
        if isinstance(claims[name], bool) or not isinstance(claims[name], int | float):
            raise CdsAuthError(f"{name} must be a number of seconds (a NumericDate)")
    if claims["exp"] > (now + MAX_LIFETIME).timestamp():  # compared first: 1e20 is no date
        raise CdsAuthError(f"exp is more than {MAX_LIFETIME} ahead")
    if claims["exp"] - claims["iat"] > MAX_LIFETIME.total_seconds():
        # A JWT issued long ago with a fresh exp is as long-lived as any other.
        raise CdsAuthError(f"exp is more than {MAX_LIFETIME} after iat")
    expires_at = datetime.fromtimestamp(claims["exp"], tz=UTC)
    if expires_at > now + MAX_LIFETIME:
        raise CdsAuthError(f"exp is more than {MAX_LIFETIME} ahead")
    _use_jti_once(client, str(claims["jti"]), expires_at, now)
    return client


def _use_jti_once(client: CdsClient, jti: str, expires_at: datetime, now: datetime) -> None:
    if not jti or len(jti) > 200:
        raise CdsAuthError("jti must be a non-empty string of at most 200 characters")
    try:
        with transaction.atomic():
            use = CdsJwtUse.objects.create(
                client=client, jti=jti, expires_at=expires_at + timedelta(seconds=LEEWAY_SECONDS)
            )
    except IntegrityError:
        raise CdsAuthError("jti already used (replayed JWT)") from None
    # An expired JWT is refused by its exp already: its jti need not be kept any longer.
    if use.pk % PURGE_EVERY == 0:
        CdsJwtUse.objects.filter(expires_at__lt=now).delete()
