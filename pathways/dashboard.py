"""The worklist: one row per patient of the user's clinics who needs action, filtered, sorted
and paged in SQL over the stored AssessmentSnapshot table, in a fixed number of queries
whatever the number of patients.

A patient needs action with an urgent or high card nobody has acted on, or a follow-up overdue
or due within DUE_SOON_DAYS; "Upcoming" lists those whose first open follow-up is later. Rows
come in the order of urgency (the highest card not acted on), then the first due date, from
the snapshot_worklist indexes; the counts per status add up WorklistTally (a few rows per day
of the calendar) rather than counting patients. The one write: patients whose snooze has ended
are re-assessed first (services.snoozes_ended_reassess), so the stored copies show the card
again on its date."""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from django import forms
from django.db import connection
from django.db.models import Count, F, Q, QuerySet, Sum

from pathways import engine
from pathways.charts import Sparkline, sparkline
from pathways.models import (
    ACTION_RANK,
    ON_WORKLIST,
    AssessmentSnapshot,
    Clinic,
    FollowUp,
    LabResult,
    Patient,
    WorklistTally,
)

PAGE_SIZE = 25
DUE_SOON_DAYS = 7  # the issue: "due within 7 days"
SPARKLINE_POINTS = 12
SEARCH_KEYS = 200

STATUSES = {
    "action": "Urgent or high advice",
    "overdue": "Overdue",
    "due_soon": f"Due within {DUE_SOON_DAYS} days",
    "upcoming": "Upcoming",
}
STATUS_CHOICES = [("", "All needing action"), *STATUSES.items()]
_COUNTED = ("", *STATUSES)  # "": all needing action (a patient can be of several statuses)
SORTS = {
    "priority": "Most urgent first",
    "due": "Due date (soonest first)",
    "-due": "Due date (latest first)",
    "alp": "ALP \u00d7 ULN (highest first)",
    "name": "Patient name",
}


