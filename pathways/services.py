"""Writes that touch several models, each in one transaction, always through save()/delete()
so that every change leaves a history row (django-simple-history does not see update())."""

from __future__ import annotations

import contextlib
import logging
import unicodedata
from collections import Counter
from collections.abc import Collection, Iterator
from datetime import date, datetime, time
from types import SimpleNamespace
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import F, Min, QuerySet
from django.utils import timezone
from simple_history.models import HistoricalRecords
from simple_history.utils import bulk_create_with_history

from pathways import engine, firing
from pathways.assessment import stored_follow_up
from pathways.cases import (
    apply_case_to_patient,
    lab_result_fields,
    patient_to_case,
    patient_to_document,
)
from pathways.feed_models import Hl7Feed, Hl7Result
from pathways.models import (
    ACTION_RANK,
    AccessLog,
    AssessmentSnapshot,
    Clinic,
    FollowUp,
    LabResult,
    Membership,
    Patient,
    Therapy,
    WorklistTally,
)
from pathways.rules import current_rule_set

_log = logging.getLogger(__name__)


class StaleVersion(Exception):
    """The patient was changed by someone else since the form was loaded."""

    def __init__(self, patient: Patient) -> None:
        super().__init__(
            f"{patient.name} was changed by someone else while you were editing "
            f"(now version {patient.version}). Your input is kept: review it and save again."
        )
        self.current_version = patient.version


class DuplicateResult(Exception):
    def __init__(self, lab: engine.Lab) -> None:
        when = lab.collected_on.isoformat() + (
            f" {lab.collected_time.isoformat(timespec='minutes')}" if lab.collected_time else ""
        )
        super().__init__(f"A {lab.test} result collected at {when} is already recorded.")


class DuplicateMrn(Exception):
    def __init__(self, mrn: str) -> None:
        super().__init__(f"MRN {mrn} is already used by another patient of this clinic.")


@contextlib.contextmanager
def history_user(user: Any) -> Iterator[None]:
    """Outside a request (a command, the MLLP listener), name ``user`` as the author of the
    history rows written inside."""
    context = HistoricalRecords.context
    if getattr(context, "request", None) is not None:
        yield
        return
    context.request = SimpleNamespace(user=user)
    try:
        yield
    finally:
        del context.request


def _author(user: Any) -> Any:
    """Who the history rows of a bulk insert name: the request's user, as for save()."""
    request = getattr(HistoricalRecords.context, "request", None)
    author = getattr(request, "user", None) if request is not None else None
    if author is not None and getattr(author, "is_authenticated", False):
        return author
    return user if getattr(user, "is_authenticated", False) else None


def _lock(patient: Patient, expected_version: int | None) -> Patient:
    """The patient row, locked; refused unless it is still at the version the change is based
    on (a change to a stored patient always names one: locking is never skipped)."""
    if expected_version is None:
        raise ValueError("expected_version is required to change a stored patient")
    locked = _locked(patient)
    if locked.version != expected_version:
        raise StaleVersion(locked)
    return locked


def _locked(patient: Patient) -> Patient:
    """The patient row, locked, for a write that keeps the case as stored (a follow-up mark):
    it serialises with case saves without asking for the version the user saw."""
    return Patient.objects.select_for_update().get(pk=patient.pk)


def _unchanged(patient: Patient, case: engine.Case, *, mrn: str, name: str) -> bool:
    """The locked patient already holds this case, MRN and name."""
    if (patient.mrn, patient.name) != (mrn, unicodedata.normalize("NFC", name)):
        return False
    stored = patient_to_case(patient, as_of=case.as_of)
    return engine.case_to_document(stored) == engine.case_to_document(case)


