"""The clinician screens: follow-up dashboard, case entry with its live assessment, patient page.

Every page works as a plain form POST; htmx requests get the page's own partials
(``"pathways/case.html#panel"``). Every view that shows patient data goes through
``access.patient_for_user`` (clinic scoping and the access log).
"""

from __future__ import annotations

import json
import logging
from datetime import date, datetime, time
from typing import Any, TypedDict

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    QueryDict,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect, reswap
from django_htmx.middleware import HtmxDetails

from pathways import engine, firing
from pathways.access import is_id, patient_for_user, user_clinics
from pathways.advice import advice_context
from pathways.assessment import (
    Assessed,
    assess_document_with_facts,
    follow_up_status,
    stored_follow_up,
)
from pathways.card_actions import (
    ActiveActions,
    CardActionInvalid,
    active_actions,
    card_action_record,
    card_action_undo,
    case_digest,
)
from pathways.cases import patient_to_case
from pathways.charts import NARROW_WIDTH, WIDTH, patient_charts
from pathways.dashboard import (
    FOLLOW_UP_STATUS_LABELS,
    STATUS_CHOICES,
    DashboardFilterForm,
    dashboard_page,
    dashboard_rows,
    follow_up_timing,
    search_q,
    worklist_keys,
)
from pathways.engine.declaration import CLINICAL, MYELOMA, PATIENT_GROUPS
from pathways.exports import CSV_CHUNK, follow_ups_calendar, worklist_csv_lines
from pathways.forms import (
    LAB_PREFIX,
    MAX_ROWS,
    MISSING_VERSION,
    SKIPPED_TIME,
    THERAPY_PREFIX,
    CaseDraft,
    CaseForms,
    FormUnreadable,
    LabFormSet,
    PatientSearchForm,
    ResultForm,
    TherapyFormSet,
    case_draft,
    clinical_message,
    confirmed_values,
    field_label,
    lab_initial,
    posted_case_form,
    row_count,
)
from pathways.models import (
    FOLLOW_UP_OUTCOMES,
    OVERRIDE_REASONS,
    FollowUp,
    LabResult,
    Patient,
)
from pathways.patient_header import patient_header
from pathways.rules import current_rule_set, rule_fault_text
from pathways.services import (
    DuplicateMrn,
    DuplicateResult,
    FollowUpGone,
    FollowUpNotReopened,
    ResponsibleInvalid,
    StaleVersion,
    access_log_bulk,
    follow_up_mark_done,
    follow_up_reopen,
    patient_change_result,
    patient_record_result,
    patient_remove_result,
    patient_save_case,
    patient_set_responsible,
)

logger = logging.getLogger(__name__)


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


# ---------------------------------------------------------------------------------------------
# Presenting a result: the shared advice partial (advice.py) and the follow-up schedule.


# TypedDicts, not dataclasses: a template reads a dict key at once, an attribute after a miss.


class FollowUpRow(TypedDict):
    code: str
    title: str
    due: date
    status: str  # overdue, due_soon, upcoming or done (dashboard.follow_up_timing)
    label: str
    rule: str | None
    stored: FollowUp | None


def follow_up_rows(result: engine.Result, stored: list[FollowUp]) -> list[FollowUpRow]:
    """The engine's schedule, with completions recorded in alpcare ("mark done") applied."""
    by_key = {(follow_up.code, follow_up.due): follow_up for follow_up in stored}
    rows: list[FollowUpRow] = []
    for item in result.follow_ups:
        match, own = stored_follow_up(item, stored)
        if match is not None and not own:
            continue  # done by an earlier one marked done: listed below as that record
        by_key.pop((item.code, item.due), None)
        status = follow_up_status(item, match)
        if status != "done":  # the worklist's words for the same dates
            status = follow_up_timing(item.due, result.as_of)
        rows.append(
            {
                "code": item.code,
                "title": item.title,
                "due": item.due,
                "status": status,
                "label": FOLLOW_UP_STATUS_LABELS[status],
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
                    "label": FOLLOW_UP_STATUS_LABELS["done"],
                    "rule": follow_up.rule,
                    "stored": follow_up,
                }
            )
    return sorted(rows, key=lambda row: (row["status"] == "done", row["due"], row["code"]))


def _stored_follow_ups(patient: Patient | None) -> list[FollowUp]:
    """A stored patient's follow-ups, whose completions the panel applies (none when new)."""
    return [] if patient is None else list(patient.follow_ups.all())


def _panel_context(
    result: engine.Result,
    rule_set: engine.RuleSet,
    stored: list[FollowUp] | None = None,
    actions: ActiveActions | None = None,
    *,
    case: engine.Case | None = None,
    facts: engine.Facts | None = None,
) -> dict[str, Any]:
    return {
        **advice_context(
            result, rule_set, case=case, facts=facts, actions=actions, stored=stored or []
        ),
        "follow_up_rows": follow_up_rows(result, stored or []),
    }


# ---------------------------------------------------------------------------------------------
# Dashboard and patient list.


