from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest
from simple_history.admin import SimpleHistoryAdmin

from pathways import rules_admin  # noqa: F401  (registers the rule-set admin)
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


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(Clinic)
class ClinicAdmin(SimpleHistoryAdmin):
    list_display = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(SimpleHistoryAdmin):
    list_display = ["user", "clinic", "role"]
    list_filter = ["clinic", "role"]


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


class ReadOnlyClinicAdmin(admin.ModelAdmin):
    """Rows written elsewhere, shown read-only and scoped to the user's clinics."""

    clinic_path = "patient__clinic"

    def get_queryset(self, request: HttpRequest) -> Any:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{f"{self.clinic_path}__memberships__user": request.user})

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyHistoryAdmin(ReadOnlyClinicAdmin, SimpleHistoryAdmin):
    """Patient data is edited in the clinical screens (optimistic locking, follow-up sync);
    the admin shows it with its full change history."""


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
class AccessLogAdmin(ReadOnlyClinicAdmin):
    list_display = ["at", "user", "patient", "action", "path"]
    list_filter = ["action"]
    list_select_related = ["user", "patient"]
    search_fields = ["user__username", "patient__mrn", "patient__name"]
    date_hierarchy = "at"


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
