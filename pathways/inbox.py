"""The unmatched HL7 results inbox: a clinician matches a parked lab result to a patient of
the clinic, a test or a unit, and it is applied (pathways/feed.py) in one transaction."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Page, Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from pathways import feed
from pathways.access import is_id, user_clinics
from pathways.feed_models import Hl7Result
from pathways.models import LAB_TEST_CHOICES, UNIT_CHOICES, Patient


class MatchForm(forms.Form):
    mrn = forms.CharField(
        label="Patient MRN",
        max_length=40,
        required=False,
        help_text="a patient of the clinic",
        widget=forms.TextInput(attrs={"class": "form-control form-control-sm"}),
    )
    test = forms.ChoiceField(
        label="Test",
        choices=[("", "—"), *LAB_TEST_CHOICES],
        required=False,
        widget=forms.Select(attrs={"class": "form-select form-select-sm"}),
    )
    unit = forms.ChoiceField(
        label="Unit",
        choices=[("", "—"), *UNIT_CHOICES],
        required=False,
        widget=forms.Select(attrs={"class": "form-select form-select-sm"}),
    )


class DismissForm(forms.Form):
    note = forms.CharField(
        label="Why it is not stored",
        max_length=feed.DISMISSAL_NOTE_LENGTH,
        help_text="kept with the result",
        widget=forms.TextInput(attrs={"class": "form-control form-control-sm"}),
    )


def _inbox(request: HttpRequest, state: str = Hl7Result.State.UNMATCHED) -> Any:
    return Hl7Result.objects.filter(
        clinic__in=user_clinics(request.user), state=state
    ).select_related("clinic", "message", "dismissed_by", "withdrawn_by__message")


DISMISSED_SHOWN = 20  # the latest dismissals under the inbox; all of them in the admin


def _dismissed(request: HttpRequest) -> tuple[list[Hl7Result], int]:
    """The latest dismissed results of the user's clinics, and how many there are in all."""
    dismissed = _inbox(request, Hl7Result.State.DISMISSED).order_by("-dismissed_at", "-pk")
    return list(dismissed[:DISMISSED_SHOWN]), dismissed.count()


def _withdrawn(request: HttpRequest) -> tuple[list[Hl7Result], int]:
    """The latest results the laboratory withdrew while they waited in the inbox (never
    applied, unlike a stored result it withdrew), and how many there are in all."""
    withdrawn = (
        _inbox(request, Hl7Result.State.WITHDRAWN)
        .filter(withdrawn_by__isnull=False, applied_at__isnull=True)
        .order_by("-withdrawn_by__message__received_at", "-pk")
    )
    return list(withdrawn[:DISMISSED_SHOWN]), withdrawn.count()


def _parked(
    request: HttpRequest, result_pk: int, state: str = Hl7Result.State.UNMATCHED
) -> Hl7Result:
    result: Hl7Result | None = _inbox(request, state).filter(pk=result_pk).first()
    if result is None:
        raise Http404("no such result in your clinics' inbox")
    return result


RESULTS_PER_PAGE = 50


def _page(request: HttpRequest, holding: int | None = None) -> Page[Hl7Result]:
    """A page of the inbox, newest first; ``page`` from the query string (the match form posts
    to the page it was on), or the page that holds the row ``holding`` (a refused form shows
    its errors in its row, which newer results may have pushed to a later page)."""
    rows = _inbox(request)
    number: Any = request.GET.get("page")
    if holding is not None:
        newer = rows.filter(pk__gt=holding).count()  # newest first: by primary key
        number = newer // RESULTS_PER_PAGE + 1
    return Paginator(rows, RESULTS_PER_PAGE).get_page(number)


def _back(request: HttpRequest) -> HttpResponseRedirect:
    page = request.GET.get("page", "")
    suffix = f"?page={page}" if is_id(page) else ""
    return redirect(reverse("hl7_inbox") + suffix)


