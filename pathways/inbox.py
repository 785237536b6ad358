"""The unmatched HL7 results inbox: a clinician matches a parked lab result to a patient of
the clinic, a test or a unit, and it is applied (pathways/feed.py) in one transaction."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from pathways import feed
from pathways.access import user_clinics
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


def _inbox(request: HttpRequest) -> Any:
    return Hl7Result.objects.filter(
        clinic__in=user_clinics(request.user), state=Hl7Result.State.UNMATCHED
    ).select_related("clinic", "message")


@login_required
@require_GET
def hl7_inbox(request: HttpRequest) -> HttpResponse:
    results = list(_inbox(request)[:200])
    rows = [(result, MatchForm(prefix=f"r{result.pk}")) for result in results]
    return render(request, "pathways/hl7_inbox.html", {"rows": rows})


@login_required
@require_POST
def hl7_inbox_match(request: HttpRequest, result_pk: int) -> HttpResponse:
    result = _inbox(request).filter(pk=result_pk).first()
    if result is None:
        raise Http404("no such result in your clinics' inbox")
    form = MatchForm(request.POST, prefix=f"r{result.pk}")
    patient = None
    if form.is_valid() and form.cleaned_data["mrn"]:
        patient = Patient.objects.filter(clinic=result.clinic, mrn=form.cleaned_data["mrn"]).first()
        if patient is None:
            form.add_error("mrn", f"No patient with this MRN in {result.clinic}.")
    if not form.is_valid():
        rows = [(item, form if item.pk == result.pk else MatchForm(prefix=f"r{item.pk}"))
                for item in _inbox(request)[:200]]  # fmt: skip
        return render(request, "pathways/hl7_inbox.html", {"rows": rows}, status=400)
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
        return redirect("hl7_inbox")
    if applied.state == Hl7Result.State.UNMATCHED:
        messages.warning(request, f"Still unmatched: {applied.reason}")
    else:
        messages.success(request, f"Result {applied.code} {applied.value} {applied.unit} applied.")
    return redirect("hl7_inbox")