@transaction.atomic
def patient_save_case(
    *,
    user: Any,
    case: engine.Case,
    mrn: str,
    name: str,
    clinic: Clinic | None = None,
    patient: Patient | None = None,
    expected_version: int | None = None,
    with_results: bool = True,
    result_source: str | None = None,
    corrected_by_lab: Collection[tuple[str, date, time | None]] = (),
) -> Patient:
    """Create a patient (``clinic``) or replace an existing one's data (``patient``) from a case.

    Therapies absent from the case are deleted, and so are results unless ``with_results`` is
    False (the edit page, where results are edited one at a time and the case's results are the
    stored ones); follow-ups are recomputed. ``result_source`` marks the results it adds or
    changes (``imported`` for a FHIR Bundle). ``corrected_by_lab``: the (test, date, time) of
    results the laboratory corrected (a FHIR Observation amended or corrected); a stored result
    changed is marked as by ``patient_change_result`` (``_correction_marked``).
    """
    if patient is None:
        if clinic is None:
            raise ValueError("clinic is required for a new patient")
        patient = Patient(clinic=clinic, version=1)
        existing_labs: dict[tuple[str, date, Any], LabResult] = {}
        existing_therapies: dict[tuple[str, date], list[Therapy]] = {}
    else:
        patient = _lock(patient, expected_version)
        if _unchanged(patient, case, mrn=mrn, name=name):
            # Saved as shown: nothing to record (no new version, no history row), as a FHIR
            # Bundle equal to the stored case changes nothing; today's assessment all the same.
            follow_ups_sync(patient=patient)
            return patient
        patient.version += 1
        existing_labs = {
            (lab.test, lab.collected_on, lab.collected_time): lab
            for lab in patient.lab_results.all()
        }
        existing_therapies = {}
        for row in patient.therapies.order_by("pk"):  # one course may be listed twice
            existing_therapies.setdefault((row.agent, row.start), []).append(row)
    patient.mrn = mrn
    patient.name = name
    apply_case_to_patient(case, patient)
    try:
        with transaction.atomic():
            patient.save()
    except IntegrityError as error:
        raise DuplicateMrn(mrn) from error

    added: list[LabResult] = []
    for lab in case.labs if with_results else ():
        fields = lab_result_fields(lab)
        stored = existing_labs.pop((lab.test, lab.collected_on, lab.collected_time), None)
        if stored is None:
            source = result_source or LabResult.Source.ENTERED
            added.append(LabResult(patient=patient, entered_by=user, source=source, **fields))
        elif any(getattr(stored, name) != value for name, value in fields.items()):
            key = (lab.test, lab.collected_on, lab.collected_time)
            with _correction_marked(stored, by_lab=key in corrected_by_lab):
                for name, value in fields.items():
                    setattr(stored, name, value)
            if result_source is not None:
                stored.source = result_source
            stored.save()
    for stale_lab in existing_labs.values() if with_results else ():
        _delete_result(stale_lab)
    if added:  # in one insert (a FHIR Bundle may bring a thousand), each with its history row
        bulk_create_with_history(added, LabResult, batch_size=500, default_user=_author(user))

    for therapy in case.clinical.therapies:
        same_course = existing_therapies.get((therapy.agent, therapy.start), [])
        # The row with the same end, else any row of the course: each stored row stands for
        # one posted row, so a course listed twice stays twice and one removed goes.
        stored_therapy = next(
            (t for t in same_course if t.end == therapy.end),
            same_course[0] if same_course else None,
        )
        if stored_therapy is None:
            Therapy.objects.create(
                patient=patient, agent=therapy.agent, start=therapy.start, end=therapy.end
            )
            continue
        same_course.remove(stored_therapy)
        if stored_therapy.end != therapy.end:
            stored_therapy.end = therapy.end
            stored_therapy.save()
    for stale_therapy in [t for course in existing_therapies.values() for t in course]:
        stale_therapy.delete()

    follow_ups_sync(patient=patient)
    return patient


@transaction.atomic
def patient_record_result(
    *,
    patient: Patient,
    user: Any,
    lab: engine.Lab,
    expected_version: int,
    source: str = LabResult.Source.ENTERED,
    lab_comment: str = "",
) -> LabResult:
    """Add one result to a patient, refusing a second result for the same test and time."""
    patient = _lock(patient, expected_version)
    try:
        with transaction.atomic():
            result = LabResult.objects.create(
                patient=patient, entered_by=user, source=source, lab_comment=lab_comment,
                **lab_result_fields(lab),
            )  # fmt: skip
    except IntegrityError as error:
        raise DuplicateResult(lab) from error
    _bump(patient)
    return result


