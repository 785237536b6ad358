"""Background work as durable tasks: django-tasks with its database backend (django-tasks-db).

Tasks are rows in the database, enqueued in the caller's transaction (so they exist exactly
when the work that asked for them commits) and run by `manage.py db_worker` processes on any
number of hosts. That backend has no lease: a running task writes a heartbeat, and the reaper
(`manage.py scheduler`) puts a task whose heartbeat stopped back in the queue. Every task here
is idempotent, so running one twice leaves the same state as running it once.

- Re-assessment (after a publication or rollback, daily, on demand): a ReassessmentRun split
  into chunks, one task each; each patient in its own transaction (services.patient_reassess);
  one patient's failure is recorded with the chunk and the others go on.
- The impact preview of a draft: one task that stores its result in an ImpactPreview.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from importlib import import_module
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F, Min
from django.utils import timezone
from django_tasks import TaskContext, TaskResultStatus, task
from django_tasks_db.models import DBTaskResult

from pathways import firing, impact, services
from pathways.models import (
    ImpactPreview,
    Patient,
    ReassessmentChunk,
    ReassessmentRun,
    RuleSet,
    RuleSetPublication,
    TaskHeartbeat,
)
from pathways.rules import current_rule_set_row

_log = logging.getLogger(__name__)


class WorkerLost(Exception):
    """Recorded on a task whose worker died more often than ALPCARE_TASK_MAX_ATTEMPTS allows."""


# ---------------------------------------------------------------------------------------------
# Heartbeat.

_last_beat: dict[str, float] = {}


def heartbeat(context: TaskContext, *, force: bool = False) -> None:
    """Record that the task is alive, at most every ALPCARE_TASK_HEARTBEAT_SECONDS.

    Called between units of work (never inside a patient's transaction).
    """
    task_id = str(context.task_result.id)
    now = time.monotonic()
    if not force and now - _last_beat.get(task_id, -math.inf) < _heartbeat_seconds():
        return
    _last_beat[task_id] = now
    try:
        TaskHeartbeat.objects.update_or_create(
            task_id=task_id, defaults={"beat_at": timezone.now()}
        )
    except DatabaseError:  # a busy database: the work matters more; the next beat may pass
        _log.warning("heartbeat of task %s not recorded", task_id, exc_info=True)


def _heartbeat_done(context: TaskContext) -> None:
    task_id = str(context.task_result.id)
    _last_beat.pop(task_id, None)
    TaskHeartbeat.objects.filter(task_id=task_id).delete()


def _heartbeat_seconds() -> int:
    return int(settings.ALPCARE_TASK_HEARTBEAT_SECONDS)


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:500]


# ---------------------------------------------------------------------------------------------
# Re-assessment runs.


def reassessment_start(
    *,
    reason: str,
    rule_set: RuleSet | None = None,
    publication: RuleSetPublication | None = None,
    user: Any = None,
    daily_for: date | None = None,
) -> ReassessmentRun:
    """Plan a re-assessment of every patient and enqueue its chunks.

    Call it inside the transaction that makes it necessary (a publication): the tasks are rows
    written in that transaction, so they run exactly when it commits, and survive a crash.
    """
    with transaction.atomic():
        run = ReassessmentRun.objects.create(
            reason=reason,
            rule_set=rule_set or current_rule_set_row(),
            publication=publication,
            requested_by=user if getattr(user, "pk", None) else None,
            daily_for=daily_for,
        )
        ids = list(Patient.objects.order_by("pk").values_list("pk", flat=True))
        _enqueue_chunks(run, ids, after_pk=ids[-1] if ids else 0)
    return run


def reassessment_daily(*, today: date | None = None) -> ReassessmentRun | None:
    """The scheduler's run for ``today``; None when it was already started (by any host)."""
    today = today or timezone.localdate()
    if ReassessmentRun.objects.filter(daily_for=today).exists():
        return None
    try:
        with transaction.atomic():
            return reassessment_start(reason=ReassessmentRun.Reason.DAILY, daily_for=today)
    except IntegrityError:  # another scheduler started it meanwhile
        return None


class NothingToRetry(Exception):
    """A retry refused; the message says why (shown to the publisher as it is)."""


def reassessment_retry(*, run: ReassessmentRun, user: Any = None) -> ReassessmentRun:
    """A new run for the patients that failed in ``run`` and for its chunks that never finished.

    Only once, and only when nothing of ``run`` is still running (its live chunks would be
    queued twice): the run row is locked, so a double click starts one retry."""
    with transaction.atomic():
        run = ReassessmentRun.objects.select_for_update().get(pk=run.pk)
        progress = run_progress(run)
        if not progress.retryable:
            raise NothingToRetry(progress.not_retryable)
        ids: list[int] = []
        after_pk: int | None = None
        for chunk in run.chunks.all():
            if chunk.finished_at is None:
                ids += chunk.patient_ids
                if chunk.after_pk is not None:
                    after_pk = chunk.after_pk
            else:
                ids += [failure["patient"] for failure in chunk.failures]
        retry = ReassessmentRun.objects.create(
            reason=ReassessmentRun.Reason.RETRY,
            rule_set=current_rule_set_row(),
            retry_of=run,
            requested_by=user if getattr(user, "pk", None) else None,
        )
        _enqueue_chunks(retry, sorted(set(ids)), after_pk=after_pk)
    return retry


def _enqueue_chunks(run: ReassessmentRun, ids: list[int], *, after_pk: int | None) -> None:
    size = max(1, int(settings.ALPCARE_REASSESS_CHUNK_SIZE))
    groups = [ids[start : start + size] for start in range(0, len(ids), size)] or [[]]
    # Every chunk exists before the first task may run (tests run tasks at once).
    chunks = ReassessmentChunk.objects.bulk_create(
        [
            ReassessmentChunk(
                run=run,
                number=number,
                patient_ids=group,
                total=len(group),
                after_pk=after_pk if number == len(groups) - 1 else None,
            )
            for number, group in enumerate(groups)
        ]
    )
    if any(chunk.pk is None for chunk in chunks):  # backends without RETURNING
        chunks = list(run.chunks.order_by("number"))
    for chunk in chunks:
        result = reassess_chunk.enqueue(chunk_id=chunk.pk)
        ReassessmentChunk.objects.filter(pk=chunk.pk).update(task_id=str(result.id))


@task(takes_context=True)
def reassess_chunk(context: TaskContext, chunk_id: int) -> dict[str, int]:
    """Re-assess one chunk's patients, each in its own transaction; idempotent."""
    chunk = ReassessmentChunk.objects.filter(pk=chunk_id).first()
    if chunk is None:  # its run was deleted
        return {"total": 0, "done": 0, "failed": 0}
    ids = list(chunk.patient_ids)
    if chunk.after_pk is not None:  # and the patients added since the run was planned
        later = Patient.objects.filter(pk__gt=chunk.after_pk).order_by("pk")
        ids += list(later.values_list("pk", flat=True))
    ReassessmentChunk.objects.filter(pk=chunk_id).update(attempts=F("attempts") + 1, total=len(ids))
    heartbeat(context, force=True)
    done = 0
    failures: list[dict[str, Any]] = []
    last_progress = time.monotonic()
    for patient_id in ids:
        try:
            done += services.patient_reassess(patient_id=patient_id, run_id=chunk.run_id)
        except Exception as error:  # recorded with the chunk; the other patients go on
            _log.exception("re-assessment of patient %s failed", patient_id)
            failures.append({"patient": patient_id, "error": _error_text(error)})
        heartbeat(context)
        if time.monotonic() - last_progress >= _heartbeat_seconds():
            last_progress = time.monotonic()
            ReassessmentChunk.objects.filter(pk=chunk_id).update(done=done, failed=len(failures))
    _chunk_finished(chunk, done=done, failures=failures)
    _heartbeat_done(context)
    return {"total": done + len(failures), "done": done, "failed": len(failures)}


def _chunk_finished(chunk: ReassessmentChunk, *, done: int, failures: list[dict[str, Any]]) -> None:
    now = timezone.now()
    with transaction.atomic():
        # The run row is the lock that orders the chunks finishing at the same moment.
        run = ReassessmentRun.objects.select_for_update().get(pk=chunk.run_id)
        ReassessmentChunk.objects.filter(pk=chunk.pk).update(
            total=done + len(failures),
            done=done,
            failed=len(failures),
            failures=failures,
            finished_at=now,
        )
        if run.finished_at is None and not run.chunks.filter(finished_at=None).exists():
            run.finished_at = now
            run.save(update_fields=["finished_at"])
            # What the publication changed for each clinic: the clinicians' worklist notice.
            firing.publication_impact_store(run=run)


@dataclass(frozen=True)
class RunProgress:
    run: ReassessmentRun
    total: int
    done: int
    failed: int
    chunks: int
    chunks_finished: int
    lost_chunks: int  # unfinished, and their task failed or is gone: retry the run
    failures: list[dict[str, Any]] = field(default_factory=list)
    retried_as: int | None = None  # the run that retried this one

    @property
    def live_chunks(self) -> int:
        """Unfinished chunks whose task is queued or running."""
        return self.chunks - self.chunks_finished - self.lost_chunks

    @property
    def status(self) -> str:
        if self.run.finished_at is not None:
            status = f"finished, {self.failed} failed" if self.failed else "finished"
        elif self.lost_chunks:
            status = f"stalled: {self.lost_chunks} chunk(s) failed"
        else:
            return "running" if self.chunks_finished or self.done else "waiting for a worker"
        return status if self.retried_as is None else f"{status}; retried as run {self.retried_as}"

    @property
    def retryable(self) -> bool:
        return self.not_retryable == ""

    @property
    def not_retryable(self) -> str:
        """Why the run cannot be retried ("": it can)."""
        if self.retried_as is not None:
            return f"Run {self.run.pk} was retried as run {self.retried_as}."
        if not (self.failed or self.lost_chunks):
            return f"Run {self.run.pk} has nothing to retry."
        if self.live_chunks:
            return (
                f"Run {self.run.pk} is still running ({self.live_chunks} chunk(s) queued or "
                "running): retry it once they have finished."
            )
        return ""

    @property
    def percent(self) -> int:
        return (
            100 if not self.total else min(100, round(100 * (self.done + self.failed) / self.total))
        )


def run_progress(run: ReassessmentRun) -> RunProgress:
    chunks = list(run.chunks.all())
    lost = _lost_tasks(chunk.task_id for chunk in chunks if chunk.finished_at is None)
    return RunProgress(
        run=run,
        total=sum(chunk.total for chunk in chunks),
        done=sum(chunk.done for chunk in chunks),
        failed=sum(chunk.failed for chunk in chunks),
        chunks=len(chunks),
        chunks_finished=sum(1 for chunk in chunks if chunk.finished_at is not None),
        lost_chunks=sum(
            1 for chunk in chunks if chunk.finished_at is None and chunk.task_id in lost
        ),
        failures=[failure for chunk in chunks for failure in chunk.failures],
        retried_as=run.retries.order_by("pk").values_list("pk", flat=True).first(),
    )


# ---------------------------------------------------------------------------------------------
# Impact preview.


def impact_preview_start(*, draft: RuleSet, user: Any) -> ImpactPreview:
    """Enqueue the impact preview of ``draft`` for ``user``; the page polls it."""
    with transaction.atomic():
        preview = ImpactPreview.objects.create(
            draft=draft,
            published=current_rule_set_row(),
            requested_by=user,
            draft_edited_at=draft.last_edited_at,
            patients_total=Patient.objects.count(),
        )
        result = impact_preview_run.enqueue(preview_id=preview.pk)
        ImpactPreview.objects.filter(pk=preview.pk).update(task_id=str(result.id))
    preview.refresh_from_db()
    return preview


@task(takes_context=True, priority=10)  # someone is waiting for it
def impact_preview_run(context: TaskContext, preview_id: int) -> int:
    preview = (
        ImpactPreview.objects.select_related("draft", "published", "requested_by")
        .filter(pk=preview_id)
        .first()
    )
    if preview is None:
        return 0
    heartbeat(context, force=True)

    def progress(patients: int) -> None:
        heartbeat(context)
        ImpactPreview.objects.filter(pk=preview_id).update(patients_done=patients)

    try:
        outcome = impact.ruleset_preview(
            draft=preview.draft,
            published=preview.published,
            user=preview.requested_by,
            progress=progress,
        )
    except Exception as error:
        ImpactPreview.objects.filter(pk=preview_id).update(
            error=_error_text(error), finished_at=timezone.now()
        )
        raise
    finally:
        _heartbeat_done(context)
    ImpactPreview.objects.filter(pk=preview_id).update(
        result=impact.preview_to_json(outcome),
        patients_done=outcome.patients,
        patients_total=outcome.patients,
        error="",
        finished_at=timezone.now(),
    )
    return outcome.patients


# ---------------------------------------------------------------------------------------------
# The reaper and the queue's health.


def _stale_cutoff(now: datetime) -> datetime:
    return now - timedelta(seconds=int(settings.ALPCARE_TASK_STALE_SECONDS))


def _stale_running(now: datetime) -> list[DBTaskResult]:
    """Running tasks with no sign of life (start or heartbeat) since the stale cutoff."""
    cutoff = _stale_cutoff(now)
    running = list(DBTaskResult.objects.running())
    beats = dict(
        TaskHeartbeat.objects.filter(task_id__in=[str(row.id) for row in running]).values_list(
            "task_id", "beat_at"
        )
    )
    stale = []
    for row in running:
        last = max(filter(None, (row.started_at, beats.get(str(row.id)))), default=None)
        if last is None or last < cutoff:
            stale.append(row)
    return stale


# How a task ends when its worker is stopped under it (db_worker's second signal).
INTERRUPTED = ("builtins.SystemExit", "builtins.KeyboardInterrupt")


def _requeued_by_reaper(
    *, status: str, task_path: str, exception_class_path: str, worker_ids: list[str]
) -> bool:
    """Whether a task ended this way is one the reaper (the scheduler's next pass) puts back
    in the queue: stopped under its worker (SystemExit, KeyboardInterrupt), with tries left.

    Until that pass its row reads FAILED, but the task will run again: its run has not stalled
    (run_progress, queue health) and retrying the run would queue its patients twice."""
    return (
        status == TaskResultStatus.FAILED
        and task_path.startswith("pathways.")
        and exception_class_path in INTERRUPTED
        and len(worker_ids) < int(settings.ALPCARE_TASK_MAX_ATTEMPTS)
    )


def _lost_tasks(task_ids: Iterable[str]) -> set[str]:
    """Of these task ids, those whose task will not run (again): it failed (and the reaper will
    not re-queue it), or its row is gone (pruned with prune_db_task_results after it failed;
    a queued or running row is never pruned)."""
    wanted = {task_id for task_id in task_ids if task_id}
    if not wanted:
        return set()
    found: set[str] = set()
    lost: set[str] = set()
    rows = DBTaskResult.objects.filter(id__in=wanted).values_list(
        "id", "status", "task_path", "exception_class_path", "worker_ids"
    )
    for pk, status, task_path, exception_class_path, worker_ids in rows:
        found.add(str(pk))
        if status == TaskResultStatus.FAILED and not _requeued_by_reaper(
            status=status,
            task_path=task_path,
            exception_class_path=exception_class_path,
            worker_ids=worker_ids,
        ):
            lost.add(str(pk))
    return lost | (wanted - found)


@dataclass(frozen=True)
class ReapOutcome:
    requeued: list[str]
    failed: list[str]


def tasks_reap(*, now: datetime | None = None) -> ReapOutcome:
    """Put the tasks of dead workers back in the queue (or fail them after too many tries)."""
    now = now or timezone.now()
    stale_ids = [row.id for row in _stale_running(now)]
    requeued: list[str] = []
    failed: list[str] = []
    max_attempts = int(settings.ALPCARE_TASK_MAX_ATTEMPTS)
    with transaction.atomic():
        rows = DBTaskResult.objects.running().filter(id__in=stale_ids)
        for row in rows.select_for_update(skip_locked=True):
            if len(row.worker_ids) >= max_attempts:
                row.status = TaskResultStatus.FAILED
                row.finished_at = now
                row.exception_class_path = f"{WorkerLost.__module__}.{WorkerLost.__qualname__}"
                row.traceback = (
                    f"WorkerLost: no heartbeat for {settings.ALPCARE_TASK_STALE_SECONDS} s, "
                    f"{len(row.worker_ids)} times (workers {', '.join(row.worker_ids)})"
                )
                row.save(
                    update_fields=["status", "finished_at", "exception_class_path", "traceback"]
                )
                failed.append(str(row.id))
            else:
                # Waiting again from now: queue_health's oldest_ready_seconds is the wait for
                # a worker, not the task's age.
                row.status = TaskResultStatus.READY
                row.enqueued_at = now
                row.save(update_fields=["status", "enqueued_at"])
                requeued.append(str(row.id))
        # A worker stopped twice (SIGTERM, then again) ends its task with SystemExit: the
        # worker's loss, not the task's failure. Our tasks are idempotent: queued again.
        interrupted = DBTaskResult.objects.failed().filter(
            task_path__startswith="pathways.", exception_class_path__in=INTERRUPTED
        )
        for row in interrupted.select_for_update(skip_locked=True):
            if _requeued_by_reaper(
                status=row.status,
                task_path=row.task_path,
                exception_class_path=row.exception_class_path,
                worker_ids=row.worker_ids,
            ):
                row.status = TaskResultStatus.READY
                row.enqueued_at = now
                row.finished_at = None
                row.exception_class_path = ""
                row.traceback = ""
                row.save(
                    update_fields=[
                        "status",
                        "enqueued_at",
                        "finished_at",
                        "exception_class_path",
                        "traceback",
                    ]
                )
                requeued.append(str(row.id))
    # Beats of tasks no longer running: re-queued ones start afresh; others ended abruptly.
    running = [str(pk) for pk in DBTaskResult.objects.running().values_list("id", flat=True)]
    TaskHeartbeat.objects.exclude(task_id__in=running).delete()
    for task_id in requeued:
        _log.warning("task %s lost its worker: queued again", task_id)
    for task_id in failed:
        _log.error("task %s lost its worker %d times: marked failed", task_id, max_attempts)
    return ReapOutcome(requeued=requeued, failed=failed)


@dataclass(frozen=True)
class QueueHealth:
    ready: int
    oldest_ready_seconds: int | None
    running: int
    stale_running: int
    failed_last_day: int
    max_wait_seconds: int
    stalled_runs: int = 0  # re-assessment runs with a chunk whose task failed, not retried

    @property
    def healthy(self) -> bool:
        waited = self.oldest_ready_seconds or 0
        return self.stale_running == 0 and waited <= self.max_wait_seconds and not self.stalled_runs

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.healthy else "degraded",
            "ready": self.ready,
            "oldest_ready_seconds": self.oldest_ready_seconds,
            "running": self.running,
            "stale_running": self.stale_running,
            "failed_last_day": self.failed_last_day,
            "stalled_runs": self.stalled_runs,
        }


