"""API tokens page: every user creates and revokes their own tokens (clinicians have no admin).

A new token's key is shown once, on the response to the POST that created it; only its
SHA-256 digest is stored. Superusers create tokens for other users in the admin.
"""

from __future__ import annotations

from datetime import timedelta

from crispy_forms.helper import FormHelper
from crispy_forms.layout import Submit
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from pathways.models import API_TOKEN_LIFETIME, ApiToken

LIFETIME_CHOICES = [(30, "30 days"), (90, "90 days"), (180, "180 days"), (365, "1 year")]


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

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.helper = FormHelper()
        self.helper.form_method = "post"
        self.helper.add_input(Submit("create", "Create token"))


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
    form = ApiTokenForm(request.POST)
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