@transaction.atomic
def patient_change_result(
    *,
    patient: Patient,
    result: LabResult,
    user: Any,
    lab: engine.Lab,
    expected_version: int,
    source: str | None = None,
    lab_comment: str | None = None,
    corrected_by_lab: bool = False,
) -> LabResult:
    """Replace one stored result with a corrected one (same row, so its history shows both);
    ``lab_comment``: the laboratory's comment on the correction (None: the stored one stays).

    ``corrected_by_lab`` (the feed's OBX-11 C): see ``_correction_marked``."""
    patient = _lock(patient, expected_version)
    result = LabResult.objects.select_for_update().get(pk=result.pk, patient=patient)
    with _correction_marked(result, by_lab=corrected_by_lab):
        for name, value in lab_result_fields(lab).items():
            setattr(result, name, value)
    result.entered_by = user
    if source is not None:
        result.source = source
    if lab_comment is not None:
        result.lab_comment = lab_comment
    try:
        with transaction.atomic():
            result.save()
    except IntegrityError as error:
        raise DuplicateResult(lab) from error
    _bump(patient)
    return result


@contextlib.contextmanager
def _correction_marked(result: LabResult, *, by_lab: bool) -> Iterator[None]:
    """Around a change of a stored result: a value the laboratory corrected (``by_lab``) is
    marked corrected, with the value it replaced; a value changed otherwise, such as by hand,
    drops the mark (it is no longer the laboratory's). The same value keeps the mark as it is:
    a correction resent unchanged, new limits, a time put right."""
    before, shown = (result.value, result.unit), result.value_shown
    yield
    if (result.value, result.unit) != before:
        result.corrected_from = shown if by_lab else ""


@transaction.atomic
def patient_remove_result(*, patient: Patient, result: LabResult, expected_version: int) -> None:
    patient = _lock(patient, expected_version)
    _delete_result(LabResult.objects.select_for_update().get(pk=result.pk, patient=patient))
    _bump(patient)


def _delete_result(result: LabResult) -> None:
    """Delete a stored result. The lab feed's rows that stored it let go of it first, each
    with a history row naming who: the database's SET NULL would clear them by a bulk update
    the history does not see, and their history would still point at the result."""
    for row in Hl7Result.objects.select_for_update().filter(lab_result=result):
        row.lab_result = None
        row.save()
    result.delete()


def _bump(patient: Patient) -> None:
    """A locked patient's data changed: new version, follow-ups recomputed."""
    patient.version += 1
    patient.save()
    follow_ups_sync(patient=patient)


def follow_ups_sync(
    *,
    patient: Patient,
    result: engine.Result | None = None,
    cause: str = "edit",
    run_id: int | None = None,
) -> list[FollowUp]:
    """Store the follow-ups the engine schedules; keep completed ones as a record."""
    if result is None:
        result = engine.assess(patient_to_case(patient), current_rule_set())
    assessment_snapshot_store(patient=patient, result=result, cause=cause, run_id=run_id)
    rows = list(patient.follow_ups.all())
    stored = {(f.code, f.due): f for f in rows}
    kept: list[FollowUp] = []
    for item in result.follow_ups:
        earlier, own = stored_follow_up(item, rows)
        if earlier is not None and not own:
            continue  # done by an earlier one marked done (spec §5's window): kept as it is
        follow_up = stored.pop((item.code, item.due), None)
        if follow_up is None:
            follow_up = FollowUp(patient=patient, code=item.code, due=item.due)
        changed = (follow_up.title, follow_up.rule, follow_up.rule_set_version) != (
            item.title,
            item.rule or "",
            result.rule_set,
        )
        done_by_result = item.status == "done"
        if follow_up.completed_at is None and done_by_result:
            follow_up.completed_at = timezone.now()
            follow_up.completed_by_result = changed = True
        elif follow_up.completed_by_result and not done_by_result:
            follow_up.completed_at = None
            follow_up.completed_by_result = False
            changed = True
        if follow_up.pk is None or changed:
            follow_up.title = item.title
            follow_up.rule = item.rule or ""
            follow_up.rule_set_version = result.rule_set
            follow_up.save()
        kept.append(follow_up)
    for obsolete in stored.values():
        # A completion by hand is a record of what a clinician did: it stays.
        if obsolete.completed_at is None or obsolete.completed_by_result:
            obsolete.delete()
    worklist_copies_store(patient=patient, result=result)
    return kept


