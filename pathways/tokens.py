"""API tokens page: every user creates and revokes their own tokens (clinicians have no admin).

A new token's key is shown once, on the response to the POST that created it; only its
SHA-256 digest is stored. Superusers create tokens for other users in the admin.
"""

from __future__ import annotations

import unicodedata
from datetime import timedelta
from typing import Any

from crispy_forms.helper import FormHelper
from crispy_forms.layout import Submit
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from pathways.models import API_TOKEN_LIFETIME, ApiToken

LIFETIME_CHOICES = [(30, "30 days"), (90, "90 days"), (180, "180 days"), (365, "1 year")]


# Bidirectional overrides and isolates: they make a name read as another ("lab\u202eeef").
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def token_name_problem(name: str) -> str | None:
    """Why a token's name cannot identify it on the page (None when it can): control
    characters, text-direction overrides, or nothing visible (zero-width characters only)."""
    if any(unicodedata.category(c) == "Cc" or c in _BIDI_CONTROLS for c in name):
        return "No line breaks, control characters or text-direction overrides."
    if not any(unicodedata.category(c)[0] not in "ZC" for c in name):
        return "Give a name that shows: letters, digits or signs."
    return None


def scope_list(chosen: list[str]) -> str:
    """The chosen scopes in their canonical order, space-separated (as stored)."""
    return " ".join(scope for scope in ApiToken.Scope.values if scope in chosen)


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        max_length=100, help_text="What uses it, e.g. “EHR integration” or “lab feed”."
    )
    scopes = forms.MultipleChoiceField(
        choices=ApiToken.Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text="Give it only what it needs.",
    )
    lifetime_days = forms.TypedChoiceField(
        choices=LIFETIME_CHOICES,
        coerce=int,
        initial=API_TOKEN_LIFETIME.days,
        label="Expires after",
    )

    def __init__(self, *args: object, user: Any = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.user = user
        self.helper = FormHelper()
        self.helper.form_method = "post"
        self.helper.add_input(Submit("create", "Create token"))

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"]
        if (problem := token_name_problem(name)) is not None:
            raise forms.ValidationError(problem)
        # Also what a reload of the page that showed a new key sends again: not a second token.
        active = ApiToken.objects.filter(revoked=False, expires_at__gt=timezone.now())
        if active.filter(user=self.user, name=name).exists():
            raise forms.ValidationError(
                f"You have an active token named “{name}”: revoke it first, or choose another name."
            )
        return name


def _render(
    request: HttpRequest,
    form: ApiTokenForm,
    *,
    created: ApiToken | None = None,
    key: str = "",
    status: int = 200,
) -> HttpResponse:
    tokens = ApiToken.objects.filter(user_id=request.user.pk or 0)
    context = {"form": form, "tokens": tokens, "created": created, "key": key}
    return render(request, "pathways/api_tokens.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def api_tokens(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _render(request, ApiTokenForm())
    with transaction.atomic():
        # The user's row orders two posts at once (a double click): the second sees the first's
        # token and is refused by name, rather than minting a second key.
        User.objects.select_for_update().filter(pk=request.user.pk or 0).first()
        form = ApiTokenForm(request.POST, user=request.user)
        if not form.is_valid():
            return _render(request, form, status=400)
        token, key = ApiToken.issue(
            user=request.user,
            name=form.cleaned_data["name"],
            scopes=form.cleaned_data["scopes"],
            expires_at=timezone.now() + timedelta(days=form.cleaned_data["lifetime_days"]),
        )
    # Rendered, not redirected: the key must not travel through the session or a cookie.
    return _render(request, ApiTokenForm(), created=token, key=key)


@login_required
@require_POST
def api_token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    with transaction.atomic():  # an admin saving the token meanwhile waits, then keeps it
        token = get_object_or_404(ApiToken.objects.select_for_update(), pk=pk, user=request.user)
        if not token.revoked:
            token.revoked = True
            token.save(update_fields=["revoked"])
            messages.success(request, f"Token “{token.name}” ({token.prefix}…) is revoked.")
    return redirect("api_tokens")