def queue_health(*, now: datetime | None = None) -> QueueHealth:
    """Counts only (no task arguments, no patient data): for monitoring and the admin."""
    now = now or timezone.now()
    ready = DBTaskResult.objects.ready()
    oldest = ready.aggregate(oldest=Min("enqueued_at"))["oldest"]
    return QueueHealth(
        ready=ready.count(),
        oldest_ready_seconds=None if oldest is None else int((now - oldest).total_seconds()),
        running=DBTaskResult.objects.running().count(),
        stale_running=len(_stale_running(now)),
        failed_last_day=DBTaskResult.objects.failed()
        .filter(finished_at__gte=now - timedelta(days=1))
        .count(),
        max_wait_seconds=int(settings.ALPCARE_QUEUE_MAX_WAIT_SECONDS),
        stalled_runs=_stalled_runs(),
    )


def _stalled_runs() -> int:
    """Runs that stopped short: a chunk unfinished whose task failed (a worker lost too often)
    or whose failed task's row was pruned since, and no retry yet; as run_progress counts its
    lost chunks. Patients wait on the old assessment until someone retries. Read from the
    unfinished chunks (few, and only while runs are going), not from every failed task kept."""
    unfinished = dict(
        ReassessmentChunk.objects.filter(finished_at=None, run__retries__isnull=True)
        .exclude(task_id="")
        .values_list("task_id", "run_id")
    )
    return len({unfinished[task_id] for task_id in _lost_tasks(unfinished)})


