"""Rule analytics: how each rule is received, over a chosen period, within the staff user's
clinics — from the one store of card actions (worklist and CDS Hooks feedback) and the rule
firing log.

Per rule: patients for whom it fires now; patients for whom it fired in the period (the
denominator); acknowledgements, acceptances (CDS Hooks ``accepted``), overrides by coded
reason, snoozes; the share overridden (patients with an override / patients fired). Rules
above the threshold (default 50 % over at least 20 patients fired) are flagged for review.
An undone action does not count, nor an EHR's outcome that a later report on the same card
replaced (kept, marked undone).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Final

from django import forms
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from pathways.dashboard import user_clinic_ids
from pathways.engine.dates import DATE_RANGE, EARLIEST_DATE, LATEST_DATE
from pathways.models import OVERRIDE_REASONS, CardAction, RuleFiring
from pathways.rules import current_rule_set

DEFAULT_DAYS = 90
DEFAULT_THRESHOLD = 50  # percent overridden
DEFAULT_MIN_PATIENTS = 20  # fired in the period

NO_CODED_REASON: Final = "(none)"  # an EHR override with a userComment only


@dataclass
class RuleRow:
    code: str
    title: str = ""
    priority: str = ""
    firing_now: int = 0
    fired: int = 0  # patients for whom it fired in the period
    acknowledged: int = 0
    accepted: int = 0
    snoozed: int = 0
    overridden: int = 0  # patients with an override in the period
    reasons: Counter[str] = field(default_factory=Counter)
    flagged: bool = False

    @property
    def override_share(self) -> float | None:
        return self.overridden / self.fired if self.fired else None

    @property
    def override_percent(self) -> str:
        """Whole percents; a share that would round to 0 % or 100 % says it is not (1 override
        in 250 read as none beside "Overridden: 1")."""
        share = self.override_share
        if share is None:
            return "—"
        if 0 < share < 0.01:
            return "< 1 %"
        if 0.99 < share < 1:
            return "> 99 %"
        return f"{share * 100:.0f} %"

    @property
    def reason_list(self) -> list[tuple[str, int]]:
        labels = {**dict(OVERRIDE_REASONS), NO_CODED_REASON: "No coded reason (a comment only)"}
        return [(labels.get(code, code), n) for code, n in self.reasons.most_common()]


def rule_analytics(
    clinic_ids: list[int],
    start: date,
    end: date,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    min_patients: int = DEFAULT_MIN_PATIENTS,
) -> list[RuleRow]:
    """Every rule of the rule set in force (and any other that fired or was acted on), sorted
    by share overridden, highest first."""
    zone = timezone.get_current_timezone()
    since = datetime.combine(start, time.min, tzinfo=zone)
    until = datetime.combine(end + timedelta(days=1), time.min, tzinfo=zone)
    rows: dict[str, RuleRow] = {}
    for rule in current_rule_set().rules:
        rows[rule.code] = RuleRow(code=rule.code, title=rule.title, priority=rule.priority)

    def row(code: str) -> RuleRow:
        return rows.setdefault(code, RuleRow(code=code))

    fired, firing_now = _firings(clinic_ids, since, until)
    for code, count in firing_now.items():
        row(code).firing_now = count
    overridden: dict[str, set[int]] = defaultdict(set)
    actions = CardAction.objects.filter(
        clinic_id__in=clinic_ids, at__gte=since, at__lt=until, undone_at__isnull=True
    )
    for code, kind, reason, patient_id in actions.values_list(
        "code", "kind", "reason", "patient_id"
    ):
        entry = row(code)
        if kind == CardAction.Kind.OVERRIDE:
            overridden[code].add(patient_id)
            entry.reasons[reason or NO_CODED_REASON] += 1  # an EHR may send a comment only
        elif kind == CardAction.Kind.ACKNOWLEDGE:
            entry.acknowledged += 1
        elif kind == CardAction.Kind.ACCEPT:
            entry.accepted += 1
        elif kind == CardAction.Kind.SNOOZE:
            entry.snoozed += 1
    for code, entry in rows.items():
        entry.fired = len(fired.get(code, set()) | overridden.get(code, set()))
        entry.overridden = len(overridden.get(code, set()))
        share = entry.override_share
        # In whole numbers: 11 of 20 is 55 %, not "more than 55 %" (11 / 20 * 100 is 55.000…1).
        entry.flagged = (
            share is not None
            and entry.fired >= min_patients
            and entry.overridden * 100 > threshold * entry.fired
        )
    return sorted(rows.values(), key=lambda r: (-(r.override_share or 0), -r.fired, r.code))


def _firings(
    clinic_ids: list[int], since: datetime, until: datetime
) -> tuple[dict[str, set[int]], Counter[str]]:
    """From the firing log's started/stopped rows: the patients each rule fired for at some time
    in [since, until), and how many it fires for now."""
    fired: dict[str, set[int]] = defaultdict(set)
    open_at_until: dict[tuple[str, int], datetime] = {}
    open_now: set[tuple[str, int]] = set()
    events = (
        RuleFiring.objects.filter(clinic_id__in=clinic_ids)
        .order_by("at", "pk")
        .values_list("code", "patient_id", "change", "at")
    )
    for code, patient_id, change, at in events.iterator():
        key = (code, patient_id)
        started = change == RuleFiring.Change.STARTED
        if started:
            open_now.add(key)
        else:
            open_now.discard(key)
        if at >= until:
            continue
        if started:
            open_at_until.setdefault(key, at)
        elif open_at_until.pop(key, None) is not None and at >= since:
            fired[code].add(patient_id)  # fired until a moment inside the period
    for code, patient_id in open_at_until:
        fired[code].add(patient_id)  # still firing when the period ends
    return fired, Counter(code for code, _ in open_now)


class AnalyticsForm(forms.Form):
    start = forms.DateField(label="From", required=False)
    end = forms.DateField(label="To", required=False)
    threshold = forms.IntegerField(
        label="Flag above (% overridden)", min_value=0, max_value=100, required=False
    )
    min_patients = forms.IntegerField(
        label="…over at least (patients fired)", min_value=1, required=False
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("start"), data.get("end")
        for name, day in (("start", start), ("end", end)):
            if day is not None and not EARLIEST_DATE <= day <= LATEST_DATE:
                self.add_error(name, f"Choose a date from {DATE_RANGE}.")  # 9999-12-31 + 1 day
        if self.errors:
            return data
        # A blank end defaults to today, a blank start to the DEFAULT_DAYS before the end.
        data["end"] = end or timezone.localdate()
        data["start"] = start or data["end"] - timedelta(days=DEFAULT_DAYS)
        if data["start"] > data["end"]:
            its_end = "its end" if end else "today (the end left blank)"
            self.add_error("start", f"The start of the period is after {its_end}.")
        return data


@staff_member_required
@require_GET
def rule_analytics_view(request: HttpRequest) -> HttpResponse:
    today = timezone.localdate()
    form = AnalyticsForm(request.GET or None)
    data: dict[str, Any] = form.cleaned_data if form.is_bound and form.is_valid() else {}
    end = data.get("end") or today
    start = data.get("start") or end - timedelta(days=DEFAULT_DAYS)
    threshold = data.get("threshold")
    threshold = DEFAULT_THRESHOLD if threshold is None else threshold
    min_patients = data.get("min_patients") or DEFAULT_MIN_PATIENTS
    clinic_ids = user_clinic_ids(request.user)
    rows = rule_analytics(clinic_ids, start, end, threshold=threshold, min_patients=min_patients)
    context = {
        **admin.site.each_context(request),
        "title": "Rule analytics",
        "form": form,
        "rows": rows,
        "start": start,
        "end": end,
        "threshold": threshold,
        "min_patients": min_patients,
        "flagged": [r for r in rows if r.flagged],
    }
    status = 400 if form.is_bound and form.errors else 200
    return render(request, "admin/pathways/rule_analytics.html", context, status=status)
