"""Change history in the admin: read-only everywhere, scoped like the objects it records.

django-simple-history's history form saves a POST with only the view permission and, when an
object is outside ``get_queryset``, falls back to the history table. Patient data is written
through the clinical screens (optimistic locking, follow-up sync) and rule sets through the
review-and-publish workflow, so the admin never reverts a row: it shows what changed, to
those who may see the object.
"""

from __future__ import annotations

from typing import Any, Final

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from simple_history.admin import SimpleHistoryAdmin

from pathways.access import is_id

_READ_ONLY_HISTORY_FORM = "_alpcare_history_form"


class ScopedHistoryAdmin(SimpleHistoryAdmin):
    """A history list and form that show only records of objects the user may see; no revert."""

    def history_scope(self, request: HttpRequest, records: QuerySet[Any]) -> QuerySet[Any]:
        """The historical rows this user may read; override where objects belong to a clinic."""
        return records

    def get_history_queryset(
        self, request: HttpRequest, history_manager: Any, pk_name: str, object_id: Any
    ) -> QuerySet[Any]:
        records = super().get_history_queryset(request, history_manager, pk_name, object_id)
        return self.history_scope(request, records)

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not is_id(str(object_id)):
            raise Http404
        return super().history_view(request, object_id, extra_context)

    def history_form_view(
        self,
        request: HttpRequest,
        object_id: str,
        version_id: str,
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        if request.method != "GET":
            raise PermissionDenied("History is read-only: change data through alpcare's screens.")
        if not (is_id(str(object_id)) and is_id(str(version_id))):
            raise Http404
        records = self.model.history.filter(
            **{self.opts.pk.attname: object_id, "history_id": version_id}
        )
        if not self.history_scope(request, records).exists():
            raise Http404
        setattr(request, _READ_ONLY_HISTORY_FORM, True)
        return super().history_form_view(request, object_id, version_id, extra_context)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        readonly = list(super().get_readonly_fields(request, obj))
        if getattr(request, _READ_ONLY_HISTORY_FORM, False):
            # Every field shown as text: no inputs, and no drop-down listing other clinics' rows.
            readonly += [
                field.name
                for field in self.model._meta.fields
                if field.editable and not field.auto_created and field.name not in readonly
            ]
        return readonly

    def revert_disabled(self, request: HttpRequest, obj: Any = None) -> bool:
        return True


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written elsewhere (the clinical screens, the lab feed, the publishing workflow):
    the admin shows them and never adds, changes or deletes one."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# A list's clinic filter: the clinics of the rows the staff member may see (the admin's own
# related-field filter lists every clinic, naming others' to them).
CLINIC_FILTER: Final = ("clinic", admin.RelatedOnlyFieldListFilter)


class ClinicScopedAdmin(admin.ModelAdmin):
    """Objects that belong to a clinic: the list and the objects are limited to the user's
    clinics (superusers see all)."""

    clinic_path = "patient__clinic"

    def _in_users_clinics(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{f"{self.clinic_path}__memberships__user": request.user})

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return self._in_users_clinics(request, super().get_queryset(request))


class ClinicScopedHistoryAdmin(ClinicScopedAdmin, ScopedHistoryAdmin):
    """A clinic's objects with their history, which is limited to the user's clinics too."""

    def history_scope(self, request: HttpRequest, records: QuerySet[Any]) -> QuerySet[Any]:
        # A historical row carries the clinic (or patient) it had then: a row from before a
        # move to another clinic stays with the clinic that owned it.
        return self._in_users_clinics(request, records)
