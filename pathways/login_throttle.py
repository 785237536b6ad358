"""Login throttling: two limits, per (username, address) and per address across usernames.

axes compares one failure count with one limit (``AXES_FAILURE_LIMIT``); with several
``AXES_LOCKOUT_PARAMETERS`` it takes the largest count over them, so ``[["username",
"ip_address"], "ip_address"]`` would lock an address after as few failures as one account
gets. Its maintainers point to a custom handler for separate limits (jazzband/django-axes#661),
so this handler keeps axes' per-(username, address) lockout and adds the address-wide limit
that stops password spraying (a few passwords tried against many usernames from one address).
Never per username alone: anyone could then lock a named clinician out from anywhere.
"""

from __future__ import annotations

from typing import Any

from axes.attempts import get_cool_off_threshold
from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username
from axes.models import AccessAttempt
from axes.signals import user_locked_out
from django.conf import settings
from django.db.models import Sum
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str | None:
    """The client's address as the outermost of ALPCARE_PROXY_COUNT trusted proxies saw it.

    Each proxy appends the address it received the request from to X-Forwarded-For, so with
    N proxies the client is the N-th entry from the right; entries further left came from the
    client and may be forged (the same reading as werkzeug's ProxyFix ``x_for=N``).
    """
    proxies = settings.ALPCARE_PROXY_COUNT
    forwarded = [
        entry.strip()
        for entry in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        if entry.strip()
    ]
    if proxies and len(forwarded) >= proxies:
        return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR")


def address_failures(request: HttpRequest) -> int:
    """Failed log-ins from this request's address, any username, within the cool-off window."""
    attempts = AccessAttempt.objects.filter(
        ip_address=request.axes_ip_address,  # type: ignore[attr-defined]
        attempt_time__gte=get_cool_off_threshold(request),
    )
    return attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0


def address_limit_reached(request: HttpRequest) -> bool:
    return address_failures(request) >= settings.ALPCARE_LOGIN_ADDRESS_FAILURE_LIMIT


class AddressAndAccountHandler(AxesDatabaseHandler):
    """axes' database handler plus a lockout of the whole address after many failures."""

    def is_locked(self, request: Any, credentials: dict[str, Any] | None = None) -> bool:
        return super().is_locked(request, credentials) or address_limit_reached(request)

    def user_login_failed(
        self, sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
    ) -> None:
        already_locked = request is not None and request.axes_locked_out
        super().user_login_failed(sender, credentials, request=request, **kwargs)
        if request is None or already_locked or request.axes_locked_out:
            return
        if not self.is_whitelisted(request, credentials) and address_limit_reached(request):
            # The failure that reaches the limit is answered with the lockout page at once.
            request.axes_locked_out = True
            request.axes_credentials = credentials
            user_locked_out.send(
                "axes",
                request=request,
                username=get_client_username(request, credentials),
                ip_address=request.axes_ip_address,
            )
