"""The clinician screens: follow-up dashboard, case entry with its live assessment, patient page.

Every page works as a plain form POST; htmx requests get the page's own partials
(``"pathways/case.html#panel"``). Every view that shows patient data goes through
``access.patient_for_user`` (clinic scoping and the access log).
"""

from __future__ import annotations

import json
from datetime import date, time
from typing import Any, TypedDict

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect, reswap
from django_htmx.middleware import HtmxDetails

from pathways import engine, firing
from pathways.access import patient_for_user, user_clinics
from pathways.assessment import assess_document, follow_up_status
from pathways.cases import patient_to_case, patient_to_document
from pathways.charts import patient_charts
from pathways.dashboard import STATUS_CHOICES, DashboardFilterForm, dashboard_page
from pathways.forms import (
    LAB_PREFIX,
    THERAPY_PREFIX,
    CaseDraft,
    CaseForms,
    LabFormSet,
    ResultForm,
    TherapyFormSet,
    case_draft,
    posted_case_form,
)
from pathways.models import FollowUp, LabResult, Patient
from pathways.rules import current_rule_set
from pathways.services import (
    DuplicateMrn,
    DuplicateResult,
    StaleVersion,
    follow_up_mark_done,
    patient_record_result,
    patient_save_case,
)


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


_PRIORITY_HEADINGS = {
    "urgent": "Urgent",
    "high": "High priority",
    "routine": "Routine",
    "info": "For information",
}


# ---------------------------------------------------------------------------------------------
# Presenting a result: recommendations grouped by priority with their citations' full text.


# TypedDicts, not dataclasses: a template reads a dict key at once, an attribute after a miss.


class CitationText(TypedDict):
    key: str
    text: str
    url: str


class CitedRecommendation(TypedDict):
    """A recommendation as the panel shows it, with the full text of its citations."""

    code: str
    priority: str
    title: str
    rationale: str
    citations: list[CitationText]
    citation_keys: str  # "S0-1, S0-3": the summary line of its sources


class PriorityGroup(TypedDict):
    priority: str
    heading: str
    recommendations: list[CitedRecommendation]


class FollowUpRow(TypedDict):
    code: str
    title: str
    due: date
    status: str
    rule: str | None
    stored: FollowUp | None


def recommendation_groups(result: engine.Result, rule_set: engine.RuleSet) -> list[PriorityGroup]:
    """The recommendations by priority; citations are read from ``rule_set``, the set that
    produced ``result``."""
    citations = {citation.key: citation for citation in rule_set.citations}
    by_priority: dict[str, list[CitedRecommendation]] = {}
    for recommendation in result.recommendations:
        cited: list[CitationText] = []
        for key in recommendation.citations:
            citation = citations.get(key)
            if citation is None:
                cited.append({"key": key, "text": key, "url": ""})
            else:
                cited.append({"key": key, "text": citation.text, "url": citation.url})
        by_priority.setdefault(recommendation.priority, []).append(
            {
                "code": recommendation.code,
                "priority": recommendation.priority,
                "title": recommendation.title,
                "rationale": recommendation.rationale,
                "citations": cited,
                "citation_keys": ", ".join(recommendation.citations),
            }
        )
    return [
        {
            "priority": priority,
            "heading": _PRIORITY_HEADINGS[priority],
            "recommendations": by_priority[priority],
        }
        for priority in engine.PRIORITIES
        if priority in by_priority
    ]


def follow_up_rows(result: engine.Result, stored: list[FollowUp]) -> list[FollowUpRow]:
    """The engine's schedule, with completions recorded in alpcare ("mark done") applied."""
    by_key = {(follow_up.code, follow_up.due): follow_up for follow_up in stored}
    rows: list[FollowUpRow] = []
    for item in result.follow_ups:
        match = by_key.pop((item.code, item.due), None)
        rows.append(
            {
                "code": item.code,
                "title": item.title,
                "due": item.due,
                "status": follow_up_status(item, match),
                "rule": item.rule,
                "stored": match,
            }
        )
    # Completed follow-ups the engine no longer schedules stay visible as a record.
    for follow_up in by_key.values():
        if follow_up.completed_at is not None:
            rows.append(
                {
                    "code": follow_up.code,
                    "title": follow_up.title,
                    "due": follow_up.due,
                    "status": "done",
                    "rule": follow_up.rule,
                    "stored": follow_up,
                }
            )
    return sorted(rows, key=lambda row: (row["status"] == "done", row["due"], row["code"]))


def _stored_follow_ups(patient: Patient | None) -> list[FollowUp]:
    """A stored patient's follow-ups, whose completions the panel applies (none when new)."""
    return [] if patient is None else list(patient.follow_ups.all())


