from __future__ import annotations

from typing import Any, cast

from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from pathways import rules_admin  # noqa: F401  (registers the rule-set admin)
from pathways.admin_history import ClinicScopedHistoryAdmin
from pathways.models import (
    AccessLog,
    ApiToken,
    Clinic,
    FollowUp,
    LabResult,
    Membership,
    Patient,
    Therapy,
)


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
    list_filter = ["clinic", "role"]

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


class ReadOnlyHistoryAdmin(ClinicScopedHistoryAdmin):
    """Patient data is edited in the clinical screens (optimistic locking, follow-up sync);
    the admin shows it with its full change history, scoped to the user's clinics."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Patient)
class PatientAdmin(ReadOnlyHistoryAdmin):
    clinic_path = "clinic"
    list_display = ["name", "mrn", "clinic", "birth_date", "sex", "version", "updated_at"]
    list_filter = ["clinic", "sex"]
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


@admin.register(AccessLog)
class AccessLogAdmin(admin.ModelAdmin):
    list_display = ["at", "user", "patient", "action", "path"]
    list_filter = ["action"]
    search_fields = ["user__username", "patient__mrn", "patient__name"]
    date_hierarchy = "at"

    def get_queryset(self, request: HttpRequest) -> Any:
        queryset = super().get_queryset(request).select_related("user", "patient")
        if request.user.is_superuser:
            return queryset
        return queryset.filter(patient__clinic__memberships__user=request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "revoked"]
    list_filter = ["revoked"]
    fields = ["user", "name", "revoked", "prefix", "created_at", "last_used_at"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        token, raw = ApiToken.issue(user=obj.user, name=obj.name)
        obj.pk = token.pk
        obj.refresh_from_db()
        messages.warning(
            request,
            f"Token for {obj.user}: {raw} — copy it now; only its hash is stored, "
            "it cannot be shown again.",
        )
