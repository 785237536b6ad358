from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from pathways.access import patient_for_user
from pathways.models import Patient


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    return patient_list(request)


@login_required
def patient_list(request: HttpRequest) -> HttpResponse:
    patients = Patient.objects.for_user(request.user).select_related("clinic").order_by("name")
    return render(request, "pathways/patient_list.html", {"patients": patients})


@login_required
def patient_detail(request: HttpRequest, pk: int) -> HttpResponse:
    patient = patient_for_user(request, pk, action="patient page")
    return render(request, "pathways/patient_detail.html", {"patient": patient})