def _panel_context(
    result: engine.Result, rule_set: engine.RuleSet, stored: list[FollowUp] | None = None
) -> dict[str, Any]:
    return {
        "result": result,
        "pathway_label": engine.PATHWAY_LABELS[result.pathway],
        "groups": recommendation_groups(result, rule_set),
        "follow_up_rows": follow_up_rows(result, stored or []),
    }


# ---------------------------------------------------------------------------------------------
# Dashboard and patient list.


@login_required
@require_GET
def dashboard(request: HtmxHttpRequest) -> HttpResponse:
    form = DashboardFilterForm(request.GET)
    filters = form.filters()
    page = dashboard_page(request.user, filters, timezone.localdate())
    context = {
        "form": form,
        "page": page,
        "status_choices": STATUS_CHOICES,
        "publication_notice": firing.publication_notice_for(request.user),
    }
    if request.htmx:
        return render(request, "pathways/dashboard.html#results", {**context, "oob": True})
    return render(request, "pathways/dashboard.html", context)


@login_required
def patient_list(request: HtmxHttpRequest) -> HttpResponse:
    patients = Patient.objects.for_user(request.user).select_related("clinic").order_by("name")
    return render(request, "pathways/patient_list.html", {"patients": patients})


# ---------------------------------------------------------------------------------------------
# Patient page.


def _patient_context(patient: Patient, **extra: Any) -> dict[str, Any]:
    """Everything the patient page shows, in a fixed number of queries."""
    labs = list(patient.lab_results.select_related("entered_by"))
    therapies = list(patient.therapies.all())
    stored = list(patient.follow_ups.select_related("completed_by"))
    rule_set = current_rule_set()
    case = patient_to_case(patient, labs=labs, therapies=therapies)
    result = engine.assess(case, rule_set)
    facts = engine.compute_facts(case, rule_set)
    params = rule_set.parameter_values()
    charts = patient_charts(case, facts, renal_impairment_crcl=params["renal_impairment_crcl"])
    context = {
        "patient": patient,
        "diagnoses_text": ", ".join(d.replace("_", " ") for d in patient.diagnoses),
        # Newest first; an untimed result sorts first on its day, as in the engine.
        "labs": sorted(
            labs, key=lambda lab: (lab.collected_on, lab.collected_time or time.min, lab.pk)
        )[::-1],
        "therapies": therapies,
        "charts": charts,
        "alp_chart": next((chart for chart in charts if chart.name == "alp"), None),
        "small_charts": [chart for chart in charts if chart.name != "alp"],
        "result_form": extra.pop("result_form", None) or ResultForm(auto_id="result_%s"),
        **_panel_context(result, rule_set, stored),
    }
    context.update(extra)
    return context


@login_required
@require_GET
def patient_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    patient = patient_for_user(request, pk, action="patient page")
    return render(request, "pathways/patient_detail.html", _patient_context(patient))


