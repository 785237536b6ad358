"""The worklist: every patient of the user's clinics who needs action, filtered, sorted and
paged in SQL over the stored FollowUp and AssessmentSnapshot tables, in a fixed number of
queries whatever the number of patients.

Two kinds of row: a patient with an urgent or high card nobody has acted on and no open
follow-up ("needs action", first: nothing is scheduled for it), then the open follow-ups.
Each kind is paged from its own partial index; the counts per status add up FollowUpTally
(a few rows per day of the calendar) rather than counting follow-ups. The one write: patients whose
snooze has ended are re-assessed first (services.snoozes_ended_reassess), so the stored copies
show the card again on its date."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from django import forms
from django.db.models import Count, F, Q, QuerySet, Sum

from pathways import engine
from pathways.charts import Sparkline, sparkline
from pathways.models import (
    AssessmentSnapshot,
    Clinic,
    FollowUp,
    FollowUpTally,
    LabResult,
    Patient,
)

PAGE_SIZE = 25
DUE_SOON_DAYS = 7  # the issue: "due within 7 days"
SPARKLINE_POINTS = 12
SEARCH_KEYS = 200

ACTION_RANK = engine.PRIORITY_RANK["high"]  # urgent and high cards put a patient on the list

STATUSES = {
    "action": "Needs action",
    "overdue": "Overdue",
    "due_soon": f"Due within {DUE_SOON_DAYS} days",
    "upcoming": "Upcoming",
}
STATUS_CHOICES = [("", "All"), *STATUSES.items()]
SORTS = {
    "due": "Due date (soonest first)",
    "-due": "Due date (latest first)",
    "priority": "Priority",
    "alp": "ALP x ULN (highest first)",
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
            "sort": data.get("sort") or "due",
            "page": data.get("page") or 1,
        }


@dataclass(frozen=True)
class DashboardRow:
    patient: Patient
    follow_up: FollowUp | None  # None: a "needs action" row (urgent/high card, no follow-up)
    status: str
    days: int  # days overdue (overdue) or days until due
    sparkline: Sparkline | None

    @property
    def snapshot(self) -> Any:
        return getattr(self.patient, "snapshot", None)


@dataclass
class DashboardPage:
    rows: list[DashboardRow]
    counts: dict[str, int]
    total: int
    number: int
    filters: dict[str, Any]

    @property
    def pages(self) -> int:
        return page_count(self.total)

    @property
    def rule_set_versions(self) -> list[str]:
        """The rule set versions behind the rows' snapshots (usually one)."""
        return sorted(
            {row.snapshot.rule_set_version for row in self.rows if row.snapshot is not None}
        )

    @property
    def counts_total(self) -> int:
        return sum(self.counts.values())

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.pages

    @property
    def first_index(self) -> int:
        return 0 if self.total == 0 else (self.number - 1) * PAGE_SIZE + 1

    @property
    def last_index(self) -> int:
        return min(self.number * PAGE_SIZE, self.total)


