"""Clinic scoping: a user reaches only their own clinics' patients; others are a 404."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.http import Http404, HttpRequest

from pathways.models import Clinic, Patient
from pathways.services import access_log_record


def is_id(text: object) -> bool:
    """A database id as typed in a URL or a form: ASCII digits. (str.isdigit accepts "²",
    which int() and the database then refuse with an error.)"""
    return isinstance(text, str) and text.isascii() and text.isdecimal()


def user_clinics(user: Any) -> list[Clinic]:
    return list(Clinic.objects.filter(memberships__user=user).distinct())


def patient_for_user(
    request: HttpRequest, pk: int, *, action: str, prefetch: Sequence[str] = ()
) -> Patient:
    """The patient if the user may see it (the read is logged), else 404 — never 403.

    The one way a view or the API reads a stored patient; `prefetch` names the related rows the
    caller reads next (e.g. "lab_results"), fetched in one query each.
    """
    patients = Patient.objects.for_user(request.user).select_related("clinic")
    patient = patients.prefetch_related(*prefetch).filter(pk=pk).first()
    if patient is None:
        raise Http404("No such patient.")
    access_log_record(user=request.user, patient=patient, action=action, path=request.path)
    return patient