@login_required
@require_POST
def patient_add_result(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The inline "add a result": chart, recommendations and follow-ups refresh together."""
    patient = patient_for_user(request, pk, action="add result")
    form = ResultForm(request.POST, auto_id="result_%s")
    added: LabResult | None = None
    if form.is_valid():
        document = patient_to_document(patient)
        document["labs"].append(form.lab_document())
        try:
            case = engine.parse_case(document, today=timezone.localdate())
        except engine.CaseInvalid as invalid:
            form.add_case_errors(invalid.errors, index=len(document["labs"]) - 1)
        else:
            try:
                added = patient_record_result(patient=patient, user=request.user, lab=case.labs[-1])
            except DuplicateResult as duplicate:
                form.add_error("collected_on", str(duplicate))
    if added is not None:
        patient.refresh_from_db()
        if not request.htmx:
            messages.success(request, f"Result added: {added}.")
            return redirect("patient_detail", pk=patient.pk)
        context = _patient_context(patient, added=added)
        return render(request, "pathways/patient_detail.html#live", context)
    context = _patient_context(patient, result_form=form)
    template = "pathways/patient_detail.html"
    return render(request, f"{template}#live" if request.htmx else template, context)


@login_required
@require_POST
def follow_up_done(request: HtmxHttpRequest, pk: int, follow_up_pk: int) -> HttpResponse:
    patient = patient_for_user(request, pk, action="mark follow-up done")
    follow_up = FollowUp.objects.filter(pk=follow_up_pk, patient=patient).first()
    if follow_up is None:
        raise Http404("No such follow-up.")
    follow_up_mark_done(follow_up=follow_up, user=request.user)
    if not request.htmx:
        messages.success(request, f"Marked done: {follow_up.title}.")
        return redirect("patient_detail", pk=patient.pk)
    context = _patient_context(patient)
    return render(request, "pathways/patient_detail.html#follow_ups", context)


# ---------------------------------------------------------------------------------------------
# Case entry: new patient and editing one, with the live assessment beside the form.


def _clinics_for(request: HtmxHttpRequest) -> list[Any]:
    clinics = user_clinics(request.user)
    if not clinics:
        raise PermissionDenied("You are not a member of any clinic.")
    return clinics


@login_required
@require_http_methods(["GET", "POST"])
def patient_new(request: HtmxHttpRequest) -> HttpResponse:
    clinics = _clinics_for(request)
    return _case_page(request, clinics=clinics, patient=None)


@login_required
@require_http_methods(["GET", "POST"])
def patient_edit(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    patient = patient_for_user(request, pk, action="edit case")
    return _case_page(request, clinics=[patient.clinic], patient=patient)


def _case_page(
    request: HtmxHttpRequest, *, clinics: list[Any], patient: Patient | None
) -> HttpResponse:
    rule_set = current_rule_set()
    if request.method == "GET":
        case_forms = CaseForms.bind(None, clinics=clinics, patient=patient)
        result = None
        if patient is not None:
            result = engine.assess(patient_to_case(patient), rule_set)
        return _render_case(request, case_forms, rule_set, patient=patient, result=result)

    data = request.POST
    added_row = _add_row_without_js(data)
    if added_row is not None:  # "Add a result" / "Add a therapy" without JavaScript
        case_forms = CaseForms.bind(added_row, clinics=clinics, patient=patient)
        return _render_case(request, case_forms, rule_set, patient=patient, result=None, quiet=True)

    case_forms = CaseForms.bind(data, clinics=clinics, patient=patient)
    forms_valid = case_forms.forms_valid()
    draft = case_draft(data)
    result = None
    try:
        case = engine.parse_case(draft.document, today=timezone.localdate())
    except engine.CaseInvalid as invalid:
        case_forms.add_case_errors(invalid.errors, draft)
    else:
        if forms_valid:
            saved = _save(request, case_forms, case, clinics=clinics, patient=patient)
            if isinstance(saved, Patient):
                messages.success(request, f"Saved {saved.name} (MRN {saved.mrn}).")
                url = reverse("patient_detail", args=[saved.pk])
                if request.htmx:
                    return HttpResponseClientRedirect(url)
                return redirect(url)
            case_forms = saved
        result = engine.assess(case, rule_set)
    return _render_case(request, case_forms, rule_set, patient=patient, result=result, status=400)


def _save(
    request: HtmxHttpRequest,
    case_forms: CaseForms,
    case: engine.Case,
    *,
    clinics: list[Any],
    patient: Patient | None,
) -> Patient | CaseForms:
    """Save, or the forms carrying why not (the user's input is kept on screen)."""
    data = case_forms.patient.cleaned_data
    clinic = data.get("clinic") or clinics[0]
    try:
        return patient_save_case(
            user=request.user,
            case=case,
            mrn=data["mrn"],
            name=data["name"],
            clinic=clinic if patient is None else None,
            patient=patient,
            expected_version=data.get("version") if patient is not None else None,
        )
    except StaleVersion as stale:
        # Keep the input; take the current version so that saving again is a deliberate choice.
        posted = request.POST.copy()
        posted["version"] = str(stale.current_version)
        case_forms = CaseForms.bind(posted, clinics=clinics, patient=patient)
        case_forms.forms_valid()
        case_forms.patient.add_error(None, str(stale))
        return case_forms
    except DuplicateMrn as duplicate:
        case_forms.patient.add_error("mrn", str(duplicate))
        return case_forms


def _add_row_without_js(data: QueryDict) -> QueryDict | None:
    for button, prefix in (("add_lab", LAB_PREFIX), ("add_therapy", THERAPY_PREFIX)):
        if button in data:
            posted = data.copy()
            total = _int(posted.get(f"{prefix}-TOTAL_FORMS"))
            posted[f"{prefix}-TOTAL_FORMS"] = str(total + 1)
            return posted
    return None


def _int(value: Any) -> int:
    try:
        return max(0, min(int(value), 500))
    except (TypeError, ValueError):
        return 0


def _render_case(
    request: HtmxHttpRequest,
    case_forms: CaseForms,
    rule_set: engine.RuleSet,
    *,
    patient: Patient | None,
    result: engine.Result | None,
    status: int = 200,
    quiet: bool = False,
) -> HttpResponse:
    if patient is None:
        preview_url = reverse("case_preview")
    else:  # the patient's own preview applies its stored follow-ups (completions by hand)
        preview_url = reverse("patient_case_preview", args=[patient.pk])
    context: dict[str, Any] = {
        "forms": case_forms,
        "patient": patient,
        "quiet": quiet,
        "preview_url": preview_url,
        "rule_set_version": rule_set.version,
    }
    if result is not None:
        context.update(_panel_context(result, rule_set, _stored_follow_ups(patient)))
    has_errors = any(form.errors for form in case_forms.all_forms())
    return render(
        request,
        "pathways/case.html",
        context,
        status=status if has_errors and not quiet else 200,
    )


@login_required
@require_POST
def case_preview(request: HtmxHttpRequest) -> HttpResponse:
    """The new-patient page's live assessment (see ``_live_preview``)."""
    return _live_preview(request, patient=None)


@login_required
@require_POST
def patient_case_preview(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The edit page's live assessment, with the patient's stored follow-ups applied: one
    marked done by hand shows done while the case is edited, as on the patient page.

    It reads the patient, so it is logged like any read: one access-log row per live update.
    """
    patient = patient_for_user(request, pk, action="edit case preview")
    return _live_preview(request, patient=patient)


def _live_preview(request: HtmxHttpRequest, *, patient: Patient | None) -> HttpResponse:
    """The live assessment of the unsaved form: its case document, assessed exactly as the API
    assesses one (``assessment.assess_document``).

    Valid: the panel is replaced. Not yet valid: only the field errors and the status line
    change (the panel keeps the last complete assessment); a required entry not given yet is
    listed as awaited rather than shown as an error.
    """
    try:
        posted = posted_case_form(request)
    except ValueError as unreadable:  # json.JSONDecodeError is a ValueError
        return HttpResponseBadRequest(f"The live preview could not read the form: {unreadable}")
    draft = case_draft(posted)
    rule_set = current_rule_set()
    errors: dict[str, list[str]] = {}
    missing: list[str] = []
    result: engine.Result | None = None
    try:
        result = assess_document(draft.document, rule_set=rule_set)
    except engine.CaseInvalid as invalid:
        for error in invalid.errors:
            if error.message == "required":
                missing.append(_awaited(draft, error.field))
            else:
                errors.setdefault(draft.slot_id(error.field), []).append(error.message)
    context: dict[str, Any] = {
        "live": True,
        "live_errors": json.dumps(errors),
        "problems": len(errors),
        "missing": missing,
        "rule_set_version": rule_set.version,
    }
    if result is None:
        response = render(request, "pathways/case.html#live_feedback", context)
        return reswap(response, "none")  # keep the last good panel on screen
    context.update(_panel_context(result, rule_set, _stored_follow_ups(patient)))
    return render(request, "pathways/case.html#preview", context)


def _awaited(draft: CaseDraft, path: str) -> str:
    """A required entry in the user's words: "birth date", "result 2: collected on"."""
    prefix, index, field_name = draft.locate(path)
    label = (field_name or path).removeprefix("mm_").replace("_", " ")
    if field_name == "collected_on":
        label = "collected on"
    if prefix is None or index is None:
        return label
    return f"{'result' if prefix == LAB_PREFIX else 'therapy'} {index + 1}: {label}"


@login_required
@require_POST
def case_add_lab_row(request: HtmxHttpRequest) -> HttpResponse:
    return _add_row(request, LAB_PREFIX)


@login_required
@require_POST
def case_add_therapy_row(request: HtmxHttpRequest) -> HttpResponse:
    return _add_row(request, THERAPY_PREFIX)


def _add_row(request: HtmxHttpRequest, prefix: str) -> HttpResponse:
    """A new empty row (htmx: appended in place) and the formset's updated form count."""
    index = _int(request.POST.get(f"{prefix}-TOTAL_FORMS"))
    if prefix == LAB_PREFIX:
        row = LabFormSet(prefix=prefix).new_row(index, test="alp", unit="U/L")
    else:
        row = TherapyFormSet(prefix=prefix).new_row(index)
    context = {"row": row, "index": index, "prefix": prefix, "total": index + 1}
    partial = "lab_row_added" if prefix == LAB_PREFIX else "therapy_row_added"
    response = render(request, f"pathways/case.html#{partial}", context)
    return response


__all__ = [
    "case_add_lab_row",
    "case_add_therapy_row",
    "case_preview",
    "dashboard",
    "follow_up_done",
    "patient_add_result",
    "patient_case_preview",
    "patient_detail",
    "patient_edit",
    "patient_list",
    "patient_new",
]