@login_required
@require_GET
def dashboard(request: HtmxHttpRequest) -> HttpResponse:
    clinics = user_clinics(request.user)
    form = DashboardFilterForm(request.GET, clinics=clinics)
    filters = form.filters()
    page = dashboard_page(
        request.user, filters, timezone.localdate(), clinic_ids=[c.pk for c in clinics]
    )
    context = {
        "form": form,
        "page": page,
        "status_choices": STATUS_CHOICES,
        "publication_notice": firing.publication_notice_for(request.user),
    }
    if request.htmx:
        return render(request, "pathways/dashboard.html#results", {**context, "oob": True})
    return render(request, "pathways/dashboard.html", context)


PATIENTS_PER_PAGE = 50


@login_required
@require_GET
def patient_list(request: HtmxHttpRequest) -> HttpResponse:
    """The user's clinics' patients by name, searched by MRN or name, a page at a time."""
    form = PatientSearchForm(request.GET)
    q, number = form.search()
    patients = Patient.objects.for_user(request.user)
    if q:
        patients = patients.filter(search_q(q))
    patients = patients.select_related("clinic", "snapshot").order_by("sort_name", "mrn", "pk")
    page = Paginator(patients, PATIENTS_PER_PAGE).get_page(number)
    context = {"form": form, "page": page, "q": q}
    if request.htmx:
        return render(request, "pathways/patient_list.html#results", context)
    return render(request, "pathways/patient_list.html", context)


# ---------------------------------------------------------------------------------------------
# Patient page.


_DIAGNOSIS_LABELS = {choice.value: choice.label for choice in CLINICAL["diagnoses"].choices}
# Shown in the page's header line, not in the case summary.
_HEADER_FIELDS = frozenset(
    {"birth_date", "sex", "pregnant", "gestational_weeks", "weight_kg", "diagnoses"}
)


class CaseEntry(TypedDict):
    name: str  # the column (data-case-field)
    label: str
    text: str


def _entry_text(item: engine.CaseField, value: Any) -> str:
    if item.kind == "bool":
        return "yes" if value else "no"
    if item.kind == "date":
        return value.isoformat()
    if item.kind == "choice":
        return next((c.label for c in item.choices if c.value == value), str(value))
    if item.kind == "number":
        text = f"{float(value):g}"
        return f"{text} {item.unit}" if item.unit and item.unit not in item.label else text
    return str(value)


def case_summary(patient: Patient) -> list[CaseEntry]:
    """The patient's declared case fields that say something (not their default, not blank),
    labelled as the case declaration labels them: what the clinician entered."""
    entries: list[CaseEntry] = []
    for group in PATIENT_GROUPS:
        for item in group.fields:
            if item.name in _HEADER_FIELDS:
                continue
            value = getattr(patient, group.prefix + item.name)
            tri_state = item.kind == "bool" and item.default is None  # "no" says something
            if (
                value is None
                or value == ""
                or (item.kind == "bool" and not value and not tri_state)
            ):
                continue
            if item.kind != "bool" and value == item.default:
                continue
            label = (
                item.label
                if group is not MYELOMA
                else f"Myeloma: {item.label[:1].lower()}{item.label[1:]}"
            )
            entries.append(
                {"name": group.prefix + item.name, "label": label, "text": _entry_text(item, value)}
            )
    return entries


def _patient_context(patient: Patient, **extra: Any) -> dict[str, Any]:
    """Everything the patient page shows, in a fixed number of queries."""
    labs = list(patient.lab_results.select_related("entered_by"))
    therapies = list(patient.therapies.all())
    stored = list(patient.follow_ups.select_related("completed_by"))
    rule_set = current_rule_set()
    case = patient_to_case(patient, labs=labs, therapies=therapies)
    result, facts = engine.assess_with_facts(case, rule_set)
    params = rule_set.parameter_values()
    # Each chart drawn at the page's width and at a phone's (the template shows one by width).
    charts: dict[str, Any] = {}
    for prefix, width in (("", WIDTH), ("phone_", NARROW_WIDTH)):
        drawn = patient_charts(
            case, facts, renal_impairment_crcl=params["renal_impairment_crcl"], width=width
        )
        charts[f"{prefix}alp_chart"] = next((c for c in drawn if c.name == "alp"), None)
        charts[f"{prefix}small_charts"] = [c for c in drawn if c.name != "alp"]
    digest = case_digest(patient, labs=labs, therapies=therapies)
    actions = active_actions(patient, result, rule_set, digest=digest)
    context = {
        # Posted with each card action: the case and the rules the page showed
        # (card_actions.card_action_record refuses an action on anything else).
        "case_digest": digest,
        "rule_set_version": rule_set.version,
        "override_reasons": OVERRIDE_REASONS,
        "follow_up_outcomes": FOLLOW_UP_OUTCOMES,
        "today": timezone.localdate(),
        "patient": patient,
        "diagnoses_text": ", ".join(_DIAGNOSIS_LABELS.get(d, d) for d in patient.diagnoses),
        "case_summary": case_summary(patient),
        "header": patient_header(patient, case, facts, rule_set),
        # Newest first; an untimed result sorts first on its day, as in the engine.
        "labs": sorted(
            labs, key=lambda lab: (lab.collected_on, lab.collected_time or time.min, lab.pk)
        )[::-1],
        "therapies": therapies,
        **charts,
        "result_form": extra.pop("result_form", None)
        or ResultForm(auto_id="result_%s", initial={"version": patient.version}),
        "lab_units": engine.UNITS,  # the result form's unit list follows its test
        **_panel_context(result, rule_set, stored, actions, case=case, facts=facts),
    }
    context.update(extra)
    return context


