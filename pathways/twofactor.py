"""Two-factor log-in (django-otp): a TOTP authenticator app plus single-use recovery codes.

Anyone enrolled is asked for a code after their password, and sees nothing else until they
give one. Staff (anyone who can open the admin: rule editors, publishers, administrators) must
enrol when ``ALPCARE_REQUIRE_STAFF_2FA`` is on (the default unless DEBUG); clinicians may.
``TwoFactorMiddleware`` enforces both for every URL, the admin and library URLs included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import segno
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import SESSION_KEY
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.contrib.auth.signals import user_logged_in
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.db import transaction
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import Resolver404, resolve, reverse
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp import login as otp_login
from django_otp.forms import OTPAuthenticationFormMixin
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from pathways.middleware import api_unauthorized

AUTHENTICATOR = "Authenticator app"
RECOVERY = "Recovery codes"
RECOVERY_CODE_COUNT = 10


def is_enrolled(user: AbstractBaseUser | AnonymousUser) -> bool:
    """The user has a confirmed authenticator, so every log-in asks for a code."""
    return TOTPDevice.objects.filter(user_id=user.pk, confirmed=True).exists()


def must_enrol(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Staff must use two-factor when required; clinicians may."""
    staff = bool(getattr(user, "is_staff", False) or getattr(user, "is_superuser", False))
    return staff and settings.ALPCARE_REQUIRE_STAFF_2FA


def is_verified(request: HttpRequest) -> bool:
    return bool(getattr(request.user, "is_verified", lambda: False)())


# --- services -------------------------------------------------------------------------------


@transaction.atomic
def authenticator_start(*, user: User) -> TOTPDevice:
    """A fresh, unconfirmed authenticator for the user (replacing any earlier unconfirmed one)."""
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    return TOTPDevice.objects.create(user=user, name=AUTHENTICATOR, confirmed=False)


@transaction.atomic
def authenticator_confirm(*, user: User, device: TOTPDevice) -> list[str]:
    """Make ``device`` the user's only authenticator; returns new recovery codes (shown once)."""
    TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    return recovery_codes_regenerate(user=user)


@transaction.atomic
def recovery_codes_regenerate(*, user: User) -> list[str]:
    """Replace the user's recovery codes; each works once. The user's row is locked first: two
    at once (a double click) left two sets of codes, or a second device, working."""
    User.objects.select_for_update().filter(pk=user.pk).first()
    device, _ = StaticDevice.objects.get_or_create(
        user=user, name=RECOVERY, defaults={"confirmed": True}
    )
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODE_COUNT)]
    StaticToken.objects.bulk_create(
        [StaticToken(device=device, token=recovery_code_digest(user.pk, code)) for code in codes]
    )
    return codes


def recovery_code_digest(user_pk: int, code: str, secret: str | None = None) -> str:
    """What is kept of a recovery code: a keyed hash (SECRET_KEY, salted with the user), in the
    16 characters of django-otp's token column. A copy of the database (a backup, a replica)
    yields no working code; the code itself is shown once, when it is made."""
    return salted_hmac(
        "alpcare.recovery-code", f"{user_pk}:{code}", secret=secret, algorithm="sha256"
    ).hexdigest()[:16]


def _recovery_code_digests(user_pk: int, code: str) -> list[str]:
    """The code's digest under SECRET_KEY and each of SECRET_KEY_FALLBACKS (a rotated key)."""
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return [recovery_code_digest(user_pk, code, secret) for secret in secrets]


def _live_sessions_of(user_pk: Any, keep: str | None = None) -> list[Session]:
    """The user's live sessions but ``keep``. Sessions are not indexed by user: this reads the
    live ones, once, when two-factor is turned on or an authenticator is added."""
    live = Session.objects.filter(expire_date__gt=timezone.now()).exclude(session_key=keep)
    return [
        session
        for session in live.iterator()
        if session.get_decoded().get(SESSION_KEY) == str(user_pk)
    ]


def sessions_end_others(*, user: User, keep: str | None) -> int:
    """Log ``user`` out of every session but ``keep``: each decided at its log-in whether it
    owed a code, so one opened before two-factor was turned on would go on without one."""
    theirs = [session.session_key for session in _live_sessions_of(user.pk, keep)]
    Session.objects.filter(session_key__in=theirs).delete()
    return len(theirs)