def page_count(total: int, page_size: int = PAGE_SIZE) -> int:
    return max(1, -(-total // page_size))


def _status_q(status: str, today: date) -> Q:
    soon = today + timedelta(days=DUE_SOON_DAYS)
    return {
        "overdue": Q(due__lt=today),
        "due_soon": Q(due__gte=today, due__lte=soon),
        "upcoming": Q(due__gt=soon),
    }[status]


def _status_of(due: date, today: date) -> str:
    if due < today:
        return "overdue"
    if due <= today + timedelta(days=DUE_SOON_DAYS):
        return "due_soon"
    return "upcoming"


def _ordering(sort: str) -> list[Any]:
    # (due, pk) is the order of the open-follow-up indexes (SQLite's end with the rowid): the
    # first page is read from an index and stops after one page, whatever the number of
    # patients. So is (top_priority_rank, due, pk).
    orderings: dict[str, list[Any]] = {
        "due": ["due", "pk"],
        "-due": ["-due", "-pk"],
        "priority": ["top_priority_rank", "due", "pk"],
        "alp": [F("patient__snapshot__alp_x_uln").desc(nulls_last=True), "due", "pk"],
        "name": ["patient__name", "patient__mrn", "due", "pk"],
    }
    return orderings.get(sort, orderings["due"])


def user_clinic_ids(user: Any) -> list[int]:
    return list(Clinic.objects.filter(memberships__user=user).values_list("pk", flat=True))


def patients_matching(clinic_ids: list[int], q: str) -> list[int] | QuerySet[Patient]:
    """The patients of these clinics whose MRN or name contains ``q``. A search usually finds a
    few: their keys, found once rather than in each of the page's queries; past SEARCH_KEYS
    matches, the search itself, for each query to join. (On PostgreSQL, trigram indexes make
    this a range of an index whatever the number of patients: migration 0020.)"""
    matches = Patient.objects.filter(clinic_id__in=clinic_ids).filter(
        Q(mrn__icontains=q) | Q(name__icontains=q)
    )
    keys = list(matches.values_list("pk", flat=True)[: SEARCH_KEYS + 1])
    return keys if len(keys) <= SEARCH_KEYS else matches


def open_follow_ups(
    filters: dict[str, Any], clinic_ids: list[int], matches: list[int] | QuerySet[Patient] | None
) -> QuerySet[FollowUp]:
    """Open follow-ups of the user's clinics, with the pathway, priority and search filters.

    Clinic, pathway and priority are the follow-up's own copies (see FollowUp), so each filter
    is a range of one of the open-follow-up indexes. A search reads only the follow-ups of the
    patients it found (``matches``, from patients_matching; None without a search).
    """
    follow_ups = FollowUp.objects.filter(completed_at__isnull=True)
    if matches is not None:
        follow_ups = follow_ups.filter(patient__in=matches)
    else:
        follow_ups = follow_ups.filter(clinic_id__in=clinic_ids)
    if filters["pathway"]:
        follow_ups = follow_ups.filter(pathway=filters["pathway"])
    if filters["priority"]:
        follow_ups = follow_ups.filter(top_priority_rank=engine.PRIORITY_RANK[filters["priority"]])
    return follow_ups


def needs_action(
    filters: dict[str, Any], clinic_ids: list[int], matches: list[int] | QuerySet[Patient] | None
) -> QuerySet[AssessmentSnapshot]:
    """Patients with an urgent or high card not acted on and no open follow-up: a range of
    snapshot_worklist_idx (clinic, action_rank) whatever the number of patients; a search
    reads only the snapshots of the patients it found (``matches``)."""
    snapshots = AssessmentSnapshot.objects.filter(
        clinic_id__in=clinic_ids, open_follow_ups=0, action_rank__lte=ACTION_RANK
    )
    if matches is not None:
        snapshots = snapshots.filter(patient__in=matches)
    if filters["pathway"]:
        snapshots = snapshots.filter(pathway=filters["pathway"])
    if filters["priority"]:
        snapshots = snapshots.filter(action_rank=engine.PRIORITY_RANK[filters["priority"]])
    return snapshots


def status_counts(follow_ups: QuerySet[FollowUp], today: date, *, searched: bool) -> dict[str, int]:
    """Open follow-ups per status, counted from the follow-ups: for a search or "mine" (a few
    patients, one aggregate). The unfiltered worklist adds up FollowUpTally (tallied_counts)."""
    dated = [status for status in STATUSES if status != "action"]
    if searched:
        return follow_ups.aggregate(
            **{status: Count("pk", filter=_status_q(status, today)) for status in dated}
        )
    return {status: follow_ups.filter(_status_q(status, today)).count() for status in dated}


def tallied_counts(clinic_ids: list[int], filters: dict[str, Any], today: date) -> dict[str, int]:
    """Open follow-ups per status, from FollowUpTally: one aggregate over a few rows per day of
    the calendar, whatever the number of patients (pathway and priority are tally keys)."""
    tallies = FollowUpTally.objects.filter(clinic_id__in=clinic_ids)
    if filters["pathway"]:
        tallies = tallies.filter(pathway=filters["pathway"])
    if filters["priority"]:
        tallies = tallies.filter(top_priority_rank=engine.PRIORITY_RANK[filters["priority"]])
    dated = [status for status in STATUSES if status != "action"]
    totals = tallies.aggregate(
        **{status: Sum("open", filter=_status_q(status, today)) for status in dated}
    )
    return {status: totals[status] or 0 for status in dated}


def dashboard_page(
    user: Any,
    filters: dict[str, Any],
    today: date,
    *,
    page_size: int = PAGE_SIZE,
    clinic_ids: list[int] | None = None,
) -> DashboardPage:
    if clinic_ids is None:
        clinic_ids = user_clinic_ids(user)
    if filters.get("clinic"):  # one of the user's clinics (any other: none)
        clinic_ids = [pk for pk in clinic_ids if pk == filters["clinic"]]
    from pathways.services import snoozes_ended_reassess

    # A snooze ends on its date: its card is back on the worklist that day, before the counts.
    snoozes_ended_reassess(clinic_ids=clinic_ids, today=today)
    matches = patients_matching(clinic_ids, filters["q"]) if filters["q"] else None
    follow_ups = open_follow_ups(filters, clinic_ids, matches)
    cards = needs_action(filters, clinic_ids, matches)
    if filters.get("mine"):  # the patients this user is responsible for
        follow_ups = follow_ups.filter(patient__responsible=user)
        cards = cards.filter(patient__responsible=user)
    if filters["q"] or filters.get("mine"):
        dated = status_counts(follow_ups, today, searched=bool(filters["q"]))
    else:
        dated = tallied_counts(clinic_ids, filters, today)
    counts = {"action": cards.count(), **dated}
    if filters["status"] == "action":
        follow_ups = follow_ups.none()
    elif filters["status"]:
        follow_ups = follow_ups.filter(_status_q(filters["status"], today))
        cards = cards.none()
    total = counts[filters["status"]] if filters["status"] else sum(counts.values())
    card_total = counts["action"] if filters["status"] in ("", "action") else 0
    number = min(max(1, int(filters["page"])), page_count(total, page_size))
    offset = (number - 1) * page_size
    # "Needs action" rows come first, then follow-ups: each page takes its share of each.
    card_keys: list[int] = []
    if offset < card_total:
        card_keys = list(
            cards.order_by("action_rank", "patient_id").values_list("patient_id", flat=True)[
                offset : offset + page_size
            ]
        )
    keys: list[int] = []
    room = page_size - len(card_keys)
    if room > 0:
        start = max(0, offset - card_total)
        # The page's keys first (a narrow sort when it cannot be read from an index), then rows.
        keys = list(
            follow_ups.order_by(*_ordering(filters["sort"])).values_list("pk", flat=True)[
                start : start + room
            ]
        )
    patients = Patient.objects.select_related("snapshot").in_bulk(card_keys)
    by_key = FollowUp.objects.select_related("patient", "patient__snapshot").in_bulk(keys)
    page = [by_key[key] for key in keys]
    recent = recent_alp_values(set(card_keys) | {follow_up.patient_id for follow_up in page})
    rows = []
    for patient_id in card_keys:
        values = recent.get(patient_id, ())
        rows.append(
            DashboardRow(
                patient=patients[patient_id],
                follow_up=None,
                status="action",
                days=0,
                sparkline=sparkline(values),
            )
        )
    for follow_up in page:
        values = recent.get(follow_up.patient_id, ())
        status = _status_of(follow_up.due, today)
        rows.append(
            DashboardRow(
                patient=follow_up.patient,
                follow_up=follow_up,
                status=status,
                days=abs((follow_up.due - today).days),
                sparkline=sparkline(values),
            )
        )
    return DashboardPage(
        rows=rows,
        counts=counts,
        total=total,
        number=number,
        filters=filters,
    )


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
