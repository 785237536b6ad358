"""Re-assessment after a rule-set change, daily and on demand: durable tasks (issue 9, findings
3 and 4). Publication enqueues chunks in its own transaction; each patient is re-assessed in
its own locked transaction; failures are recorded and retried; a dead worker's task is
re-queued by the reaper; the queue's health is reported."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from pathways import engine, publishing, services, tasks
from pathways.models import (
    AssessmentSnapshot,
    Clinic,
    FollowUp,
    Patient,
    ReassessmentRun,
    RuleSet,
    TaskHeartbeat,
)
from tests.factories import paget_on_alendronate_document, publish_reviewed, stored_patient
from tests.taskqueue import run_ready_tasks, run_task_now

pytestmark = pytest.mark.django_db


def failing_for(monkeypatch: pytest.MonkeyPatch, broken: Patient) -> Any:
    """Re-assessing ``broken`` fails as a rule that raises on its case would; returns the real
    follow_ups_sync, to put back."""
    real_sync = services.follow_ups_sync

    def sync_failing_for_one(*, patient: Patient, result: Any = None, **kwargs: Any) -> Any:
        if patient.pk == broken.pk:
            raise engine.RuleEvaluationError("rule extreme-alp: no such key")
        return real_sync(patient=patient, result=result, **kwargs)

    monkeypatch.setattr(services, "follow_ups_sync", sync_failing_for_one)
    return real_sync


def _patients(clinic: Clinic, user: User, count: int) -> list[Patient]:
    return [
        stored_patient(clinic, user, paget_on_alendronate_document(), mrn=f"R-{n}", name=f"P {n}")
        for n in range(count)
    ]


def _publish_unchanged(editor: User, publisher: User, **kwargs: Any) -> RuleSet:
    draft = publishing.ruleset_start_draft(user=editor)
    return publish_reviewed(rule_set=draft, user=publisher, note="new label", **kwargs)


def _on_version(version: str) -> int:
    return AssessmentSnapshot.objects.filter(rule_set_version=version).count()


def _follow_ups(patient: Patient) -> set[tuple[str, date, str]]:
    return set(
        FollowUp.objects.filter(patient=patient, completed_at__isnull=True).values_list(
            "code", "due", "rule_set_version"
        )
    )


@pytest.mark.queued_tasks
def test_publication_enqueues_the_reassessment_in_chunks_in_its_own_transaction(
    settings: Any, north_clinic: Clinic, alice: User, editor: User, publisher: User
) -> None:
    settings.ALPCARE_REASSESS_CHUNK_SIZE = 2
    patients = _patients(north_clinic, alice, 5)
    published = _publish_unchanged(editor, publisher)

    # Durable: rows in the database, nothing done yet (a worker runs them after the commit).
    queued = DBTaskResult.objects.filter(task_path="pathways.tasks.reassess_chunk")
    assert queued.count() == 3 and all(row.status == TaskResultStatus.READY for row in queued)
    assert _on_version(published.label) == 0
    run = ReassessmentRun.objects.get(publication__rule_set=published)
    assert (run.reason, run.rule_set, run.finished_at) == ("publish", published, None)
    assert tasks.run_progress(run).status == "waiting for a worker"

    assert run_ready_tasks() == 3
    assert _on_version(published.label) == len(patients)
    run.refresh_from_db()
    progress = tasks.run_progress(run)
    assert run.finished_at is not None
    assert (progress.total, progress.done, progress.failed, progress.status) == (
        5,
        5,
        0,
        "finished",
    )
    assert not TaskHeartbeat.objects.exists()  # cleared when each task finished


@pytest.mark.queued_tasks
def test_a_publication_that_rolls_back_leaves_no_task(
    north_clinic: Clinic, alice: User, editor: User, publisher: User
) -> None:
    _patients(north_clinic, alice, 2)
    draft = publishing.ruleset_start_draft(user=editor)
    with pytest.raises(RuntimeError), transaction.atomic():
        publish_reviewed(rule_set=draft, user=publisher, note="then a crash")
        raise RuntimeError("the request dies before it commits")
    assert not DBTaskResult.objects.exists()
    assert not ReassessmentRun.objects.exists()


@pytest.mark.queued_tasks
def test_a_rollback_enqueues_a_run_too(
    north_clinic: Clinic, alice: User, editor: User, publisher: User
) -> None:
    _patients(north_clinic, alice, 2)
    original = RuleSet.objects.get(is_current=True)
    _publish_unchanged(editor, publisher, reassess=False)
    publishing.ruleset_rollback(rule_set=original, user=publisher, note="back")
    run = ReassessmentRun.objects.get()
    assert (run.reason, run.rule_set) == ("rollback", original)
    run_ready_tasks()
    assert _on_version(original.label) == 2


def test_one_patients_failure_is_recorded_the_others_go_on_and_a_retry_finishes_it(
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    north_clinic: Clinic,
    alice: User,
    editor: User,
    publisher: User,
) -> None:
    settings.ALPCARE_REASSESS_CHUNK_SIZE = 2
    patients = _patients(north_clinic, alice, 4)
    broken = patients[1]
    real_sync = failing_for(monkeypatch, broken)
    published = _publish_unchanged(editor, publisher)
    run = ReassessmentRun.objects.get()
    progress = tasks.run_progress(run)
    assert run.finished_at is not None
    assert (progress.done, progress.failed, progress.status) == (3, 1, "finished, 1 failed")
    assert progress.failures == [
        {"patient": broken.pk, "error": "RuleEvaluationError: rule extreme-alp: no such key"}
    ]
    assert progress.retryable
    assert _on_version(published.label) == 3
    assert not DBTaskResult.objects.failed().exists()  # the chunk task itself succeeded

    monkeypatch.setattr(services, "follow_ups_sync", real_sync)  # it can be assessed again
    retry = tasks.reassessment_retry(run=run, user=publisher)
    retried = tasks.run_progress(retry)
    assert (retry.retry_of, retried.total, retried.done, retried.failed) == (run, 1, 1, 0)
    assert _on_version(published.label) == 4


@pytest.mark.queued_tasks
def test_a_run_is_retried_once_and_not_while_its_chunks_still_run(
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    north_clinic: Clinic,
    alice: User,
    editor: User,
    publisher: User,
) -> None:
    """Retry was offered once anything failed: with a chunk still queued it queued that chunk's
    patients a second time; and a run stayed retryable after its retry, so two clicks queued its
    failures twice. Found by an audit."""
    settings.ALPCARE_REASSESS_CHUNK_SIZE = 2
    patients = _patients(north_clinic, alice, 4)
    real_sync = failing_for(monkeypatch, patients[0])
    _publish_unchanged(editor, publisher)
    run = ReassessmentRun.objects.get()
    first, second = [DBTaskResult.objects.get(id=c.task_id) for c in run.chunks.order_by("number")]
    run_task_now(first)  # one failure; the second chunk is still queued
    progress = tasks.run_progress(run)
    assert progress.failed == 1 and not progress.retryable
    with pytest.raises(tasks.NothingToRetry, match="still running"):
        tasks.reassessment_retry(run=run, user=publisher)

    run_task_now(second)
    monkeypatch.setattr(services, "follow_ups_sync", real_sync)
    retry = tasks.reassessment_retry(run=run, user=publisher)
    assert [c.patient_ids for c in retry.chunks.all()] == [[patients[0].pk]]
    with pytest.raises(tasks.NothingToRetry, match=f"retried as run {retry.pk}"):
        tasks.reassessment_retry(run=run, user=publisher)  # a second click
    run_ready_tasks()
    run.refresh_from_db()
    progress = tasks.run_progress(run)
    assert not progress.retryable
    assert progress.status == f"finished, 1 failed; retried as run {retry.pk}"
    assert ReassessmentRun.objects.filter(retry_of=run).count() == 1


@pytest.mark.queued_tasks
def test_progress_counts_the_patients_added_after_the_run_was_planned(
    monkeypatch: pytest.MonkeyPatch,
    north_clinic: Clinic,
    alice: User,
    editor: User,
    publisher: User,
) -> None:
    """The last chunk also re-assesses patients added since the run was planned, but while it
    ran its total did not count them: "3 of 2". Found by an audit."""
    _patients(north_clinic, alice, 2)
    _publish_unchanged(editor, publisher)
    stored_patient(north_clinic, alice, paget_on_alendronate_document(), mrn="LATE", name="L")
    run = ReassessmentRun.objects.get()
    totals: list[int] = []
    real = services.patient_reassess

    def reassess(*, patient_id: int, run_id: int | None = None) -> bool:
        totals.append(tasks.run_progress(run).total)  # what the admin shows meanwhile
        return real(patient_id=patient_id, run_id=run_id)

    monkeypatch.setattr(services, "patient_reassess", reassess)
    run_ready_tasks()
    assert totals == [3, 3, 3]
    run.refresh_from_db()
    progress = tasks.run_progress(run)
    assert (progress.done, progress.total) == (3, 3)


@pytest.mark.queued_tasks
def test_running_a_chunk_twice_gives_the_same_state(
    north_clinic: Clinic, alice: User, editor: User, publisher: User
) -> None:
    patients = _patients(north_clinic, alice, 3)
    published = _publish_unchanged(editor, publisher)
    row = DBTaskResult.objects.get(task_path="pathways.tasks.reassess_chunk")
    run_task_now(row)
    state = [(_follow_ups(p), AssessmentSnapshot.objects.get(patient=p).top_code) for p in patients]
    # As when the reaper re-queues a task whose worker was slow, not dead.
    DBTaskResult.objects.filter(pk=row.pk).update(status=TaskResultStatus.READY)
    assert run_ready_tasks() == 1
    again = [(_follow_ups(p), AssessmentSnapshot.objects.get(patient=p).top_code) for p in patients]
    assert again == state
    assert all(version == published.version for f, _ in again for *_, version in f)
    progress = tasks.run_progress(ReassessmentRun.objects.get())
    assert (progress.total, progress.done, progress.failed) == (3, 3, 0)  # replaced, not added
    assert ReassessmentRun.objects.get().chunks.get().attempts == 2


@pytest.mark.queued_tasks
def test_a_result_added_after_publication_is_not_overwritten_by_the_run(
    north_clinic: Clinic, alice: User, editor: User, publisher: User
) -> None:
    (patient,) = _patients(north_clinic, alice, 1)
    published = _publish_unchanged(editor, publisher)
    # A clinician adds a result between the publication and the worker's turn.
    document = paget_on_alendronate_document()
    document["labs"].append(
        {"test": "alp", "value": 738, "unit": "U/L", "collected_at": "2026-11-20T09:00"}
    )
    lab = engine.parse_case(document).labs[-1]
    assert lab.value == 738
    patient.refresh_from_db()
    services.patient_record_result(
        patient=patient, user=alice, lab=lab, expected_version=patient.version
    )
    run_ready_tasks()
    snapshot = AssessmentSnapshot.objects.get(patient=patient)
    assert (snapshot.alp_latest, snapshot.rule_set_version) == (738, published.version)


@pytest.mark.queued_tasks
def test_a_later_publication_is_never_undone_by_an_older_run(
    north_clinic: Clinic, alice: User, editor: User, publisher: User
) -> None:
    _patients(north_clinic, alice, 2)
    _publish_unchanged(editor, publisher)
    newer = _publish_unchanged(editor, publisher)
    run_ready_tasks()  # the first run's tasks run after the second publication committed
    assert _on_version(newer.label) == 2


@pytest.mark.queued_tasks
def test_the_reaper_requeues_a_dead_workers_task_and_the_run_completes(
    settings: Any, north_clinic: Clinic, alice: User, editor: User, publisher: User
) -> None:
    settings.ALPCARE_TASK_STALE_SECONDS = 60
    _patients(north_clinic, alice, 2)
    published = _publish_unchanged(editor, publisher)
    row = DBTaskResult.objects.get(task_path="pathways.tasks.reassess_chunk")
    row.claim("worker-that-was-killed")  # claimed, then the process died (kill -9)
    now = timezone.now()

    assert tasks.tasks_reap(now=now).requeued == []  # started just now: alive
    health = tasks.queue_health(now=now + timedelta(seconds=61))
    assert (health.running, health.stale_running, health.healthy) == (1, 1, False)
    TaskHeartbeat.objects.create(task_id=str(row.id), beat_at=now + timedelta(seconds=50))
    assert tasks.tasks_reap(now=now + timedelta(seconds=61)).requeued == []  # it beat lately

    outcome = tasks.tasks_reap(now=now + timedelta(seconds=111))
    assert outcome.requeued == [str(row.id)]
    row.refresh_from_db()
    assert row.status == TaskResultStatus.READY
    assert run_ready_tasks() == 1
    assert _on_version(published.label) == 2
    assert ReassessmentRun.objects.get().finished_at is not None


@pytest.mark.queued_tasks
def test_a_task_that_kills_its_worker_every_time_is_failed_not_retried_forever(
    settings: Any, north_clinic: Clinic, alice: User, editor: User, publisher: User
) -> None:
    settings.ALPCARE_TASK_MAX_ATTEMPTS = 2
    _patients(north_clinic, alice, 1)
    _publish_unchanged(editor, publisher)
    row = DBTaskResult.objects.get(task_path="pathways.tasks.reassess_chunk")
    later = timezone.now() + timedelta(seconds=settings.ALPCARE_TASK_STALE_SECONDS + 1)
    row.claim("first")
    assert tasks.tasks_reap(now=later).requeued == [str(row.id)]
    row.refresh_from_db()
    row.claim("second")
    assert tasks.tasks_reap(now=later).failed == [str(row.id)]
    row.refresh_from_db()
    assert row.status == TaskResultStatus.FAILED
    assert row.exception_class_path == "pathways.tasks.WorkerLost"
    progress = tasks.run_progress(ReassessmentRun.objects.get())
    assert progress.lost_chunks == 1 and progress.retryable
    assert progress.status == "stalled: 1 chunk(s) failed"


@pytest.mark.queued_tasks
def test_a_chunk_stopped_by_its_workers_shutdown_is_queued_again_and_the_run_completes(
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
    north_clinic: Clinic,
    alice: User,
    editor: User,
    publisher: User,
) -> None:
    """db_worker stopped twice (SIGTERM, then again) exits inside the task: SystemExit marked
    the chunk's task failed, and the run stalled until someone retried it. Found by an audit."""
    _patients(north_clinic, alice, 3)
    published = _publish_unchanged(editor, publisher)
    real = services.patient_reassess
    calls: list[int] = []

    def stopped_after_one(*, patient_id: int, run_id: int | None = None) -> bool:
        calls.append(patient_id)
        if len(calls) == 2:
            raise SystemExit(1)  # db_worker's shutdown: "terminating current task"
        return real(patient_id=patient_id, run_id=run_id)

    monkeypatch.setattr(services, "patient_reassess", stopped_after_one)
    row = DBTaskResult.objects.get(task_path="pathways.tasks.reassess_chunk")
    run_task_now(row)
    row.refresh_from_db()
    assert row.status == TaskResultStatus.FAILED
    monkeypatch.setattr(services, "patient_reassess", real)

    assert tasks.tasks_reap().requeued == [str(row.id)]  # the scheduler's next pass
    run_ready_tasks()
    run = ReassessmentRun.objects.get()
    assert run.finished_at is not None
    assert _on_version(published.label) == 3