@login_required
@require_GET
def patient_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    patient = patient_for_user(request, pk, action="patient page")
    try:
        context = _patient_context(patient)
    except engine.RuleEvaluationError as fault:
        return _unassessable(request, patient, fault)
    return render(request, "pathways/patient_detail.html", context)


def _unassessable(
    request: HtmxHttpRequest, patient: Patient, fault: engine.RuleEvaluationError
) -> HttpResponse:
    """The patient's page when the rule set in force fails on them (a published condition that
    errors at run time): the fault and the results, never a server error nor an empty advice
    that would read as "nothing to do"."""
    logger.error("rule set in force failed on patient %s: %s", patient.pk, fault)
    context = {
        "patient": patient,
        "fault": rule_fault_text(current_rule_set(), fault),
        "labs": patient.lab_results.order_by("-collected_on", "-collected_time", "-pk"),
    }
    response = render(request, "pathways/patient_unassessable.html", context)
    if request.htmx:  # an in-page action: the whole page shows the fault instead
        response["HX-Redirect"] = reverse("patient_detail", args=[patient.pk])
    return response


def _checked_result(
    patient: Patient, form: ResultForm, *, replacing: LabResult | None = None
) -> engine.Lab | None:
    """The form's result, validated by the engine in the context of the patient's other
    results (the one validation path); None, with the errors on the form, when it is refused."""
    others = [row for row in patient.lab_results.all() if replacing is None or row != replacing]
    today = timezone.localdate()
    document = engine.case_to_document(patient_to_case(patient, as_of=today, labs=others))
    document["labs"].append(form.lab_document())
    try:
        case = engine.parse_case(document, today=today)
    except engine.CaseInvalid as invalid:
        form.add_case_errors(invalid.errors, index=len(document["labs"]) - 1)
        return None
    if len(case.labs) < len(document["labs"]):  # the same as a stored result: dropped (spec §1)
        typed = engine.parse_case({**document, "labs": document["labs"][-1:]}, today=today)
        form.add_error("collected_on", str(DuplicateResult(typed.labs[0])))
        return None
    return case.labs[-1]


def _stale_result_form(
    data: QueryDict, stale: StaleVersion, *, lab: engine.Lab | None = None, note: str = ""
) -> ResultForm:
    """The input kept, at the current version, so that sending it again is a deliberate choice;
    ``lab`` (the input as the engine read it): its confirm box is asked for again, so that a
    box ticked for this value stays ticked (as on the case page)."""
    posted = data.copy()
    posted["version"] = str(stale.current_version)
    form = ResultForm(posted, auto_id="result_%s")
    if form.is_valid() and lab is not None:
        form.ask_confirmation(engine.lab_to_document(lab))
    form.add_error(None, f"{stale} {note}".strip())
    return form


def _confirmed_before(lab: engine.Lab, stored: LabResult | None) -> bool:
    """``lab`` keeps the value and unit of the stored result it corrects, and that one was
    confirmed when it was saved (typed by hand): saving it again does not ask again (a changed
    value does), as on the case edit page (forms.confirmed_values)."""
    return (
        stored is not None
        and stored.unconfirmed_unusual_value is None
        and (lab.test, lab.value, lab.unit) == (stored.test, stored.value, stored.unit)
    )


def _write_result(
    request: HtmxHttpRequest, patient: Patient, *, replacing: LabResult | None = None
) -> tuple[LabResult | None, ResultForm]:
    """Add the posted result (or correct ``replacing`` with it): validated by the engine with
    the patient's other results, written at the version the page was loaded at. The stored
    result, or None and the form carrying why not."""
    form = ResultForm(request.POST, auto_id="result_%s")
    if not form.is_valid() or (lab := _checked_result(patient, form, replacing=replacing)) is None:
        return None, form
    confirmed = _confirmed_before(lab, replacing)
    if not confirmed and form.ask_confirmation(engine.lab_to_document(lab)):
        return None, form  # a typed value outside the bounds, not confirmed yet
    version = form.cleaned_data["version"]
    try:
        if replacing is None:
            written = patient_record_result(
                patient=patient, user=request.user, lab=lab, expected_version=version
            )
        else:
            written = patient_change_result(
                patient=patient,
                result=replacing,
                user=request.user,
                lab=lab,
                expected_version=version,
                source=LabResult.Source.ENTERED,  # typed and confirmed by the clinician now
            )
    except DuplicateResult as duplicate:
        form.add_error("collected_on", str(duplicate))
    except StaleVersion as stale:
        form = _stale_result_form(request.POST, stale, lab=None if confirmed else lab)
    except engine.RuleEvaluationError as fault:  # nothing written; the input stays on screen
        form.add_error(None, f"Not saved: {rule_fault_text(current_rule_set(), fault)}")
    else:
        return written, form
    return None, form