def sessions_owe_code(*, user_pk: Any) -> int:
    """Every live session of the user owes a code from its next request (those that gave one
    stay verified): an authenticator added in the admin, where no session of theirs is at
    hand, must not leave one opened with the password alone going on without a code."""
    theirs = _live_sessions_of(user_pk)
    for session in theirs:
        data = session.get_decoded()
        if not data.get(_OWES_CODE):
            data[_OWES_CODE] = True
            session.session_data = SessionStore().encode(data)
            session.save(update_fields=["session_data"])
    return len(theirs)


@receiver(pre_save, sender=TOTPDevice)
def _note_confirmed_before(sender: Any, instance: TOTPDevice, **kwargs: Any) -> None:
    instance._was_confirmed = (
        instance.pk is not None
        and TOTPDevice.objects.filter(pk=instance.pk, confirmed=True).exists()
    )


@receiver(post_save, sender=TOTPDevice)
def _confirmed_device_makes_sessions_owe_a_code(
    sender: Any, instance: TOTPDevice, **kwargs: Any
) -> None:
    """An authenticator confirmed (set up on the two-factor page, or added in the admin): the
    user's sessions opened without a code owe one (each decided only at its log-in)."""
    if instance.confirmed and not getattr(instance, "_was_confirmed", True):
        sessions_owe_code(user_pk=instance.user_id)


@transaction.atomic
def two_factor_disable(*, user: User) -> None:
    TOTPDevice.objects.filter(user=user).delete()
    StaticDevice.objects.filter(user=user).delete()


def otpauth_qr_svg(device: TOTPDevice) -> str:
    """The otpauth:// URI as an SVG data URI (allowed by the CSP's img-src data:)."""
    return segno.make(device.config_url, error="m").svg_data_uri(scale=4, border=2)


def base32_secret(device: TOTPDevice) -> str:
    """The secret as authenticator apps take it when typed in (the otpauth URI's ``secret``)."""
    from base64 import b32encode

    return b32encode(device.bin_key).decode()


# --- middleware -----------------------------------------------------------------------------

# Whether this session owes a code, decided at log-in: no query per request for clinicians.
_OWES_CODE = "alpcare_owes_otp_code"
# The authenticator this session is setting up: its secret is shown to this session only (one
# holding just the password, in another session, must not read it and pass two-factor later).
_PENDING_DEVICE = "alpcare_2fa_pending"


def owes_code(request: HttpRequest) -> bool:
    if _OWES_CODE not in request.session:  # a session from before this was deployed
        request.session[_OWES_CODE] = is_enrolled(request.user)
    return bool(request.session[_OWES_CODE])


@receiver(user_logged_in)
def _decide_at_log_in(sender: Any, request: HttpRequest | None, user: User, **kwargs: Any) -> None:
    if request is not None and hasattr(request, "session"):
        request.session[_OWES_CODE] = is_enrolled(user)


_VERIFY_PATHS = frozenset({"two_factor_verify", "logout"})
_ENROL_PATHS = frozenset({"two_factor", "two_factor_setup", "two_factor_confirm", "logout"})