def test_the_scheduler_starts_the_daily_run_once_a_day_at_its_time(
    settings: Any, north_clinic: Clinic, alice: User
) -> None:
    settings.ALPCARE_DAILY_REASSESS_AT = "02:00"
    _patients(north_clinic, alice, 2)
    AssessmentSnapshot.objects.all().delete()
    today = timezone.localdate()
    tz = timezone.get_current_timezone()
    early = timezone.make_aware(datetime(today.year, today.month, today.day, 1, 59), tz)
    assert tasks.scheduler_tick(now=early) == []
    assert not ReassessmentRun.objects.exists()

    due = early + timedelta(minutes=1)
    said = tasks.scheduler_tick(now=due)
    run = ReassessmentRun.objects.get()
    assert said == [f"enqueued the daily re-assessment (run {run.pk})"]
    assert (run.reason, run.daily_for) == ("daily", today)
    assert AssessmentSnapshot.objects.count() == 2
    assert tasks.scheduler_tick(now=due + timedelta(hours=3)) == []  # once a day
    assert ReassessmentRun.objects.count() == 1


def test_by_default_the_daily_run_starts_at_midnight_so_the_worklist_agrees_with_the_page(
    monkeypatch: pytest.MonkeyPatch, settings: Any, alice: User, north_clinic: Clinic
) -> None:
    """alp-repeat is due on the assessment date (spec §5): due today, every day, on the patient
    page. The worklist reads the row stored at the last assessment, so until the daily run
    re-dates it the patient reads "1 day overdue" there. Run at 02:00, that was two hours of
    every night; by default the scheduler's first pass after local midnight starts it."""
    settings.TIME_ZONE = "Pacific/Auckland"
    now = datetime(2027, 2, 9, 21, 0, tzinfo=UTC)  # 2027-02-10 10:00 local
    monkeypatch.setattr(timezone, "now", lambda: now)
    document = paget_on_alendronate_document()
    document["as_of"] = "2027-02-10"
    document["labs"] = [
        {"test": "alp", "value": 250, "unit": "U/L", "collected_at": "2026-11-01T08:00"}
    ]
    document["clinical"] = {"diagnoses": [], "therapies": []}
    patient = stored_patient(north_clinic, alice, document, mrn="STALE")
    assert FollowUp.objects.get(patient=patient, code="alp-repeat").due == date(2027, 2, 10)

    now = datetime(2027, 2, 10, 11, 0, 30, tzinfo=UTC)  # 2027-02-11 00:00:30 local
    assert tasks.scheduler_tick(now=now) == [
        f"enqueued the daily re-assessment (run {ReassessmentRun.objects.get().pk})"
    ]
    client = Client()
    client.force_login(alice)
    html = client.get("/").content.decode()
    assert 'data-status="due_soon" data-mrn="STALE"' in html, html
    assert 'data-count="overdue">0<' in html and "day overdue" not in html
    assert FollowUp.objects.get(patient=patient, code="alp-repeat").due == date(2027, 2, 11)