def worklist_copies_store(*, patient: Patient, result: engine.Result | None = None) -> None:
    """The snapshot's worklist copies (the first open follow-up's due date, the highest card not
    acted on) and the patient's share of WorklistTally. Every write to a patient's
    follow-ups or card actions ends here, under the patient's row lock, so the share last
    tallied is the one to take back. Without ``result`` the action rank stays as stored."""
    from pathways.card_actions import active_actions, card_actions_end_lapsed

    snapshot = (
        AssessmentSnapshot.objects.filter(patient=patient)
        .values("pathway", "action_rank", "tallied")
        .first()
    )
    if snapshot is None:
        return
    open_follow_ups = patient.follow_ups.filter(completed_at__isnull=True)
    next_due = open_follow_ups.aggregate(first=Min("due"))["first"]
    fields: dict[str, Any] = {
        "clinic_id": patient.clinic_id,
        "next_due": next_due,
        "scheduled": next_due is not None,
    }
    if result is not None:
        actions = active_actions(patient, result, current_rule_set())
        card_actions_end_lapsed(actions)
        fields["action_rank"] = actions.action_rank(result)
        fields["snooze_ends"] = actions.snooze_ends()
        # The worklist's "top recommendation" is what is left to do: the highest card nobody
        # has acted on; when every card has been acted on, the highest card (marked so).
        fields.update(top_card_fields(actions.first_open(result) or _first(result)))
    action_rank = fields.get("action_rank", snapshot["action_rank"])
    fields["tallied"] = worklist_share(
        patient.clinic_id, snapshot["pathway"], action_rank, next_due
    )
    AssessmentSnapshot.objects.filter(patient=patient).update(**fields)
    worklist_tally_apply(before=snapshot["tallied"], after=fields["tallied"])


def worklist_share(
    clinic: int, pathway: str, action_rank: int, next_due: date | None
) -> list[list[Any]]:
    """A patient's share of WorklistTally: its key when on the worklist, else none."""
    if action_rank > ACTION_RANK and next_due is None:
        return []
    return [[clinic, pathway, action_rank, None if next_due is None else next_due.isoformat()]]


def worklist_tally_apply(*, before: list[list[Any]], after: list[list[Any]]) -> None:
    """Add to WorklistTally the difference between two shares of one patient. Each row moves by
    an increment in SQL (``patients = patients + n``), so concurrent patients never lose one
    another's change; rows are taken in key order, so two transactions never wait on each
    other in a cycle."""
    counts: Counter[tuple[Any, ...]] = Counter(tuple(key) for key in after)
    counts.subtract(Counter(tuple(key) for key in before))
    changes = sorted(
        ((key, delta) for key, delta in counts.items() if delta),
        key=lambda change: (change[0][:3], change[0][3] or ""),
    )
    if not changes:
        return
    WorklistTally.objects.bulk_create(
        [
            WorklistTally(clinic_id=clinic, pathway=pathway, action_rank=rank, next_due=due)
            for (clinic, pathway, rank, due), _ in changes
        ],
        ignore_conflicts=True,
    )
    for (clinic, pathway, rank, due), delta in changes:
        WorklistTally.objects.filter(
            clinic_id=clinic, pathway=pathway, action_rank=rank, next_due=due
        ).update(patients=F("patients") + delta)


