from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone

from pathways import feed_admin, rules_admin  # noqa: F401  (register their admins)
from pathways.admin_history import (
    CLINIC_FILTER,
    ClinicScopedAdmin,
    ClinicScopedHistoryAdmin,
    ReadOnlyAdmin,
)
from pathways.models import (
    API_TOKEN_LIFETIME,
    AccessLog,
    ApiToken,
    CardAction,
    CdsClient,
    CdsFeedback,
    Clinic,
    FollowUp,
    LabResult,
    Membership,
    Patient,
    Therapy,
)
from pathways.tokens import scope_list, token_name_problem


def _users_clinics(request: HttpRequest) -> QuerySet[Clinic]:
    return Clinic.objects.filter(memberships__user=cast(User, request.user))


def _assignable_users(request: HttpRequest) -> QuerySet[User]:
    """Users a staff member may add to their clinics: their colleagues and unassigned accounts."""
    users = User.objects.order_by("username")
    if request.user.is_superuser:
        return users
    return users.filter(
        Q(memberships__clinic__in=_users_clinics(request)) | Q(memberships__isnull=True)
    ).distinct()


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "user":
            kwargs["queryset"] = _assignable_users(request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class AccountAdmin(UserAdmin):
    """Accounts are deactivated (untick "Active"), never deleted: deleting one cleared who
    published a rule set, reviewed a draft, acted on a card or entered a result (their
    foreign keys are SET_NULL) and every history row's author, with no record of it."""

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


admin.site.unregister(User)
admin.site.register(User, AccountAdmin)


@admin.register(Clinic)
class ClinicAdmin(ClinicScopedHistoryAdmin):
    list_display = ["name", "slug"]
    inlines = [MembershipInline]

    def get_prepopulated_fields(self, request: HttpRequest, obj: Any = None) -> dict[str, Any]:
        # A method, not the attribute: the read-only history form reads the attribute.
        return {"slug": ["name"]}

    def _in_users_clinics(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if request.user.is_superuser:
            return queryset
        # Historical rows have no reverse relations: match clinic ids instead.
        return queryset.filter(id__in=_users_clinics(request).values("id"))


@admin.register(Membership)
class MembershipAdmin(ClinicScopedHistoryAdmin):
    clinic_path = "clinic"
    list_display = ["user", "clinic", "role"]
    list_filter = [CLINIC_FILTER, "role"]

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if not request.user.is_superuser:
            if db_field.name == "clinic":
                kwargs["queryset"] = _users_clinics(request)
            elif db_field.name == "user":
                kwargs["queryset"] = _assignable_users(request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class LabResultInline(admin.TabularInline):
    model = LabResult
    extra = 0
    fields = (
        "test",
        "value",
        "unit",
        "canonical_value",
        "collected_on",
        "collected_time",
        "reference_low",
        "reference_high",
        "source",
        "entered_by",
    )
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TherapyInline(admin.TabularInline):
    model = Therapy
    extra = 0
    readonly_fields = ["agent", "start", "end"]
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyClinicAdmin(ReadOnlyAdmin, ClinicScopedAdmin):
    """Rows written elsewhere, shown read-only and scoped to the user's clinics."""


class ReadOnlyHistoryAdmin(ReadOnlyClinicAdmin, ClinicScopedHistoryAdmin):
    """Patient data is edited in the clinical screens (optimistic locking, follow-up sync);
    the admin shows it with its full change history, scoped like the rows themselves."""


@admin.register(Patient)
class PatientAdmin(ReadOnlyHistoryAdmin):
    clinic_path = "clinic"
    list_display = ["name", "mrn", "clinic", "birth_date", "sex", "version", "updated_at"]
    list_filter = [CLINIC_FILTER, "sex"]
    search_fields = ["name", "mrn"]
    inlines = [LabResultInline, TherapyInline]


@admin.register(LabResult)
class LabResultAdmin(ReadOnlyHistoryAdmin):
    list_display = ["patient", "test", "value", "unit", "collected_on", "collected_time", "source"]
    list_filter = ["test", "source"]
    search_fields = ["patient__name", "patient__mrn"]


@admin.register(Therapy)
class TherapyAdmin(ReadOnlyHistoryAdmin):
    list_display = ["patient", "agent", "start", "end"]


@admin.register(FollowUp)
class FollowUpAdmin(ReadOnlyHistoryAdmin):
    list_display = ["patient", "code", "due", "rule", "rule_set_version", "completed_at"]
    list_filter = ["code", "rule_set_version"]


@admin.register(CardAction)
class CardActionAdmin(ReadOnlyHistoryAdmin):
    """Clinicians' actions on cards (taken on the worklist and patient pages, or fed back by
    an EHR): each, its undo and its end, with who and when."""

    clinic_path = "clinic"
    list_display = ["at", "patient", "code", "kind", "reason", "by", "undone_at", "ended_at"]
    list_filter = ["kind", "reason", "source", CLINIC_FILTER]
    list_select_related = ["patient", "by"]
    search_fields = ["code", "patient__mrn"]
    date_hierarchy = "at"


@admin.register(AccessLog)
class AccessLogAdmin(ReadOnlyClinicAdmin):
    list_display = ["at", "user", "patient", "action", "path"]
    list_filter = ["action"]
    list_select_related = ["user", "patient"]
    search_fields = ["user__username", "patient__mrn", "patient__name"]
    date_hierarchy = "at"


class ApiTokenAdminForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=ApiToken.Scope.choices, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = ApiToken
        fields = ["user", "name", "scopes", "expires_at", "revoked"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["scopes"] = self.instance.scope_list

    def clean_scopes(self) -> str:
        return scope_list(self.cleaned_data["scopes"])

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"]
        if (problem := token_name_problem(name)) is not None:
            raise forms.ValidationError(problem)
        return name

    def clean_expires_at(self) -> Any:
        expires_at = self.cleaned_data["expires_at"]
        if self.instance.pk and "expires_at" not in self.changed_data:
            return expires_at
        if expires_at <= timezone.now():
            raise forms.ValidationError("Must be in the future.")
        if expires_at > timezone.now() + API_TOKEN_LIFETIME + timedelta(days=1):
            raise forms.ValidationError(f"At most {API_TOKEN_LIFETIME.days} days from now.")
        return expires_at


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Superusers issue tokens for anyone; other staff only for themselves (a token acts as its
    user, so minting one for another user would be acting as them). A token never changes
    hands, and the key is shown once."""

    form = ApiTokenAdminForm
    list_display = ["name", "user", "prefix", "scopes", "created_at", "expires_at", "revoked"]
    list_filter = ["revoked"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]

    def get_queryset(self, request: HttpRequest) -> Any:
        queryset = super().get_queryset(request).select_related("user")
        if request.user.is_superuser:
            return queryset
        return queryset.filter(user=request.user)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ["user", "name", "scopes", "expires_at", "revoked", *self.readonly_fields]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        readonly = list(self.readonly_fields)
        if obj is not None:
            readonly.append("user")
            if not request.user.is_superuser:
                readonly.append("expires_at")
            if obj.revoked:  # for good: a revoked key may have leaked
                readonly.append("revoked")
        return readonly

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "user" and not request.user.is_superuser:
            kwargs["queryset"] = get_user_model().objects.filter(pk=request.user.pk or 0)
            kwargs["initial"] = request.user.pk
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if not request.user.is_superuser and obj.user_id != request.user.pk:
            raise PermissionDenied("Only a superuser may issue a token for another user.")
        if change:
            # Revoked meanwhile (the owner's API tokens page): it stays revoked, for good.
            stored = ApiToken.objects.select_for_update().get(pk=obj.pk)
            obj.revoked = obj.revoked or stored.revoked
            super().save_model(request, obj, form, change)
            return
        token, raw = ApiToken.issue(
            user=obj.user, name=obj.name, scopes=obj.scope_list, expires_at=obj.expires_at
        )
        obj.pk = token.pk
        obj.refresh_from_db()
        request._alpcare_issued_key = raw  # type: ignore[attr-defined]  # for response_add

    def response_add(
        self, request: HttpRequest, obj: ApiToken, post_url_continue: Any = None
    ) -> Any:
        """The new key on a page of its own, once: never in a message, which travels in a
        cookie (signed, not encrypted) or the session on the redirect."""
        raw = getattr(request, "_alpcare_issued_key", None)
        if raw is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"API token {obj.name} for {obj.user}",
            "token": obj,
            "key": raw,
        }
        return TemplateResponse(request, "admin/pathways/apitoken/issued.html", context)


class CdsClientForm(forms.ModelForm):
    jwks_url = forms.URLField(
        label="JWKS URL",
        max_length=500,
        required=False,
        assume_scheme="https",
        help_text=CdsClient._meta.get_field("jwks_url").help_text,
    )

    fhir_base_url = forms.URLField(
        label="FHIR server base URL",
        max_length=500,
        required=False,
        assume_scheme="https",
        help_text=CdsClient._meta.get_field("fhir_base_url").help_text,
    )

    class Meta:
        model = CdsClient
        fields = [
            "name",
            "issuer",
            "clinic",
            "jwks_url",
            "jwks",
            "mrn_system",
            "fhir_base_url",
            "active",
        ]

    def clean_jwks(self) -> Any:
        jwks = self.cleaned_data.get("jwks")
        if jwks in (None, "", {}):
            return None
        import jwt

        try:
            key_set = jwt.PyJWKSet.from_dict(jwks)
        except (jwt.PyJWKSetError, jwt.PyJWKError, TypeError, AttributeError) as error:
            raise forms.ValidationError(f"not a usable JSON Web Key Set: {error}") from None
        if any(key.key_type not in ("EC", "RSA") for key in key_set.keys):
            raise forms.ValidationError("keys must be EC (ES384) or RSA (RS384) public keys")
        if any(getattr(key.key, "private_numbers", None) for key in key_set.keys):
            raise forms.ValidationError("a private key was pasted: give the public keys only")
        return jwks

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not cleaned.get("jwks_url") and not cleaned.get("jwks"):
            raise forms.ValidationError("Give the client's JWKS URL or its JWKS.")
        url = cleaned.get("jwks_url") or ""
        if url and not url.startswith("https://") and not settings.DEBUG:
            self.add_error("jwks_url", "must be https")
        return cleaned


@admin.register(CdsClient)
class CdsClientAdmin(ClinicScopedHistoryAdmin):
    """EHRs trusted to call the CDS Hooks services for one of the user's clinics."""

    form = CdsClientForm
    clinic_path = "clinic"
    list_display = ["name", "issuer", "clinic", "active", "created_at"]
    list_filter = [CLINIC_FILTER, "active"]

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "clinic" and not request.user.is_superuser:
            kwargs["queryset"] = _users_clinics(request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(CdsFeedback)
class CdsFeedbackAdmin(ReadOnlyClinicAdmin):
    """What clinicians did with alpcare's cards in the EHR (written by the feedback endpoint)."""

    clinic_path = "received_by__clinic"
    list_display = ["outcome_at", "outcome", "override_reason", "card", "received_by"]
    list_filter = ["outcome", "override_reason"]