def test_the_scheduler_deletes_expired_sessions_and_keeps_live_ones(alice: User, bob: User) -> None:
    """Every login leaves a session row, kept until clearsessions runs: the scheduler's pass
    deletes the expired ones (past their 12-hour limit), so they do not pile up."""
    for user in (alice, bob):
        Client().force_login(user)
    expired, live = Session.objects.order_by("pk")
    Session.objects.filter(pk=expired.pk).update(expire_date=timezone.now() - timedelta(seconds=1))

    call_command("scheduler", "--once", stdout=StringIO())

    assert list(Session.objects.values_list("pk", flat=True)) == [live.pk]


def test_the_reassess_command_enqueues_a_run_and_can_wait_for_it(
    north_clinic: Clinic, alice: User
) -> None:
    patient = stored_patient(north_clinic, alice)
    AssessmentSnapshot.objects.filter(patient=patient).delete()
    out = StringIO()
    call_command("reassess", "--wait", stdout=out)
    run = ReassessmentRun.objects.get()
    assert f"Enqueued re-assessment run {run.pk}: 1 patients in 1 task(s)." in out.getvalue()
    assert "Re-assessed 1 patients, 0 failed (finished)." in out.getvalue()
    assert AssessmentSnapshot.objects.get(patient=patient).rule_set_version