class TwoFactorMiddleware:
    """A signed-in user who owes a code (or, as staff, an enrolment) reaches nothing else."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or is_verified(request):
            return self.get_response(request)
        staff_required = must_enrol(user)
        # Enrolled since this session began (a device added in the admin): it owes a code too.
        if owes_code(request) or (staff_required and is_enrolled(user)):
            allowed, target, message = _VERIFY_PATHS, "two_factor_verify", "code required"
        elif staff_required:
            allowed, target, message = _ENROL_PATHS, "two_factor", "two-factor set-up required"
        else:
            return self.get_response(request)
        try:
            name = resolve(request.path_info).view_name  # namespaced: "admin:logout" differs
        except Resolver404:
            name = None
        if name in allowed:
            request.two_factor_pending = True  # type: ignore[attr-defined]  # base.html: no menu
            return self.get_response(request)
        if request.path.startswith("/api/"):
            return api_unauthorized("", message)
        return redirect(f"{reverse(target)}?{urlencode({'next': request.get_full_path()})}")


# --- views ----------------------------------------------------------------------------------


class LoginView(auth_views.LoginView):
    """The password step; someone enrolled is sent on to give a code (the middleware holds
    them there), staff who must enrol to set two-factor up."""

    def get_success_url(self) -> str:
        next_url = super().get_success_url()
        user = self.request.user
        if owes_code(self.request):
            return f"{reverse('two_factor_verify')}?{urlencode({'next': next_url})}"
        if must_enrol(user):
            return f"{reverse('two_factor')}?{urlencode({'next': next_url})}"
        return next_url


class CodeForm(OTPAuthenticationFormMixin, forms.Form):
    """A six-digit code from the authenticator app, or one recovery code: which of the two
    follows from what is typed, so there is nothing to choose first.

    django-otp checks a code against the one device the form names (trying every device
    would count a failure against each that does not match, and throttle it). The form
    asked the user to pick "authenticator" or "recovery code" first; a recovery code typed
    with the default choice was refused as "Invalid token" and counted as a failed
    authenticator code. A code of the authenticator's digits is the authenticator's; any
    other is a recovery code (those are eight letters and digits)."""

    otp_token = forms.CharField(
        label="Code",
        max_length=16,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "text", "autofocus": True}
        ),
    )

    def __init__(self, user: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.user = user

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        self.clean_otp(self.user)
        return cleaned

    def get_user(self) -> Any:
        return self.user

    def clean_otp_token(self) -> str:
        return typed_code(self.cleaned_data.get("otp_token"))

    def _verify_token(self, user: Any, token: str, device: Any = None) -> Any:
        if isinstance(device, StaticDevice):  # recovery codes are kept as digests
            digests = _recovery_code_digests(user.pk, token)
            kept = device.token_set.filter(token__in=digests).values_list("token", flat=True)
            token = kept.first() or digests[0]
        return super()._verify_token(user, token, device)

    def _chosen_device(self, user: Any) -> TOTPDevice | StaticDevice | None:
        token = self.cleaned_data.get("otp_token") or ""
        # Locked, as django-otp locks the device it verifies against (a recovery code must
        # not be accepted twice by two requests at once).
        authenticator = (
            TOTPDevice.objects.select_for_update().filter(user=user, confirmed=True).first()
        )
        digits = token.isascii() and token.isdecimal()
        if authenticator is not None and digits and len(token) == authenticator.digits:
            return authenticator
        return StaticDevice.objects.select_for_update().filter(user=user, confirmed=True).first()


def typed_code(text: object) -> str:
    """A code as typed or pasted: apps show "123 456"; spaces are not part of a code, and a
    recovery code (lower-case letters and digits) typed in capitals is the same code."""
    return "".join(str(text or "").split()).lower()


def _next_url(request: HttpRequest) -> str:
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return next_url
    return reverse(settings.LOGIN_REDIRECT_URL)


@login_required
@require_http_methods(["GET", "POST"])
def two_factor_verify(request: HttpRequest) -> HttpResponse:
    """The second step of log-in: a code from the authenticator app or a recovery code."""
    if not is_enrolled(request.user):  # e.g. an administrator removed the authenticator
        request.session[_OWES_CODE] = False
    if is_verified(request) or not request.session[_OWES_CODE]:
        return redirect(_next_url(request))
    form = CodeForm(request.user, request, data=request.POST or None)
    if request.method == "POST" and form.is_valid():
        device = form.user.otp_device  # the device that accepted the code
        request.session.cycle_key()
        otp_login(request, device)
        if isinstance(device, StaticDevice):
            left = device.token_set.count()
            messages.warning(
                request,
                f"You used a recovery code; {left} left. "
                "Generate new ones on the two-factor page if you are running low.",
            )
        return redirect(_next_url(request))
    return render(
        request, "registration/two_factor_verify.html", {"form": form, "next": _next_url(request)}
    )


@login_required
@require_http_methods(["GET"])
def two_factor(request: HttpRequest) -> HttpResponse:
    """Two-factor status; set-up (QR code, secret, confirm with a code), recovery codes,
    turning it off."""
    return _page(request, pending=_pending(request))


def _pending(request: HttpRequest) -> TOTPDevice | None:
    """The unconfirmed authenticator this session started, if it is still the user's."""
    pk = request.session.get(_PENDING_DEVICE)
    if not isinstance(pk, int):
        return None
    return TOTPDevice.objects.filter(pk=pk, user_id=request.user.pk, confirmed=False).first()