@transaction.atomic
def worklist_tally_rebuild() -> int:
    """Each snapshot's first due date and share, and WorklistTally counted afresh from them (for
    a database filled in bulk; the app keeps them as it writes). Returns the tally's rows."""
    WorklistTally.objects.select_for_update().all().delete()
    first_due = dict(
        FollowUp.objects.filter(completed_at__isnull=True)
        .values("patient_id")
        .annotate(first=Min("due"))
        .values_list("patient_id", "first")
        .order_by()
    )
    counts: Counter[tuple[Any, ...]] = Counter()
    snapshots = AssessmentSnapshot.objects.only(
        "patient_id", "clinic_id", "pathway", "action_rank", "next_due", "tallied"
    )
    for snapshot in snapshots.iterator():
        next_due = first_due.get(snapshot.patient_id)
        assert snapshot.clinic_id is not None
        share = worklist_share(snapshot.clinic_id, snapshot.pathway, snapshot.action_rank, next_due)
        counts.update(tuple(key) for key in share)
        if (share, next_due) != (snapshot.tallied, snapshot.next_due):
            AssessmentSnapshot.objects.filter(pk=snapshot.pk).update(
                tallied=share, next_due=next_due, scheduled=next_due is not None
            )
    rows = [
        WorklistTally(
            clinic_id=clinic, pathway=pathway, action_rank=rank, next_due=due, patients=patients
        )
        for (clinic, pathway, rank, due), patients in counts.items()
    ]
    WorklistTally.objects.bulk_create(rows, batch_size=2000)
    return len(rows)


def snapshot_fields(result: engine.Result) -> dict[str, Any]:
    """The AssessmentSnapshot columns for one engine result (the dashboard's view of it); the
    top card before any clinician's action (worklist_copies_store then takes those out)."""
    return {
        "as_of": result.as_of,
        "rule_set_version": result.rule_set,
        "pathway": result.pathway,
        "alp_latest": result.findings.alp_latest,
        "alp_x_uln": result.findings.alp_x_uln,
        "alp_elevated": bool(result.findings.alp_elevated),
        **top_card_fields(_first(result)),
        "recommendation_codes": [r.code for r in result.recommendations],
        "assessed_at": timezone.now(),
    }


def top_card_fields(top: engine.Recommendation | None) -> dict[str, Any]:
    """The snapshot's copy of the card the worklist shows as the patient's top one."""
    return {
        "top_priority": top.priority if top else "",
        "top_priority_rank": engine.PRIORITY_RANK.get(top.priority, 9) if top else 9,
        "top_code": top.code if top else "",
        "top_title": top.title if top else "",
    }


def _first(result: engine.Result) -> engine.Recommendation | None:
    return result.recommendations[0] if result.recommendations else None


def assessment_snapshot_store(
    *, patient: Patient, result: engine.Result, cause: str = "edit", run_id: int | None = None
) -> AssessmentSnapshot:
    """Refresh the patient's snapshot and log which rules started or stopped firing."""
    before = AssessmentSnapshot.objects.filter(patient=patient).values_list(
        "recommendation_codes", flat=True
    )
    previous = before.first()
    fields = snapshot_fields(result)
    snapshot, _ = AssessmentSnapshot.objects.update_or_create(patient=patient, defaults=fields)
    firing.firing_log_record(
        patient=patient,
        before=previous or [],
        after=fields["recommendation_codes"],
        rule_set_version=result.rule_set,
        cause=cause,
        run_id=run_id,
    )
    return snapshot


# Follow-ups that are a fact of the case: marking one done (as done, or done elsewhere)
# records the fact, so that the case and its cards agree ("Dental examination before…" goes).
CASE_FACT_FOLLOW_UPS = {"dental-exam": "dental_exam_done"}
CASE_FACT_OUTCOMES = ("done", "done_elsewhere")


class FollowUpGone(Exception):
    """The follow-up acted on is no longer scheduled (a result re-scheduled it meanwhile)."""