@pytest.mark.queued_tasks
def test_queue_health_is_public_counts_only(
    client: Any, settings: Any, north_clinic: Clinic, alice: User
) -> None:
    settings.ALPCARE_QUEUE_MAX_WAIT_SECONDS = 600
    stored_patient(north_clinic, alice, mrn="SECRET-MRN", name="Secret Name")
    response = client.get("/healthz/queue")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "ready": 0,
        "oldest_ready_seconds": None,
        "running": 0,
        "stale_running": 0,
        "failed_last_day": 0,
        "stalled_runs": 0,
    }
    tasks.reassessment_start(reason=ReassessmentRun.Reason.MANUAL)
    DBTaskResult.objects.update(enqueued_at=timezone.now() - timedelta(seconds=601))
    response = client.get("/healthz/queue")
    assert response.status_code == 503  # nobody runs the queue: page someone
    body = response.content.decode()
    assert response.json()["ready"] == 1 and response.json()["status"] == "degraded"
    assert "SECRET" not in body and "Secret" not in body
    assert all(isinstance(value, int | str | None) for value in response.json().values())
    assert client.post("/healthz/queue").status_code == 405


@pytest.mark.queued_tasks
def test_queue_health_is_degraded_while_a_stalled_run_waits_for_its_retry(
    client: Any, settings: Any, north_clinic: Clinic, alice: User, editor: User, publisher: User
) -> None:
    """A run whose chunk task failed (its worker lost too often) left patients on the old
    assessment while /healthz/queue said "ok". Found by an audit."""
    settings.ALPCARE_TASK_MAX_ATTEMPTS = 1
    _patients(north_clinic, alice, 1)
    _publish_unchanged(editor, publisher)
    run = ReassessmentRun.objects.get()
    row = DBTaskResult.objects.get(task_path="pathways.tasks.reassess_chunk")
    row.claim("killed")
    later = timezone.now() + timedelta(seconds=settings.ALPCARE_TASK_STALE_SECONDS + 1)
    assert tasks.tasks_reap(now=later).failed == [str(row.id)]
    response = client.get("/healthz/queue")
    assert (response.status_code, response.json()["stalled_runs"]) == (503, 1)

    tasks.reassessment_retry(run=run, user=publisher)
    run_ready_tasks()
    response = client.get("/healthz/queue")
    assert response.status_code == 200 and response.json()["stalled_runs"] == 0