def _page(
    request: HttpRequest,
    *,
    pending: TOTPDevice | None = None,
    form: forms.Form | None = None,
    recovery_codes: list[str] | None = None,
    status: int = 200,
) -> HttpResponse:
    user = request.user
    enrolled = is_enrolled(user)
    context: dict[str, Any] = {
        "enrolled": enrolled,
        "required": must_enrol(user),
        "pending": pending,
        "form": form or ConfirmForm(),
        "recovery_codes": recovery_codes,
        "recovery_left": StaticToken.objects.filter(device__user_id=user.pk).count(),
        "next": _next_url(request),
    }
    if pending is not None:
        context["qr_svg"] = otpauth_qr_svg(pending)
        context["otpauth_uri"] = pending.config_url
        context["secret"] = base32_secret(pending)
    return render(request, "registration/two_factor.html", context, status=status)


class ConfirmForm(forms.Form):
    code = forms.CharField(
        label="Code from your authenticator app",
        max_length=8,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )

    def clean_code(self) -> str:
        return typed_code(self.cleaned_data.get("code"))


@login_required
@require_POST
def two_factor_setup(request: HttpRequest) -> HttpResponse:
    if is_enrolled(request.user) and not is_verified(request):
        return _code_first(request)  # replacing an authenticator needs a code from it first
    device = authenticator_start(user=request.user)  # type: ignore[arg-type]
    request.session[_PENDING_DEVICE] = device.pk
    return redirect(f"{reverse('two_factor')}?{urlencode({'next': _next_url(request)})}")


@login_required
@require_POST
def two_factor_confirm(request: HttpRequest) -> HttpResponse:
    if is_enrolled(request.user) and not is_verified(request):
        return _code_first(request)
    pending = _pending(request)
    if pending is None:
        messages.error(request, "Start the set-up first (on this page, in this browser).")
        return redirect("two_factor")
    form = ConfirmForm(request.POST)
    if form.is_valid() and pending.verify_token(form.cleaned_data["code"]):
        codes = authenticator_confirm(user=request.user, device=pending)  # type: ignore[arg-type]
        request.session.pop(_PENDING_DEVICE, None)
        request.session.cycle_key()
        request.session[_OWES_CODE] = True
        otp_login(request, pending)
        request.session.save()
        ended = sessions_end_others(user=request.user, keep=request.session.session_key)  # type: ignore[arg-type]
        if ended:
            messages.info(request, f"Logged out of {ended} other session(s): log in again there.")
        messages.success(request, "Two-factor is on. Keep the recovery codes below safe.")
        return _page(request, recovery_codes=codes)
    if form.is_valid():
        form.add_error("code", "That code is not right (or has expired): try the current one.")
    return _page(request, pending=pending, form=form, status=400)


def _code_first(request: HttpRequest) -> HttpResponse:
    """A session that has not given a code (one opened before two-factor was turned on, say)
    changes nothing about two-factor until it gives one."""
    request.session[_OWES_CODE] = True
    messages.error(request, "Give a code from your authenticator app first.")
    return redirect(f"{reverse('two_factor_verify')}?{urlencode({'next': reverse('two_factor')})}")


@login_required
@require_POST
def two_factor_recovery_codes(request: HttpRequest) -> HttpResponse:
    if not is_enrolled(request.user):
        return redirect("two_factor")
    if not is_verified(request):
        return _code_first(request)
    codes = recovery_codes_regenerate(user=request.user)  # type: ignore[arg-type]
    messages.success(request, "New recovery codes: the old ones no longer work.")
    return _page(request, recovery_codes=codes)


@login_required
@require_POST
def two_factor_off(request: HttpRequest) -> HttpResponse:
    if must_enrol(request.user):
        messages.error(request, "Two-factor is required for staff accounts.")
        return redirect("two_factor")
    if is_enrolled(request.user) and not is_verified(request):
        return _code_first(request)
    two_factor_disable(user=request.user)  # type: ignore[arg-type]
    request.session.pop(DEVICE_ID_SESSION_KEY, None)
    request.session[_OWES_CODE] = False
    messages.success(request, "Two-factor is off.")
    return redirect("two_factor")