def _still_there(follow_up: FollowUp) -> FollowUp:
    """The follow-up, read again under its patient's lock."""
    current = FollowUp.objects.select_for_update().filter(pk=follow_up.pk).first()
    if current is None:
        raise FollowUpGone(
            f"{follow_up.title}: re-scheduled meanwhile (a new result or change): "
            "see the schedule as it is now"
        )
    return current


@transaction.atomic
def follow_up_mark_done(
    *,
    follow_up: FollowUp,
    user: Any,
    outcome: str = "done",
    done_on: date | None = None,
    note: str = "",
) -> FollowUp:
    """Record a follow-up done by hand: outcome, day and note; a case fact updates the case
    (under the patient's row lock, on the case as stored: no version to be stale)."""
    patient = _locked(follow_up.patient)
    follow_up = _still_there(follow_up)
    if follow_up.completed_at is None:
        follow_up.completed_at = timezone.now()
        follow_up.completed_by = user
        follow_up.outcome = outcome
        follow_up.done_on = done_on or timezone.localdate()
        follow_up.note = note
        follow_up.save()
    fact = CASE_FACT_FOLLOW_UPS.get(follow_up.code)
    # The outcome stored: marked done twice, the first holds (not a "declined" follow-up with
    # the examination recorded as done).
    if fact is not None and follow_up.outcome in CASE_FACT_OUTCOMES:
        _case_fact_store(patient=patient, user=user, fact=fact, value=True)
    else:
        follow_ups_sync(patient=patient)
    return follow_up


class FollowUpNotReopened(Exception):
    """Undo refused: the follow-up's completion is not the one the page showed with its Undo."""


def _undo_refusal(follow_up: FollowUp, user: Any, shown: datetime | None) -> str:
    """Why Undo may not take back the follow-up's completion as it is now ("" if it may)."""
    if follow_up.completed_at is None:
        return f"{follow_up.title}: already undone, the follow-up is open"
    if follow_up.completed_by_result:
        now = "done: a matching result is recorded"
    else:
        who = follow_up.completed_by
        name = (who.get_full_name() or who.get_username()) if who is not None else "nobody"
        if shown is None:
            if follow_up.completed_by_id == getattr(user, "pk", None):
                return ""
            return (
                f"{follow_up.title}: done by {name}, and the page did not say which completion "
                "to undo: it is shown as it is now; undo again if you still want to"
            )
        if follow_up.completed_at == shown:
            return ""
        now = f"done by {name} on {timezone.localtime(follow_up.completed_at):%Y-%m-%d %H:%M}"
    return (
        f"{follow_up.title}: its completion changed since this page was loaded (now {now}): "
        "it is shown as it is now; undo again if you still want to"
    )


@transaction.atomic
def follow_up_reopen(
    *, follow_up: FollowUp, user: Any, shown_completed_at: datetime | None = None
) -> FollowUp:
    """Undo "mark done": the follow-up is open again; a case fact it recorded is withdrawn.

    ``shown_completed_at``: when the completion the page showed with its Undo was recorded.
    Undo takes back that one only: from a page loaded before a colleague reopened it and
    recorded their own (or sent twice, a colleague's completion landing between), it would
    take back theirs, in this user's name, and withdraw the case fact they recorded. Not
    given (a page from before Undo said, a call from code): the user's own completion only.
    Refused, nothing changes (FollowUpNotReopened)."""
    patient = _locked(follow_up.patient)
    follow_up = _still_there(follow_up)
    refusal = _undo_refusal(follow_up, user, shown_completed_at)
    if refusal:
        raise FollowUpNotReopened(refusal)
    recorded_fact = follow_up.outcome in CASE_FACT_OUTCOMES
    follow_up.completed_at = None
    follow_up.completed_by = None
    follow_up.completed_by_result = False
    follow_up.outcome = ""
    follow_up.done_on = None
    follow_up.note = ""
    follow_up.save()
    fact = CASE_FACT_FOLLOW_UPS.get(follow_up.code)
    if fact is not None and recorded_fact:
        _case_fact_store(patient=patient, user=user, fact=fact, value=False)
    else:
        follow_ups_sync(patient=patient)
    return follow_up