# ---------------------------------------------------------------------------------------------
# The scheduler's tick.


# How long after its time a daily run the scheduler missed (it was down) is still started: past
# half a day, the next day's run is nearer than the missed one.
DAILY_CATCH_UP = timedelta(hours=12)


def daily_due(now: datetime) -> date | None:
    """The date whose daily run is due at ``now`` (once: reassessment_daily starts it only if
    it has no run yet), or None.

    Today's, from ALPCARE_DAILY_REASSESS_AT on (the local time of day: on a day the clocks go
    forward past it, from the first minute after). Before it, yesterday's, for DAILY_CATCH_UP
    after its time: a run missed while the scheduler was down (23:30, with the scheduler back
    at 00:30) is caught up at its next pass, not a day later."""
    hours, minutes, *_seconds = str(settings.ALPCARE_DAILY_REASSESS_AT).split(":")
    at = (int(hours), int(minutes))
    local = timezone.localtime(now)
    if (local.hour, local.minute) >= at:
        return local.date()
    yesterday = local.date() - timedelta(days=1)
    slot = timezone.make_aware(
        datetime(yesterday.year, yesterday.month, yesterday.day, *at),
        timezone.get_current_timezone(),
    )
    return yesterday if now - slot < DAILY_CATCH_UP else None


def scheduler_tick(*, now: datetime | None = None) -> list[str]:
    """One pass of the scheduler: re-queue lost tasks, start the daily run once it is time (or
    one missed while the scheduler was down, see daily_due), and delete expired sessions
    (Django keeps them until ``clearsessions`` runs; one per login would pile up for good)."""
    now = now or timezone.now()
    said: list[str] = []
    import_module(settings.SESSION_ENGINE).SessionStore.clear_expired()
    reaped = tasks_reap(now=now)
    if reaped.requeued:
        said.append(f"re-queued {len(reaped.requeued)} task(s) of a lost worker")
    if reaped.failed:
        said.append(f"failed {len(reaped.failed)} task(s) that lost their worker too often")
    due = daily_due(now)
    if due is not None:
        run = reassessment_daily(today=due)
        if run is not None:
            said.append(f"enqueued the daily re-assessment (run {run.pk})")
    return said


def task_failed(task_id: str) -> bool:
    """Whether the task with this id failed (or is unknown: its row was pruned); not one the
    reaper will run again (stopped under its worker)."""
    return task_id in _lost_tasks([task_id])