@login_required
@require_GET
def hl7_inbox(request: HttpRequest) -> HttpResponse:
    return _render(request, _page(request))


def _render(
    request: HttpRequest,
    page: Page[Hl7Result],
    refused: forms.Form | None = None,
    refused_pk: int | None = None,
) -> HttpResponse:
    """The inbox page; a refused match or dismissal form shows with its errors in its row."""
    rows = []
    for item in page:
        match = MatchForm(prefix=f"r{item.pk}")
        dismiss = DismissForm(prefix=f"d{item.pk}")
        if item.pk == refused_pk:
            match = refused if isinstance(refused, MatchForm) else match
            dismiss = refused if isinstance(refused, DismissForm) else dismiss
        rows.append((item, match, dismiss, feed.status_note(item.status)))
    status = 400 if refused is not None else 200
    dismissed, dismissed_count = _dismissed(request)
    withdrawn, withdrawn_count = _withdrawn(request)
    context = {
        "rows": rows,
        "page": page,
        "dismissed": dismissed,
        "dismissed_count": dismissed_count,
        "withdrawn": withdrawn,
        "withdrawn_count": withdrawn_count,
    }
    return render(request, "pathways/hl7_inbox.html", context, status=status)


@login_required
@require_POST
def hl7_inbox_match(request: HttpRequest, result_pk: int) -> HttpResponse:
    result = _parked(request, result_pk)
    form = MatchForm(request.POST, prefix=f"r{result.pk}")
    patient = None
    if form.is_valid() and form.cleaned_data["mrn"]:
        patient = Patient.objects.filter(clinic=result.clinic, mrn=form.cleaned_data["mrn"]).first()
        if patient is None:
            form.add_error("mrn", f"No patient with this MRN in {result.clinic}.")
    if not form.is_valid():
        return _render(request, _page(request, holding=result.pk), form, result.pk)
    try:
        applied = feed.inbox_match(
            result,
            user=request.user,
            patient=patient,
            test=form.cleaned_data["test"],
            unit=form.cleaned_data["unit"],
        )
    except ValueError as error:
        messages.error(request, str(error))
        return _back(request)
    if applied.state == Hl7Result.State.UNMATCHED:
        messages.warning(request, f"Still unmatched: {applied.reason}")
    elif applied.state == Hl7Result.State.WITHDRAWN:
        done = applied.reason or "the stored result was removed"
        messages.success(request, f"Withdrawal (OBX-11 {applied.status}) applied: {done}.")
    else:
        messages.success(request, f"Result {applied.code} {applied.value} {applied.unit} applied.")
    return _back(request)


@login_required
@require_POST
def hl7_inbox_dismiss(request: HttpRequest, result_pk: int) -> HttpResponse:
    """Clear a result from the inbox without storing it, with a note saying why."""
    result = _parked(request, result_pk)
    form = DismissForm(request.POST, prefix=f"d{result.pk}")
    if not form.is_valid():
        return _render(request, _page(request, holding=result.pk), form, result.pk)
    try:
        feed.inbox_dismiss(result, user=request.user, note=form.cleaned_data["note"])
    except ValueError as error:
        messages.error(request, str(error))
        return _back(request)
    messages.success(
        request, f"Dismissed, not stored: {result.code} {result.value} {result.unit} for MRN "
        f"{result.mrn}."
    )  # fmt: skip
    return _back(request)


@login_required
@require_POST
def hl7_inbox_restore(request: HttpRequest, result_pk: int) -> HttpResponse:
    """Undo a dismissal: the result is back in the inbox."""
    result = _parked(request, result_pk, Hl7Result.State.DISMISSED)
    try:
        feed.inbox_restore(result)
    except ValueError as error:  # restored by someone else since this request read it
        messages.error(request, str(error))
        return _back(request)
    messages.success(
        request, f"Back in the inbox: {result.code} {result.value} {result.unit} for MRN "
        f"{result.mrn}."
    )  # fmt: skip
    return _back(request)