class ResponsibleInvalid(Exception):
    """The chosen clinician is not a clinician of the patient's clinic."""


def clinic_clinicians(clinic_id: int) -> QuerySet[Any]:
    """The clinicians of a clinic, by name: who may be made responsible for its patients. Not a
    deactivated account, nor a lab feed's service user (a member of the clinic, whose results
    are recorded as theirs)."""
    return (
        get_user_model()
        .objects.filter(
            memberships__clinic_id=clinic_id,
            memberships__role=Membership.Role.CLINICIAN,
            is_active=True,
        )
        .exclude(pk__in=Hl7Feed.objects.values("service_user"))
        .order_by("last_name", "first_name", "username")
    )


@transaction.atomic
def patient_set_responsible(*, patient: Patient, responsible_id: int | None) -> Patient:
    """Make a clinician of the patient's clinic responsible for the patient (None: nobody).

    Not part of the case: no new version and no re-assessment, but the row is locked like any
    other write to the patient, the choice is checked against the clinic as it is now, and the
    change is kept in its history."""
    locked = _locked(patient)
    responsible = None
    if responsible_id is not None:
        responsible = clinic_clinicians(locked.clinic_id).filter(pk=responsible_id).first()
        if responsible is None:
            raise ResponsibleInvalid("choose a clinician of this clinic")
    if locked.responsible_id != responsible_id:
        locked.responsible = responsible
        locked.save(update_fields=["responsible"])
    return locked


def _case_fact_store(*, patient: Patient, user: Any, fact: str, value: bool) -> None:
    """Set one clinical field through the case write path (validated, versioned, re-assessed)."""
    document = patient_to_document(patient)
    if document["clinical"].get(fact) == value:
        follow_ups_sync(patient=patient)
        return
    document["clinical"][fact] = value
    case = engine.parse_case(document, today=timezone.localdate())
    patient_save_case(
        user=user,
        case=case,
        mrn=patient.mrn,
        name=patient.name,
        patient=patient,
        expected_version=patient.version,
    )


def access_log_bulk(*, user: Any, patients: set[int], action: str, path: str) -> None:
    """One access-log row per patient of an export, in one insert."""
    AccessLog.objects.bulk_create(
        (AccessLog(user=user, patient_id=pk, action=action, path=path[:500]) for pk in patients),
        batch_size=1000,
    )


def access_log_record(*, user: Any, patient: Patient, action: str, path: str) -> None:
    AccessLog.objects.create(user=user, patient=patient, action=action, path=path[:500])


def snoozes_ended_reassess(*, clinic_ids: list[int], today: date) -> int:
    """Re-assess the patients of these clinics whose snooze ended by ``today``, so that the
    worklist, which reads stored copies, shows the card again on its date and not only after
    the next daily re-assessment. Usually none: one range of snapshot_snooze_idx."""
    patient_ids = list(
        AssessmentSnapshot.objects.filter(
            clinic_id__in=clinic_ids, snooze_ends__lte=today
        ).values_list("patient_id", flat=True)
    )
    done = 0
    for patient_id in patient_ids:
        try:
            done += patient_reassess(patient_id=patient_id)
        except Exception:  # one patient's failure must not stop the others, nor the worklist
            _log.exception("re-assessment of patient %s after its snooze ended failed", patient_id)
    return done


def patient_reassess(*, patient_id: int, run_id: int | None = None) -> bool:
    """Re-assess one patient against the rule set in force, in its own transaction.

    The patient row is locked and re-read first, so a clinician's save that lands meanwhile is
    either waited for or sees the new rule set: a stale read never overwrites fresher data, and
    two writers never insert the same follow-up. Idempotent. False if the patient is gone.
    """
    with transaction.atomic():
        patient = Patient.objects.select_for_update().filter(pk=patient_id).first()
        if patient is None:
            return False
        follow_ups_sync(patient=patient, cause="reassessment", run_id=run_id)
    return True