class DashboardFilterForm(forms.Form):
    status = forms.ChoiceField(choices=STATUS_CHOICES, required=False)
    pathway = forms.ChoiceField(
        choices=[("", "Both pathways")]
        + [(pathway, engine.PATHWAY_LABELS[pathway].capitalize()) for pathway in engine.PATHWAYS],
        required=False,
    )
    priority = forms.ChoiceField(
        label="Top priority",
        choices=[("", "Any priority")] + [(p, p) for p in engine.PRIORITIES],
        required=False,
    )
    clinic = forms.TypedChoiceField(coerce=int, choices=[("", "All my clinics")], required=False)
    q = forms.CharField(label="Search MRN or name", max_length=100, required=False)
    mine = forms.BooleanField(label="Only my patients", required=False)
    sort = forms.ChoiceField(choices=list(SORTS.items()), required=False)
    page = forms.IntegerField(min_value=1, required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, clinics: list[Clinic] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        clinic_field = self.fields["clinic"]
        assert isinstance(clinic_field, forms.ChoiceField)
        clinic_field.choices = [("", "All my clinics")] + [(c.pk, c.name) for c in clinics or []]
        for name, bound in self.fields.items():
            if name == "q":
                bound.widget.attrs.update(
                    {"class": "form-control", "type": "search", "autocomplete": "off"}
                )
            elif name == "mine":
                bound.widget.attrs["class"] = "form-check-input"
            elif name != "page":
                bound.widget.attrs["class"] = "form-select"

    def filters(self) -> dict[str, Any]:
        """The valid filters (an invalid value is ignored rather than failing the page)."""
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return {
            "status": data.get("status") or "",
            "pathway": data.get("pathway") or "",
            "priority": data.get("priority") or "",
            "clinic": data.get("clinic") or None,
            "q": (data.get("q") or "").strip(),
            "mine": bool(data.get("mine")),
            "sort": data.get("sort") or "priority",
            "page": data.get("page") or 1,
        }


# A row's status as the worklist and its CSV export write it (the tabs are STATUSES).
ROW_STATUS_TEXT = {
    "action": "Needs action",
    "overdue": "Overdue",
    "due_soon": "Due soon",
    "upcoming": "Upcoming",
}


@dataclass(frozen=True)
class DashboardRow:
    patient: Patient
    snapshot: AssessmentSnapshot
    follow_up: FollowUp | None  # the first open follow-up; None: on the list for a card
    more_follow_ups: int  # open follow-ups after the first
    status: str
    days: int  # days overdue (overdue) or days until due
    sparkline: Sparkline | None
    alp_collected_on: date | None  # the latest ALP result's date

    @property
    def status_text(self) -> str:
        return ROW_STATUS_TEXT[self.status]


@dataclass
class DashboardPage:
    rows: list[DashboardRow]
    counts: dict[str, int]  # per status, and "all": the patients needing action
    total: int
    number: int
    filters: dict[str, Any]

    @property
    def pages(self) -> int:
        return page_count(self.total)

    @property
    def rule_set_versions(self) -> list[str]:
        """The rule set versions behind the rows' snapshots (usually one)."""
        return sorted({row.snapshot.rule_set_version for row in self.rows})

    @property
    def first_index(self) -> int:
        return 0 if self.total == 0 else (self.number - 1) * PAGE_SIZE + 1

    @property
    def last_index(self) -> int:
        return min(self.number * PAGE_SIZE, self.total)


def page_count(total: int, page_size: int = PAGE_SIZE) -> int:
    return max(1, -(-total // page_size))


def _status_q(status: str, today: date) -> Q:
    """The patients of a status (a snapshot or WorklistTally row: both have action_rank and
    next_due); "" is all who need action. A patient can be of several: an urgent card and an
    overdue follow-up."""
    soon = today + timedelta(days=DUE_SOON_DAYS)
    return {
        "": Q(action_rank__lte=ACTION_RANK) | Q(next_due__lte=soon),
        "action": Q(action_rank__lte=ACTION_RANK),
        "overdue": Q(next_due__lt=today),
        "due_soon": Q(next_due__gte=today, next_due__lte=soon),
        "upcoming": Q(next_due__gt=soon),
    }[status]


FOLLOW_UP_STATUS_LABELS = {
    "overdue": "overdue",
    "due_soon": "due soon",
    "upcoming": "upcoming",
    "done": "done",
}


def follow_up_timing(due: date, today: date) -> str:
    """An open follow-up's status by its due date: the same words on the worklist, the patient
    page and the case page."""
    if due < today:
        return "overdue"
    if due <= today + timedelta(days=DUE_SOON_DAYS):
        return "due_soon"
    return "upcoming"


def _status_of(snapshot: AssessmentSnapshot, today: date) -> str:
    """The row's status: its most pressing."""
    if snapshot.next_due is not None:
        timing = follow_up_timing(snapshot.next_due, today)
        if timing != "upcoming" or snapshot.action_rank > ACTION_RANK:
            return timing
    return "action" if snapshot.action_rank <= ACTION_RANK else "upcoming"


def _ordering(sort: str) -> list[Any]:
    # Each order ends in the patient, for a stable page; a patient with nothing scheduled comes
    # first ("scheduled": see AssessmentSnapshot). "priority" and "due" are the orders of the
    # snapshot_worklist indexes, so the first page is read from an index and stops there.
    orderings: dict[str, list[Any]] = {
        "priority": ["action_rank", "scheduled", "next_due", "patient_id"],
        "due": ["scheduled", "next_due", "patient_id"],
        "-due": ["-scheduled", "-next_due", "-patient_id"],
        "alp": [F("alp_x_uln").desc(nulls_last=True), "action_rank", "patient_id"],
        "name": ["patient__sort_name", "patient__mrn", "patient_id"],
    }
    return orderings.get(sort, orderings["priority"])


def user_clinic_ids(user: Any) -> list[int]:
    return list(Clinic.objects.filter(memberships__user=user).values_list("pk", flat=True))


def search_q(q: str) -> Q:
    """Patients whose MRN or name contains ``q`` (the worklist's and the patient list's search;
    on PostgreSQL, the expressions of the trigram indexes of migration 0020).

    SQLite's LIKE ignores the case of ASCII letters only: "émile" did not find "Émile Zola".
    There a search with other letters is a case-insensitive regular expression of the text as
    typed, which Django runs with Python's re (Unicode case folding)."""
    q = unicodedata.normalize("NFC", q)  # as names are kept (Patient.name)
    if connection.vendor == "sqlite" and not q.isascii():
        pattern = re.escape(q)
        return Q(mrn__iregex=pattern) | Q(name__iregex=pattern)
    return Q(mrn__icontains=q) | Q(name__icontains=q)


def patients_matching(clinic_ids: list[int], q: str) -> list[int] | QuerySet[Patient]:
    """The patients of these clinics whose MRN or name contains ``q``. A search usually finds a
    few: their keys, found once rather than in each of the page's queries; past SEARCH_KEYS
    matches, the search itself, for each query to join. (On PostgreSQL, trigram indexes make
    this a range of an index whatever the number of patients: migration 0020.)"""
    matches = Patient.objects.filter(clinic_id__in=clinic_ids).filter(search_q(q))
    keys = list(matches.values_list("pk", flat=True)[: SEARCH_KEYS + 1])
    return keys if len(keys) <= SEARCH_KEYS else matches


def worklist_snapshots(
    filters: dict[str, Any], clinic_ids: list[int], matches: list[int] | QuerySet[Patient] | None
) -> QuerySet[AssessmentSnapshot]:
    """The snapshots of the patients on the worklist (any status), with the pathway, priority
    and search filters: a range of a snapshot_worklist index whatever the number of patients;
    a search reads only the snapshots of the patients it found (``matches``, from
    patients_matching; None without a search). "Top priority" is the highest card not acted
    on."""
    snapshots = AssessmentSnapshot.objects.filter(ON_WORKLIST)
    if matches is not None:
        snapshots = snapshots.filter(patient__in=matches)
    else:
        snapshots = snapshots.filter(clinic_id__in=clinic_ids)
    if filters["pathway"]:
        snapshots = snapshots.filter(pathway=filters["pathway"])
    if filters["priority"]:
        snapshots = snapshots.filter(action_rank=engine.PRIORITY_RANK[filters["priority"]])
    return snapshots


def counted(snapshots: QuerySet[AssessmentSnapshot], today: date) -> dict[str, int]:
    """Patients per status, counted from the snapshots: for a search or "mine" (a few patients,
    one aggregate). The unfiltered worklist adds up WorklistTally (tallied_counts)."""
    return snapshots.aggregate(
        **{status or "all": Count("pk", filter=_status_q(status, today)) for status in _COUNTED}
    )


def tallied_counts(clinic_ids: list[int], filters: dict[str, Any], today: date) -> dict[str, int]:
    """Patients per status, from WorklistTally: one aggregate over a few rows per day of the
    calendar, whatever the number of patients (pathway and priority are tally keys)."""
    tallies = WorklistTally.objects.filter(clinic_id__in=clinic_ids)
    if filters["pathway"]:
        tallies = tallies.filter(pathway=filters["pathway"])
    if filters["priority"]:
        tallies = tallies.filter(action_rank=engine.PRIORITY_RANK[filters["priority"]])
    totals = tallies.aggregate(
        **{status or "all": Sum("patients", filter=_status_q(status, today)) for status in _COUNTED}
    )
    return {key: total or 0 for key, total in totals.items()}


def _worklist(
    user: Any, filters: dict[str, Any], today: date, clinic_ids: list[int] | None
) -> tuple[QuerySet[AssessmentSnapshot], list[int]]:
    """The worklist's snapshots under these filters (any status), and the clinics they cover."""
    if clinic_ids is None:
        clinic_ids = user_clinic_ids(user)
    if filters.get("clinic"):  # one of the user's clinics (any other: none)
        clinic_ids = [pk for pk in clinic_ids if pk == filters["clinic"]]
    from pathways.services import snoozes_ended_reassess

    # A snooze ends on its date: its card is back on the worklist that day, before the counts.
    snoozes_ended_reassess(clinic_ids=clinic_ids, today=today)
    matches = patients_matching(clinic_ids, filters["q"]) if filters["q"] else None
    snapshots = worklist_snapshots(filters, clinic_ids, matches)
    if filters.get("mine"):  # the patients this user is responsible for
        snapshots = snapshots.filter(patient__responsible=user)
    return snapshots, clinic_ids


def _in_order(
    snapshots: QuerySet[AssessmentSnapshot], filters: dict[str, Any], today: date
) -> QuerySet[AssessmentSnapshot]:
    """The filtered status, in the worklist's order."""
    return snapshots.filter(_status_q(filters["status"], today)).order_by(
        *_ordering(filters["sort"])
    )


def dashboard_page(
    user: Any,
    filters: dict[str, Any],
    today: date,
    *,
    page_size: int = PAGE_SIZE,
    clinic_ids: list[int] | None = None,
) -> DashboardPage:
    snapshots, clinic_ids = _worklist(user, filters, today, clinic_ids)
    if filters["q"] or filters.get("mine"):
        counts = counted(snapshots, today)
    else:
        counts = tallied_counts(clinic_ids, filters, today)
    total = counts[filters["status"] or "all"]
    number = min(max(1, int(filters["page"])), page_count(total, page_size))
    offset = (number - 1) * page_size
    # The page's keys first (a narrow sort when it cannot be read from an index), then rows.
    keys = list(
        _in_order(snapshots, filters, today).values_list("pk", flat=True)[
            offset : offset + page_size
        ]
    )
    return DashboardPage(
        rows=dashboard_rows(keys, today),
        counts=counts,
        total=total,
        number=number,
        filters=filters,
    )


def worklist_keys(
    user: Any, filters: dict[str, Any], today: date, *, clinic_ids: list[int] | None = None
) -> list[tuple[int, int]]:
    """Every row of the filtered worklist, all pages, in its order: (snapshot key, patient)."""
    snapshots, _ = _worklist(user, filters, today, clinic_ids)
    return list(_in_order(snapshots, filters, today).values_list("pk", "patient_id"))


def dashboard_rows(keys: list[int], today: date) -> list[DashboardRow]:
    """The worklist rows of these snapshots, in the keys' order. A snapshot gone since its key
    was read (the patient deleted meanwhile) is left out."""
    by_key = AssessmentSnapshot.objects.select_related("patient").in_bulk(keys)
    page = [by_key[key] for key in keys if key in by_key]
    patient_ids = {snapshot.patient_id for snapshot in page}
    follow_ups: dict[int, list[FollowUp]] = defaultdict(list)
    for follow_up in FollowUp.objects.filter(
        patient_id__in=patient_ids, completed_at__isnull=True
    ).order_by("due", "pk"):
        follow_ups[follow_up.patient_id].append(follow_up)
    recent = recent_alp_values(patient_ids)
    rows = []
    for snapshot in page:
        open_ones = follow_ups.get(snapshot.patient_id, [])
        values = recent.get(snapshot.patient_id, [])
        first = open_ones[0] if open_ones else None
        rows.append(
            DashboardRow(
                patient=snapshot.patient,
                snapshot=snapshot,
                follow_up=first,
                more_follow_ups=max(0, len(open_ones) - 1),
                status=_status_of(snapshot, today),
                days=0 if first is None else abs((first.due - today).days),
                sparkline=sparkline(values),
                alp_collected_on=values[-1][0] if values else None,
            )
        )
    return rows


def recent_alp_values(patient_ids: set[int]) -> dict[int, list[tuple[date, float]]]:
    """The last few ALP results (date, U/L; oldest first) of the given patients, in one query."""
    values: dict[int, list[tuple[date, float]]] = defaultdict(list)
    if not patient_ids:
        return values
    rows = (
        LabResult.objects.filter(patient_id__in=patient_ids, test="alp")
        .order_by("patient_id", "collected_on", "collected_time")
        .values_list("patient_id", "collected_on", "canonical_value")
    )
    for patient_id, collected_on, value in rows:
        values[patient_id].append((collected_on, value))
    return {pk: series[-SPARKLINE_POINTS:] for pk, series in values.items()}
