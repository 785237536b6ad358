"""Session lifetime limits, no-store caching for pages that may carry patient data, JSON errors
for the API, and whole-page redirects for htmx requests."""

import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.utils import timezone
from django_htmx.http import HttpResponseClientRedirect

_LOGIN_AT = "alpcare_login_at"
_SEEN_AT = "alpcare_seen_at"
# The last-seen time is stored again only when it is this old: a session ends at most this much
# before SESSION_IDLE_TIMEOUT, and a request (each live update of the case-entry form, each
# worklist refresh) does not write the session row every time.
SEEN_AT_RESOLUTION = timedelta(minutes=1)
# RFC 9110 §15.5.2: a 401 carries a challenge; the API's scheme is `Authorization: Token <key>`.
API_CHALLENGE = 'Token realm="alpcare API"'


def api_unauthorized(field: str, message: str) -> JsonResponse:
    """The API's 401: its error document and the challenge naming the scheme."""
    response = JsonResponse({"errors": [{"field": field, "message": message}]}, status=401)
    response["WWW-Authenticate"] = API_CHALLENGE
    return response


class SessionLifetimeMiddleware:
    """End sessions after SESSION_IDLE_TIMEOUT idle and SESSION_ABSOLUTE_TIMEOUT in total.

    Idle time counts from the last request to within SEEN_AT_RESOLUTION: the session is saved
    (one UPDATE and commit) when the stored time is that old, not on every request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            now = timezone.now()
            stored_login_at = _read(request.session.get(_LOGIN_AT))
            stored_seen_at = _read(request.session.get(_SEEN_AT))
            login_at = stored_login_at or now
            seen_at = stored_seen_at or now
            if (
                now - seen_at > settings.SESSION_IDLE_TIMEOUT
                or now - login_at > settings.SESSION_ABSOLUTE_TIMEOUT
            ):
                logout(request)  # flushes the server-side session
                if request.path.startswith("/api/"):
                    return api_unauthorized("", "session expired")
                return redirect_to_login(request.get_full_path())
            if stored_login_at is None:
                request.session[_LOGIN_AT] = now.isoformat()
            if stored_seen_at is None or now - stored_seen_at >= SEEN_AT_RESOLUTION:
                request.session[_SEEN_AT] = now.isoformat()
        return self.get_response(request)


def _read(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


class NoStoreForAuthenticatedMiddleware:
    """Nothing a logged-in user sees may be kept by a browser or proxy cache: a response to a
    request that came with a session (the one that just ended, answered with the log-in
    redirect, included), to a logged-in user, or from the API."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with_session = settings.SESSION_COOKIE_NAME in request.COOKIES
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if (
            with_session
            or (user is not None and user.is_authenticated)
            or request.path.startswith("/api/")
        ):
            response["Cache-Control"] = "no-store, private"
            response["Pragma"] = "no-cache"
        return response


class ApiJsonErrorsMiddleware:
    """API errors are JSON whichever layer answered: an unknown URL, a wrong method or a crash
    outside the API's own handlers would otherwise be Django's HTML page."""

    prefix = "/api/"
    structured = ("application/json", "application/hl7-v2", "application/fhir+json")

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            request.path.startswith(self.prefix)
            and response.status_code >= 400
            # JSON already, an HL7 ACK (POST /api/v1/hl7 answers in HL7, errors included), or
            # a FHIR OperationOutcome (POST /api/v1/fhir)
            and not response.get("Content-Type", "").startswith(self.structured)
            and not response.streaming
        ):
            # Rewritten in place: the security headers the inner layers set are kept.
            message = (response.reason_phrase or "error").lower()
            response.content = json.dumps({"errors": [{"field": "", "message": message}]})
            response["Content-Type"] = "application/json"
            if "Content-Length" in response:
                response["Content-Length"] = str(len(response.content))
        return response


class HtmxRedirectMiddleware:
    """An htmx request answered with a redirect (its session ended, or the second factor is
    due) sends the whole browser there instead (HX-Redirect): htmx would follow the redirect
    itself and swap the login page into the panel it was updating. The login's "next" is then
    the page the user was on, not the fragment's own URL (a POST-only preview, say)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.headers.get("HX-Request") != "true" or not response.has_header("Location"):
            return response
        if not 300 <= response.status_code < 400:
            return response
        target = urlsplit(response["Location"])
        query = parse_qs(target.query, keep_blank_values=True)
        page = urlsplit(request.headers.get("HX-Current-URL", ""))
        on_page = page.netloc == request.get_host() and page.path.startswith("/")
        if query.get("next") == [request.get_full_path()] and on_page:
            query["next"] = [urlunsplit(("", "", page.path, page.query, ""))]
        location = urlunsplit(
            (target.scheme, target.netloc, target.path, urlencode(query, doseq=True), "")
        )
        redirect = HttpResponseClientRedirect(location)
        redirect.cookies = response.cookies
        return redirect


# A year the database can bound, and the next one too (the admin's date drill-down reads it).
_ADMIN_YEARS = range(1, 9999)
_YEAR_LOOKUPS = frozenset({"year", "iso_year"})


class AdminYearLookupMiddleware:
    """A year lookup in an admin list's query (``?due__year=99999``) that the database cannot
    bound was a 500 on every list with a date field, the libraries' (users, tasks, login
    attempts) included: Django lets any local field's lookup through, and the year's bounds
    overflow when the query is built. It is a 400 naming the parameter instead."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/admin/") and request.GET:
            for key, values in request.GET.lists():
                if not _YEAR_LOOKUPS & set(key.split("__")[1:]):  # at__year, at__year__gte
                    continue
                for value in values:  # each one: a repeated key is a list to the admin
                    if not _a_year(value):
                        return HttpResponseBadRequest(
                            f"{key}={value[:20]}: a year from {_ADMIN_YEARS.start} to "
                            f"{_ADMIN_YEARS.stop - 1}",
                            content_type="text/plain; charset=utf-8",
                        )
        return self.get_response(request)


def _a_year(value: str) -> bool:
    if not re.fullmatch(r"\s*[+-]?[0-9]+\s*", value, re.ASCII):
        return True  # not a number: Django's own lookup check refuses it
    return len(value) <= 20 and int(value) in _ADMIN_YEARS