@login_required
@require_POST
def patient_add_result(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The inline "add a result": chart, recommendations and follow-ups refresh together."""
    patient = patient_for_user(request, pk, action="add result")
    added, form = _write_result(request, patient)
    if added is not None:
        patient.refresh_from_db()
        if not request.htmx:
            messages.success(request, f"Result added: {added}.")
            return redirect("patient_detail", pk=patient.pk)
        context = _patient_context(patient, added=added)
        return render(request, "pathways/patient_detail.html#live", context)
    try:
        context = _patient_context(patient, result_form=form)
    except engine.RuleEvaluationError as fault:  # the stored case fails too: its own page
        return _unassessable(request, patient, fault)
    if request.htmx:  # refused in place: htmx swaps a 422 in (base.html), not a 400
        return render(request, "pathways/patient_detail.html#live", context, status=422)
    return render(request, "pathways/patient_detail.html", context, status=400)


def _stored_result(patient: Patient, result_pk: int) -> LabResult:
    result = patient.lab_results.filter(pk=result_pk).first()
    if result is None:
        raise Http404("No such result.")
    return result


def _removed_result(patient: Patient, result_pk: int) -> bool:
    """``result_pk`` was one of the patient's results, removed since (its history says so)."""
    return LabResult.history.filter(id=result_pk, patient_id=patient.pk, history_type="-").exists()


def _result_edit_context(
    patient: Patient, result: LabResult | None, form: ResultForm
) -> dict[str, Any]:
    """The "Correct a result" page's context (``result`` None: the result was removed)."""
    return {"patient": patient, "result": result, "form": form, "lab_units": engine.UNITS}


@login_required
@require_http_methods(["GET", "POST"])
def result_edit(request: HtmxHttpRequest, pk: int, result_pk: int) -> HttpResponse:
    """Correct one stored result: its own form, validated and locked on its own."""
    patient = patient_for_user(request, pk, action="edit result")
    result = patient.lab_results.filter(pk=result_pk).first()
    if result is None:
        if request.method == "GET" or not _removed_result(patient, result_pk):
            raise Http404("No such result.")
        # Removed by a colleague while this correction was typed: refused like any change
        # made meanwhile, the input kept (nothing is written); sent again, it is a new result.
        probe = ResultForm(request.POST, auto_id="result_%s")
        lab = _checked_result(patient, probe) if probe.is_valid() else None
        note = "The result you were correcting was removed: saving adds your input as a new one."
        form = _stale_result_form(request.POST, StaleVersion(patient), lab=lab, note=note)
        context = _result_edit_context(patient, None, form)
        return render(request, "pathways/result_edit.html", context, status=400)
    if request.method == "GET":
        initial = {**lab_initial([result])[0], "version": patient.version}
        form = ResultForm(initial=initial, auto_id="result_%s")
        context = _result_edit_context(patient, result, form)
        return render(request, "pathways/result_edit.html", context)
    changed, form = _write_result(request, patient, replacing=result)
    if changed is not None:
        messages.success(request, f"Result changed: {changed}.")
        return redirect("patient_detail", pk=patient.pk)
    context = _result_edit_context(patient, result, form)
    return render(request, "pathways/result_edit.html", context, status=400)


@login_required
@require_POST
def result_remove(request: HtmxHttpRequest, pk: int, result_pk: int) -> HttpResponse:
    """Remove one stored result (with the version the page was loaded at)."""
    patient = patient_for_user(request, pk, action="remove result")
    result = _stored_result(patient, result_pk)
    version = _posted_version(request)
    if version is None:
        return _unreadable(MISSING_VERSION)
    try:
        patient_remove_result(patient=patient, result=result, expected_version=version)
    except StaleVersion as stale:
        messages.error(request, f"{stale} The result was not removed.")
    else:
        messages.success(request, f"Result removed: {result}.")
    return redirect("patient_detail", pk=patient.pk)


def _unreadable(message: str) -> HttpResponseBadRequest:
    """A post the page could not have sent, refused in plain text: the message quotes what
    was posted (a field's name or value), which must not come back as HTML."""
    return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")


def _posted_version(request: HttpRequest) -> int | None:
    text = request.POST.get("version", "")
    return int(text) if text.isascii() and text.isdigit() and 0 < len(text) < 10 else None


def _form_errors(form: forms.Form) -> str:
    """A form's errors in one line, each naming its field ("date done: …")."""
    parts = []
    for name, errors in form.errors.items():
        field = form.fields.get(name)
        label = (field.label if field is not None and field.label else name).replace("_", " ")
        parts.append(f"{label}: {' '.join(str(error) for error in errors)}")
    return "; ".join(parts)


def _follow_up_of(request: HtmxHttpRequest, pk: int, follow_up_pk: int, action: str) -> FollowUp:
    patient = patient_for_user(request, pk, action=action)
    follow_up = FollowUp.objects.filter(pk=follow_up_pk, patient=patient).first()
    if follow_up is None:
        raise Http404("No such follow-up.")
    follow_up.patient = patient
    return follow_up


def _after_patient_action(request: HtmxHttpRequest, patient: Patient, **extra: Any) -> HttpResponse:
    """A plain POST goes back to the patient page; htmx gets the refreshed panels."""
    if not request.htmx:
        return redirect("patient_detail", pk=patient.pk)
    patient.refresh_from_db()
    try:
        context = _patient_context(patient, **extra)
    except engine.RuleEvaluationError as fault:
        return _unassessable(request, patient, fault)
    return render(request, "pathways/patient_detail.html#live", context)


@login_required
@require_POST
def follow_up_done(request: HtmxHttpRequest, pk: int, follow_up_pk: int) -> HttpResponse:
    """Mark done: outcome, date done and a note; a case fact (dental examination) updates the
    case through the case write path and re-assesses."""
    follow_up = _follow_up_of(request, pk, follow_up_pk, "mark follow-up done")
    patient = follow_up.patient
    form = FollowUpDoneForm(request.POST or {"outcome": "done"})
    if not form.is_valid():
        message = _form_errors(form)
        if not request.htmx:
            messages.error(request, f"Not marked done ({follow_up.title}): {message}")
            return redirect("patient_detail", pk=patient.pk)
        return _after_patient_action(request, patient, follow_up_error=message)
    try:
        done = follow_up_mark_done(
            follow_up=follow_up,
            user=request.user,
            outcome=form.cleaned_data["outcome"] or "done",
            done_on=form.cleaned_data["done_on"],
            note=form.cleaned_data["note"],
        )
    except FollowUpGone as gone:
        return _follow_up_gone(request, patient, gone)
    if done.completed_by_result or done.completed_by_id != request.user.pk:
        # Marked done meanwhile by a colleague (or a result): theirs stands, and is said.
        who = done.completed_by or "a matching result"
        said = (
            f"Already marked done ({follow_up.title}) by {who} at "
            f"{timezone.localtime(done.completed_at):%Y-%m-%d %H:%M}: your outcome and note "
            "were not recorded."
        )
        if not request.htmx:
            messages.warning(request, said)
            return redirect("patient_detail", pk=patient.pk)
        return _after_patient_action(request, patient, follow_up_error=said)
    if not request.htmx:
        messages.success(request, f"Marked done: {follow_up.title}.")
    return _after_patient_action(request, patient, announce=f"Marked done: {follow_up.title}.")


def _follow_up_gone(request: HtmxHttpRequest, patient: Patient, gone: FollowUpGone) -> HttpResponse:
    if not request.htmx:
        messages.error(request, f"Not changed: {gone}.")
        return redirect("patient_detail", pk=patient.pk)
    return _after_patient_action(request, patient, follow_up_error=f"Not changed: {gone}.")


# Posted by a follow-up's Undo: when the completion it takes back was recorded, as the page
# showed it (patient_detail.html); services.follow_up_reopen refuses to take back another.
UNDO_SHOWN = "completed"
UNDO_SHOWN_UNREADABLE = (
    "This Undo was sent with a completion time the page could not have sent: reload the page "
    "and undo again if you still want to."
)


def _undo_shown(request: HttpRequest) -> tuple[bool, datetime | None]:
    """(readable, when the completion the page showed was recorded; None: not said)."""
    text = request.POST.get(UNDO_SHOWN, "")
    if not text:
        return True, None
    try:
        shown = datetime.fromisoformat(text) if len(text) < 40 else None
    except ValueError:
        shown = None
    if shown is None or timezone.is_naive(shown):
        return False, None
    return True, shown


@login_required
@require_POST
def follow_up_undo(request: HtmxHttpRequest, pk: int, follow_up_pk: int) -> HttpResponse:
    """Undo "mark done": takes back the completion the page showed, and no other (a colleague's
    recorded since, or one completed again); refused, it says why and changes nothing."""
    follow_up = _follow_up_of(request, pk, follow_up_pk, "reopen follow-up")
    patient = follow_up.patient
    readable, shown = _undo_shown(request)
    if not readable:
        return _unreadable(UNDO_SHOWN_UNREADABLE)
    try:
        follow_up_reopen(follow_up=follow_up, user=request.user, shown_completed_at=shown)
    except (FollowUpGone, FollowUpNotReopened) as refused:
        said = f"{refused}."
        if not request.htmx:
            messages.error(request, f"Not undone: {said}")
            return redirect("patient_detail", pk=patient.pk)
        return _after_patient_action(
            request, patient, follow_up_error=said, follow_up_error_heading="Not undone"
        )
    if not request.htmx:
        messages.success(request, f"Reopened: {follow_up.title}.")
    return _after_patient_action(request, patient, announce=f"Reopened: {follow_up.title}.")


@login_required
@require_POST
def card_action(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Acknowledge, override (coded reason), snooze (until a date) or undo one card."""
    patient = patient_for_user(request, pk, action="card action")
    form = CardActionForm(request.POST)
    error = announce = ""
    if not form.is_valid():
        error = _form_errors(form)
    else:
        data = form.cleaned_data
        try:
            if data["action"] == "undo":
                if data["undo"] is None:
                    raise CardActionInvalid("undo", "Say which action to undo.")
                card_action_undo(
                    patient=patient, user=request.user, code=data["code"], action_id=data["undo"]
                )
            else:
                rule_set = current_rule_set()
                card_action_record(
                    patient=patient,
                    user=request.user,
                    code=data["code"],
                    kind=data["action"],
                    reason=data["reason"],
                    reason_text=data["reason_text"],
                    snooze_until=data["snooze_until"],
                    rule_set=rule_set,
                    result=engine.assess(patient_to_case(patient), rule_set),
                    seen_case=data["case"],
                    seen_rule_set=data["rule_set"],
                    seen_no_action=data["shown"] == "no action",
                )
        except CardActionInvalid as invalid:
            error = str(invalid)
        else:
            announce = _card_action_done(data["action"], data["snooze_until"])
    if error:  # several cards carry the same buttons: say which one was not changed
        error = f"{_card_title(patient, request.POST.get('code', ''))}: {error}"
    if not request.htmx:
        if error:
            messages.error(request, f"Card not changed: {error}")
        return redirect("patient_detail", pk=patient.pk)
    return _after_patient_action(request, patient, card_error=error, announce=announce)


def _card_title(patient: Patient, code: str) -> str:
    """The card's title as the patient page shows it today, else its code as sent."""
    try:
        result = engine.assess(patient_to_case(patient), current_rule_set())
    except engine.RuleEvaluationError:
        result = None
    titles = {rec.code: rec.title for rec in result.recommendations} if result else {}
    return titles.get(code) or f"card {code[:60]!r}"


def _card_action_done(action: str, snooze_until: date | None) -> str:
    """What a card action did, for the patient page's live region."""
    if action == "snooze" and snooze_until is not None:
        return f"Card snoozed until {snooze_until.isoformat()}."
    done = {"acknowledge": "acknowledged", "override": "overridden", "undo": "action undone"}
    return f"Card {done.get(action, action)}."


@login_required
@require_POST
def patient_responsible(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Set (or clear) the clinician responsible for the patient: one of the clinic's."""
    patient = patient_for_user(request, pk, action="responsible clinician change")
    chosen = (request.POST.get("responsible") or "").strip()
    try:
        if chosen and not is_id(chosen):
            raise ResponsibleInvalid("choose a clinician of this clinic")
        patient = patient_set_responsible(
            patient=patient, responsible_id=int(chosen) if chosen else None
        )
    except ResponsibleInvalid as invalid:
        messages.error(request, f"Responsible clinician not changed: {invalid}.")
        return redirect("patient_detail", pk=patient.pk)
    who = patient.responsible
    name = (who.get_full_name() or who.username) if who is not None else "nobody"
    messages.success(request, f"Responsible clinician: {name}.")
    return redirect("patient_detail", pk=patient.pk)


@login_required
@require_GET
def patient_follow_ups_ics(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The patient's open follow-ups as an iCalendar file (MRN, never the name)."""
    patient = patient_for_user(request, pk, action="follow-ups iCalendar export")
    follow_ups = list(patient.follow_ups.filter(completed_at__isnull=True))
    if not follow_ups:  # a calendar must hold at least one event (RFC 5545, 3.6)
        messages.info(request, "No open follow-ups to put in a calendar.")
        return redirect("patient_detail", pk=patient.pk)
    body = follow_ups_calendar(patient, follow_ups, request_host=request.get_host())
    response = HttpResponse(body, content_type="text/calendar; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="follow-ups-{patient.pk}.ics"'
    return response


@login_required
@require_GET
def worklist_csv(request: HtmxHttpRequest) -> StreamingHttpResponse:
    """The worklist as CSV, with the page's filters: every matching patient, all pages, streamed
    a chunk of rows at a time. Each exported patient is access-logged before the first row."""
    clinics = user_clinics(request.user)
    form = DashboardFilterForm(request.GET, clinics=clinics)
    today = timezone.localdate()
    keys = worklist_keys(request.user, form.filters(), today, clinic_ids=[c.pk for c in clinics])
    access_log_bulk(
        user=request.user,
        patients={patient for _, patient in keys},
        action="worklist CSV export",
        path=request.get_full_path(),
    )
    chunks = (
        dashboard_rows([key for key, _ in keys[start : start + CSV_CHUNK]], today)
        for start in range(0, len(keys), CSV_CHUNK)
    )
    clinic_names = {clinic.pk: clinic.name for clinic in clinics}  # no query per row
    response = StreamingHttpResponse(
        worklist_csv_lines(chunks, clinic_names=clinic_names),
        content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="worklist-{today.isoformat()}.csv"'
    return response


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
        case = None if patient is None else patient_to_case(patient)
        return _render_case(request, case_forms, rule_set, patient=patient, case=case)

    data = request.POST
    try:
        added_row = _add_row_without_js(data)
        if added_row is not None:  # "Add a result" / "Add a therapy" without JavaScript
            case_forms = CaseForms.bind(added_row, clinics=clinics, patient=patient)
            return _render_case(request, case_forms, rule_set, patient=patient, quiet=True)
        draft = case_draft(data, stored_labs=_stored_labs(patient))
    except FormUnreadable as unreadable:
        return _unreadable(f"The form could not be read: {unreadable}")

    case_forms = CaseForms.bind(data, clinics=clinics, patient=patient)
    if (unreadable_rows := case_forms.unreadable()) is not None:
        return _unreadable(f"The form could not be read: {unreadable_rows}")
    forms_valid = case_forms.forms_valid()
    case = None
    # Asked whatever else is wrong, so that a ticked box stays ticked on the refused form.
    waiting = case_forms.ask_confirmations(draft, confirmed_values(patient))
    try:
        case = engine.parse_case(draft.document, today=timezone.localdate())
    except engine.CaseInvalid as invalid:
        case_forms.add_case_errors(invalid.errors, draft)
    else:
        if forms_valid and not waiting:
            saved = _save(request, case_forms, case, draft, clinics=clinics, patient=patient)
            if isinstance(saved, Patient):
                messages.success(request, f"Saved {saved.name} (MRN {saved.mrn}).")
                url = reverse("patient_detail", args=[saved.pk])
                if request.htmx:
                    return HttpResponseClientRedirect(url)
                return redirect(url)
            case_forms = saved
    return _render_case(request, case_forms, rule_set, patient=patient, case=case, status=400)


def _stored_labs(patient: Patient | None) -> tuple[engine.Lab, ...] | None:
    """Editing a stored patient, its results as stored (the edit page does not post them)."""
    return None if patient is None else patient_to_case(patient).labs


def _save(
    request: HtmxHttpRequest,
    case_forms: CaseForms,
    case: engine.Case,
    draft: CaseDraft,
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
            with_results=patient is None,
        )
    except StaleVersion as stale:
        # Keep the input; take the current version so that saving again is a deliberate choice.
        posted = request.POST.copy()
        posted["version"] = str(stale.current_version)
        case_forms = CaseForms.bind(posted, clinics=clinics, patient=patient)
        case_forms.forms_valid()
        case_forms.ask_confirmations(draft, confirmed_values(patient))  # ticked boxes stay
        case_forms.patient.add_error(None, str(stale))
        return case_forms
    except DuplicateMrn as duplicate:
        case_forms.patient.add_error("mrn", str(duplicate))
        return case_forms
    except engine.RuleEvaluationError as fault:  # nothing saved; the entries stay on screen
        case_forms.patient.add_error(
            None, f"Not saved: {rule_fault_text(current_rule_set(), fault)}"
        )
        return case_forms


def _add_row_without_js(data: QueryDict) -> QueryDict | None:
    for button, prefix in (("add_lab", LAB_PREFIX), ("add_therapy", THERAPY_PREFIX)):
        if button in data:
            posted = data.copy()
            posted[f"{prefix}-TOTAL_FORMS"] = str(_next_row(data, prefix) + 1)
            return posted
    return None


def _next_row(data: Any, prefix: str) -> int:
    """The index of a row to add; FormUnreadable past MAX_ROWS."""
    index = row_count(data, prefix)
    if index >= MAX_ROWS:
        raise FormUnreadable(f"at most {MAX_ROWS} rows of {prefix} in one form")
    return index


def _render_case(
    request: HtmxHttpRequest,
    case_forms: CaseForms,
    rule_set: engine.RuleSet,
    *,
    patient: Patient | None,
    case: engine.Case | None = None,
    status: int = 200,
    quiet: bool = False,
) -> HttpResponse:
    """The case-entry page; with ``case``, its assessment beside the form."""
    if patient is None:
        preview_url = reverse("case_preview")
    else:  # the patient's own preview applies its stored follow-ups (completions by hand)
        preview_url = reverse("patient_case_preview", args=[patient.pk])
    context: dict[str, Any] = {
        "forms": case_forms,
        "patient": patient,
        "stored_results": [] if patient is None else list(patient.lab_results.all()),
        "quiet": quiet,
        "preview_url": preview_url,
        "rule_set_version": rule_set.version,
        "lab_units": engine.UNITS,  # the unit list follows the test (case-entry.js)
    }
    if case is not None:
        try:
            result, facts = engine.assess_with_facts(case, rule_set)
        except engine.RuleEvaluationError as fault:
            context["rule_fault"] = rule_fault_text(rule_set, fault)
        else:
            stored = _stored_follow_ups(patient)
            context.update(_panel_context(result, rule_set, stored, case=case, facts=facts))
    has_errors = any(form.errors for form in case_forms.all_forms())
    if has_errors and not quiet:
        context["error_summary"] = case_forms.error_summary()
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
    assesses one (``assessment.assess_document_with_facts``).

    Valid: the panel is replaced. Not yet valid: only the field errors and the status line
    change (the panel keeps the last complete assessment); a required entry not given yet is
    listed as awaited rather than shown as an error.
    """
    try:
        posted = posted_case_form(request)
        draft = case_draft(posted, stored_labs=_stored_labs(patient))
    except FormUnreadable as unreadable:
        return _unreadable(f"The live preview could not read the form: {unreadable}")
    rule_set = current_rule_set()
    errors: dict[str, list[str]] = {}
    missing: list[str] = []
    assessed: Assessed | None = None
    try:
        assessed = assess_document_with_facts(draft.document, rule_set=rule_set)
    except engine.RuleEvaluationError as fault:
        errors["case-errors"] = [f"No advice: {rule_fault_text(rule_set, fault)}"]
    except engine.CaseInvalid as invalid:
        for error in invalid.errors:
            on_stored = draft.on_stored_result(error)
            if on_stored is not None:  # about a stored result: the edit page has no row for it
                field_name, message = on_stored
                shown = errors.setdefault(
                    f"id_{field_name}-error" if field_name else "case-errors", []
                )
                if message not in shown:
                    shown.append(message)
                continue
            slot = draft.slot_id(error.location)
            if error.code == "required":
                missing.append(_awaited(draft, error.location))
            else:
                message = draft.in_form_words(
                    str(error) if slot == "case-errors" else clinical_message(error)
                )
                errors.setdefault(slot, []).append(message)
    for slot in draft.skipped_times():  # the engine reads times as typed: saving refuses these
        errors.setdefault(slot, []).append(SKIPPED_TIME)
    context: dict[str, Any] = {
        "live": True,
        "live_errors": json.dumps(errors),
        "problems": len(errors),
        "missing": missing,
        "rule_set_version": rule_set.version,
    }
    if assessed is None:
        response = render(request, "pathways/case.html#live_feedback", context)
        return reswap(response, "none")  # keep the last good panel on screen
    stored = _stored_follow_ups(patient)
    context.update(
        _panel_context(assessed.result, rule_set, stored, case=assessed.case, facts=assessed.facts)
    )
    context["to_confirm"] = draft.unusual_entries(confirmed_values(patient), posted)
    return render(request, "pathways/case.html#preview", context)


def _awaited(draft: CaseDraft, location: engine.Location) -> str:
    """A required entry in the user's words: "birth date", "result 2: collected on"."""
    prefix, index, field_name = draft.locate(location)
    name = field_name or str(location[-1] if location else "")
    label = field_label(prefix, name)
    if not label[1:2].isupper():  # "Birth date" reads "birth date"; "CrCl" stays
        label = label[:1].lower() + label[1:]
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
    try:
        index = _next_row(request.POST, prefix)
    except FormUnreadable as unreadable:
        return _unreadable(f"The form could not be read: {unreadable}")
    if prefix == LAB_PREFIX:
        row = LabFormSet(prefix=prefix).new_row(index, test="alp", unit="U/L")
    else:
        row = TherapyFormSet(prefix=prefix).new_row(index)
    context = {"row": row, "index": index, "prefix": prefix, "total": index + 1}
    partial = "lab_row_added" if prefix == LAB_PREFIX else "therapy_row_added"
    response = render(request, f"pathways/case.html#{partial}", context)
    return response


class FollowUpDoneForm(forms.Form):
    outcome = forms.ChoiceField(choices=[("", "—"), *FOLLOW_UP_OUTCOMES], required=False)
    done_on = forms.DateField(label="date done", required=False)
    note = forms.CharField(max_length=2000, required=False)

    def clean_done_on(self) -> date | None:
        done_on: date | None = self.cleaned_data.get("done_on")
        if done_on is not None and done_on > timezone.localdate():
            raise forms.ValidationError("The date done cannot be after today.")
        return done_on


class CardActionForm(forms.Form):
    code = forms.CharField(max_length=60)
    action = forms.ChoiceField(
        choices=[(kind, kind) for kind in ("acknowledge", "override", "snooze", "undo")]
    )
    reason = forms.ChoiceField(choices=[("", "—"), *OVERRIDE_REASONS], required=False)
    reason_text = forms.CharField(max_length=1000, required=False)
    snooze_until = forms.DateField(label="snooze until", required=False)
    case = forms.CharField(max_length=64, required=False)  # the digest of the case shown
    rule_set = forms.CharField(max_length=40, required=False)  # the version shown
    shown = forms.CharField(max_length=20, required=False)  # "no action": the card had none
    undo = forms.IntegerField(min_value=1, required=False)  # the action shown with its Undo

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("action") not in (None, "undo"):
            for name in ("case", "rule_set"):
                if not data.get(name):
                    # Sent by the page's forms: without them the action could cover a case or a
                    # card the clinician never saw.
                    self.add_error(name, "The page did not say what it showed: reload it.")
        return data


__all__ = [
    "card_action",
    "case_add_lab_row",
    "case_add_therapy_row",
    "case_preview",
    "dashboard",
    "follow_up_done",
    "follow_up_undo",
    "patient_add_result",
    "patient_case_preview",
    "patient_detail",
    "patient_edit",
    "patient_follow_ups_ics",
    "patient_list",
    "patient_new",
    "result_edit",
    "result_remove",
    "worklist_csv",
]