def test_the_scheduler_command_does_one_pass_for_cron(settings: Any) -> None:
    settings.ALPCARE_DAILY_REASSESS_AT = "00:00"
    out = StringIO()
    call_command("scheduler", "--once", stdout=out)
    run = ReassessmentRun.objects.get()
    assert out.getvalue() == f"enqueued the daily re-assessment (run {run.pk})\n"
    out = StringIO()
    call_command("scheduler", "--once", stdout=out)
    assert out.getvalue() == ""


def test_the_scheduler_goes_on_after_a_pass_fails(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """One database error in a pass ended `manage.py scheduler` (and, under honcho, the web
    server and the worker with it): no daily run, no re-queuing of dead workers' tasks. Found by
    an audit."""
    from django.db import OperationalError

    class Stopped(BaseException):
        """Ends the test's loop; not an Exception, so the scheduler does not catch it."""

    passes: list[int] = []

    def tick() -> list[str]:
        passes.append(1)
        if len(passes) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        raise Stopped

    monkeypatch.setattr(tasks, "scheduler_tick", tick)
    monkeypatch.setattr("time.sleep", lambda seconds: None)
    with pytest.raises(Stopped):
        call_command("scheduler", "--interval", "0")
    assert len(passes) == 2  # it went on to its next pass
    assert "scheduler pass failed" in caplog.text


def test_make_run_starts_the_web_server_a_worker_and_the_scheduler() -> None:
    root = Path(__file__).resolve().parent.parent
    processes = dict(
        line.split(":", 1)
        for line in (root / "Procfile").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert set(processes) == {"web", "worker", "scheduler"}
    assert "manage.py runserver" in processes["web"]
    assert "manage.py db_worker" in processes["worker"]
    assert "manage.py scheduler" in processes["scheduler"]
    makefile = (root / "Makefile").read_text()
    run_target = makefile[makefile.index("\nrun:") : makefile.index("\ntest:")]
    assert "honcho start -f Procfile" in run_target and "seed_demo" in run_target


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="SQLite has no row locks (it serialises writers)"
)
def test_each_patient_is_reassessed_under_a_row_lock(north_clinic: Clinic, alice: User) -> None:
    patient = stored_patient(north_clinic, alice)
    with CaptureQueriesContext(connection) as queries:
        assert services.patient_reassess(patient_id=patient.pk)
    statements = [query["sql"] for query in queries.captured_queries]
    locks = [sql for sql in statements if '"pathways_patient"' in sql and "FOR UPDATE" in sql]
    assert len(locks) == 1
    assert statements.index(locks[0]) < min(
        i for i, sql in enumerate(statements) if '"pathways_labresult"' in sql
    )  # the results are read after the lock is held


def test_the_runs_admin_page_says_how_many_failures_it_does_not_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The run's page listed the first 200 failures as if they were all."""
    from types import SimpleNamespace

    from django.contrib import admin as django_admin

    from pathways.rules_admin import ReassessmentRunAdmin

    run = ReassessmentRun()
    failures = [{"patient": pk, "error": "RuleEvaluationError: x"} for pk in range(205)]
    monkeypatch.setattr(tasks, "run_progress", lambda run: SimpleNamespace(failures=failures))
    shown = ReassessmentRunAdmin(ReassessmentRun, django_admin.site).failures(run).splitlines()
    assert len(shown) == 201 and shown[0] == "0: RuleEvaluationError: x"
    assert shown[-1] == "and 5 more"


@pytest.mark.parametrize("interval", ["-1", "nan"])
def test_the_scheduler_refuses_a_bad_interval_before_its_first_pass(
    settings: Any, monkeypatch: pytest.MonkeyPatch, interval: str
) -> None:
    """--interval -1: a full pass ran (the daily run enqueued), then time.sleep(-1) raised
    ValueError, a traceback; under honcho or systemd the clock died after one pass. Found by an
    audit."""
    from django.core.management import CommandError

    from pathways.management.commands import scheduler

    settings.ALPCARE_DAILY_REASSESS_AT = "00:00"

    class Stopped(BaseException):
        """Ends a loop the command should never have entered; not caught by the scheduler."""

    real_sleep = scheduler.time.sleep

    def sleep(seconds: float) -> None:
        real_sleep(seconds)  # raises ValueError for -1 and nan, as in production
        raise Stopped

    monkeypatch.setattr(scheduler.time, "sleep", sleep)
    with pytest.raises(CommandError, match=f"--interval: seconds from 0, not {interval}"):
        call_command("scheduler", "--interval", interval, stdout=StringIO())
    assert not ReassessmentRun.objects.exists()  # nothing done with a refused option


@pytest.mark.queued_tasks
@pytest.mark.parametrize("timeout", ["nan", "-5"])
def test_the_reassess_command_refuses_a_bad_timeout_before_it_enqueues(
    monkeypatch: pytest.MonkeyPatch, timeout: str
) -> None:
    """--timeout nan: `monotonic() > nan` is never true, so --wait waited for ever; --timeout -5
    enqueued a run, then said "not finished after -5 s". Neither named --timeout as wrong. Found
    by an audit."""
    from django.core.management import CommandError

    from pathways.management.commands import reassess

    class Stopped(BaseException):
        """Ends a wait the command should never have begun; not caught by the command."""

    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) > 3:
            raise Stopped("reassess --wait is still waiting")

    monkeypatch.setattr(reassess.time, "sleep", sleep)
    with pytest.raises(CommandError, match=f"--timeout: seconds from 0, not {timeout}"):
        call_command("reassess", "--wait", "--timeout", timeout, stdout=StringIO())
    assert not ReassessmentRun.objects.exists()
