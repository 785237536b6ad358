"""The HL7 lab feed in the admin: feeds (sending facility -> clinic, service user), local
codes, received messages (read-only), and results, where an unmatched one is matched to a
patient, a test or a unit and applied (pathways/feed.py). Everything is limited to the staff
member's clinics."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponseRedirect

from pathways import feed
from pathways.admin_history import (
    CLINIC_FILTER,
    ClinicScopedAdmin,
    ClinicScopedHistoryAdmin,
    ReadOnlyAdmin,
)
from pathways.feed_models import Hl7Feed, Hl7LocalCode, Hl7Message, Hl7Result
from pathways.models import UNIT_CHOICES, Clinic, Patient


def _clinics(request: HttpRequest) -> Any:
    if request.user.is_superuser:
        return Clinic.objects.all()
    return Clinic.objects.filter(memberships__user=cast(User, request.user))


class _ClinicChoice(ClinicScopedHistoryAdmin):
    clinic_path = "clinic"

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "clinic":
            kwargs["queryset"] = _clinics(request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class Hl7FeedForm(forms.ModelForm):
    class Meta:
        model = Hl7Feed
        fields = ["sending_facility", "clinic", "service_user", "assigning_authority", "enabled"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        clinic, user = data.get("clinic"), data.get("service_user")
        if (
            clinic is not None
            and user is not None
            and not user.memberships.filter(clinic=clinic).exists()
        ):
            self.add_error(
                "service_user",
                f"{user.username} is not a member of {clinic}: the results this feed stores "
                "are recorded as theirs.",
            )
        return data


@admin.register(Hl7Feed)
class Hl7FeedAdmin(_ClinicChoice):
    form = Hl7FeedForm
    list_display = ["sending_facility", "clinic", "service_user", "assigning_authority", "enabled"]
    list_filter = ["enabled", CLINIC_FILTER]

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "service_user":  # a member of the staff member's clinics
            kwargs["queryset"] = (
                User.objects.filter(memberships__clinic__in=_clinics(request))
                .distinct()
                .order_by("username")
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(Hl7LocalCode)
class Hl7LocalCodeAdmin(_ClinicChoice):
    list_display = ["code", "test", "clinic"]
    list_filter = [CLINIC_FILTER, "test"]
    search_fields = ["code"]


@admin.register(Hl7Message)
class Hl7MessageAdmin(ReadOnlyAdmin, ClinicScopedAdmin):
    clinic_path = "clinic"
    list_display = ["received_at", "sending_facility", "control_id", "status", "ack_code",
                    "ack_text", "resent", "received_via"]  # fmt: skip
    list_filter = ["status", "ack_code", "received_via"]
    search_fields = ["control_id", "sending_facility"]


class Hl7ResultForm(forms.ModelForm):
    unit_matched = forms.ChoiceField(
        choices=[("", "—"), *UNIT_CHOICES], required=False, label="Unit (match)"
    )

    class Meta:
        model = Hl7Result
        fields = ["patient", "test", "unit_matched"]

    def clean(self) -> dict[str, Any]:
        """What feed.inbox_match refuses, said on the form (it checks again under lock)."""
        data = super().clean() or {}
        if self.instance.state != Hl7Result.State.UNMATCHED:
            raise forms.ValidationError("This result is no longer in the inbox.")
        patient = data.get("patient")
        if patient is not None and patient.clinic_id != self.instance.clinic_id:
            self.add_error("patient", "Not a patient of this result's clinic.")
        return data


@admin.register(Hl7Result)
class Hl7ResultAdmin(ClinicScopedHistoryAdmin):
    """The unmatched inbox (filter by state): choose a patient, a test or a unit and save to
    apply the result."""

    clinic_path = "clinic"
    form = Hl7ResultForm
    list_display = ["pk", "clinic", "mrn", "code", "value", "unit", "collected_at", "state",
                    "reason"]  # fmt: skip
    list_filter = ["state", CLINIC_FILTER]
    search_fields = ["mrn", "code", "filler_order"]
    readonly_fields = ["message", "clinic", "mrn", "assigning_authority", "patient_name",
                       "birth_date_sent", "sex_sent", "filler_order", "code", "coding_system",
                       "code_text", "sub_id", "value", "unit", "reference_range", "comment",
                       "status", "collected_at", "state", "reason",
                       "lab_result", "applied_at", "dismissed_by", "dismissed_at",
                       "dismissal_note", "withdrawn_by"]  # fmt: skip

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or obj.state == Hl7Result.State.UNMATCHED)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "patient":
            kwargs["queryset"] = Patient.objects.filter(clinic__in=_clinics(request))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        data = form.cleaned_data
        try:
            applied = feed.inbox_match(
                obj, user=request.user, patient=data.get("patient"), test=data.get("test") or "",
                unit=data.get("unit_matched") or "",
            )  # fmt: skip
        except ValueError as error:  # changed since the form was checked (another user)
            self.message_user(request, str(error), messages.ERROR)
            request._inbox_refused = True  # type: ignore[attr-defined]
            return
        if applied.state == Hl7Result.State.UNMATCHED:
            self.message_user(request, f"Still unmatched: {applied.reason}", messages.WARNING)
        else:
            self.message_user(request, "Result applied.", messages.SUCCESS)

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        if getattr(request, "_inbox_refused", False):
            return None  # nothing changed: no "changed" entry in the admin log
        return super().log_change(request, obj, message)

    def response_change(self, request: HttpRequest, obj: Any) -> Any:
        if getattr(request, "_inbox_refused", False):  # the error said, not "changed"
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)
