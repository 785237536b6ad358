"""The background work's audit (pathways/tasks.py, pathways/firing.py): a reaper that kept a
re-queued task's first enqueue time, a stalled run forgotten once its task row was pruned, a
chunk stopped by a worker shutdown taken for a stalled (and retryable) run, a missed daily run
never caught up, and a publication's changes counted under another publication's run."""

from __future__ import annotations

import html
from datetime import datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from django_tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from pathways import publishing, services, tasks
from pathways.models import (
    Clinic,
    PublicationClinicImpact,
    ReassessmentRun,
    RuleSetPublication,
)
from tests.factories import paget_on_alendronate_document, publish_reviewed, stored_patient
from tests.taskqueue import run_ready_tasks, run_task_now
from tests.test_governance import paget_with_latest_alp
from tests.test_tuning_workflow import extreme_alp_examples_moved, extreme_alp_threshold_raised

pytestmark = pytest.mark.django_db


def _notice(client: Client) -> str:
    page = html.unescape(client.get("/").content.decode())
    assert 'id="publication-notice"' in page
    return page[page.index('id="publication-notice"') :].split("</section>", 1)[0]


# ---------------------------------------------------------------------------------------------
# The worklist notice of a publication whose changes another run applied first.


@pytest.mark.queued_tasks
def test_the_notice_counts_a_publications_changes_when_an_earlier_run_applied_them_first(
    north_clinic: Clinic, alice: User, editor: User, publisher: User
) -> None:
    """Two publications in quick succession, both runs queued: A's run re-assesses every
    patient under B (the version in force at each patient's turn), so B's own run changes
    nothing. publication_impact_store counted only B's own run's rows, and B's notice said "None
    of your patients' recommendations changed" although two of alice's patients lost
    extreme-alp. Found by an audit."""
    stored_patient(north_clinic, alice, paget_with_latest_alp(1100), mrn="N-1100")
    stored_patient(north_clinic, alice, paget_with_latest_alp(1150), mrn="N-1150")

    label_only = publishing.ruleset_start_draft(user=editor)
    publish_reviewed(rule_set=label_only, user=publisher, note="new label")
    raised = publishing.ruleset_start_draft(user=editor)
    extreme_alp_threshold_raised(raised, user=editor)
    extreme_alp_examples_moved(raised, user=editor)
    publishing.ruleset_submit(rule_set=raised, user=editor, rationale="Fewer false alarms")
    published = publishing.ruleset_publish(rule_set=raised, user=publisher, note="Approved")
    run_ready_tasks()  # a worker takes the queue in order: A's run first, then B's
    assert not ReassessmentRun.objects.filter(finished_at=None).exists()

    publication = RuleSetPublication.objects.get(rule_set=published)
    impact = PublicationClinicImpact.objects.get(publication=publication, clinic=north_clinic)
    assert impact.changes.get("extreme-alp") == {"gained": 0, "lost": 2}, impact.changes
    client = Client()
    client.force_login(alice)
    notice = _notice(client)
    assert "2 patient(s) lost it" in notice, notice
    assert "None of your patients' recommendations changed" not in notice


# ---------------------------------------------------------------------------------------------
# Queue health.


@pytest.mark.queued_tasks
def test_queue_health_stays_degraded_for_a_stalled_run_after_its_failed_task_row_is_pruned(
    settings: Any, client: Client, north_clinic: Clinic, alice: User
) -> None:
    """Pruning the failed chunk's task row (prune_db_task_results) left the run stalled
    (run_progress said so), but _stalled_runs looked only for FAILED rows: /healthz/queue went
    back to 200 "ok" while the patients waited on the old assessment. Found by an audit."""
    settings.ALPCARE_TASK_MAX_ATTEMPTS = 1
    stored_patient(north_clinic, alice, paget_on_alendronate_document(), mrn="P-1")
    run = tasks.reassessment_start(reason=ReassessmentRun.Reason.MANUAL)
    row = DBTaskResult.objects.get(task_path="pathways.tasks.reassess_chunk")
    row.claim("killed")
    silent = timedelta(seconds=settings.ALPCARE_TASK_STALE_SECONDS + 1)
    DBTaskResult.objects.filter(pk=row.pk).update(started_at=timezone.now() - silent)
    assert tasks.tasks_reap().failed == [str(row.id)]
    assert client.get("/healthz/queue").status_code == 503  # stalled: as README says

    call_command("prune_db_task_results", "--min-age-days", "0", stdout=StringIO())
    assert not DBTaskResult.objects.filter(id=row.id).exists()
    run.refresh_from_db()
    assert tasks.run_progress(run).status == "stalled: 1 chunk(s) failed"  # still stalled
    response = client.get("/healthz/queue")
    assert (response.status_code, response.json()["stalled_runs"]) == (503, 1), response.json()


@pytest.mark.queued_tasks
def test_a_task_requeued_by_the_reaper_does_not_count_as_waiting_since_it_was_first_enqueued(
    settings: Any, client: Client, north_clinic: Clinic, alice: User
) -> None:
    """A chunk enqueued 20 minutes ago ran for 15, lost its worker, and was re-queued a moment
    ago: tasks_reap kept its enqueued_at, so oldest_ready_seconds read ~1200 s and
    /healthz/queue answered 503 although workers were running. Found by an audit."""
    settings.ALPCARE_QUEUE_MAX_WAIT_SECONDS = 600
    stored_patient(north_clinic, alice, paget_on_alendronate_document(), mrn="P-1")
    tasks.reassessment_start(reason=ReassessmentRun.Reason.MANUAL)
    row = DBTaskResult.objects.get(task_path="pathways.tasks.reassess_chunk")
    now = timezone.now()
    DBTaskResult.objects.filter(pk=row.pk).update(enqueued_at=now - timedelta(minutes=20))
    row.refresh_from_db()
    row.claim("killed")
    DBTaskResult.objects.filter(pk=row.pk).update(started_at=now - timedelta(minutes=15))
    assert tasks.tasks_reap(now=now).requeued == [str(row.id)]
    health = tasks.queue_health(now=now + timedelta(seconds=5))
    assert health.ready == 1
    assert health.oldest_ready_seconds is not None and health.oldest_ready_seconds <= 60, health
    assert health.healthy


# ---------------------------------------------------------------------------------------------
# The daily run.


def test_a_daily_run_missed_while_the_scheduler_was_down_is_caught_up_at_its_next_pass(
    settings: Any, north_clinic: Clinic, alice: User
) -> None:
    """With ALPCARE_DAILY_REASSESS_AT = 23:30 and the scheduler down from 23:00 to 00:30,
    daily_due compared the time of day only ((0, 30) < (23, 30)): no daily run for a whole day.
    The missed run is now started at the next pass, once. Found by an audit."""
    settings.ALPCARE_DAILY_REASSESS_AT = "23:30"
    stored_patient(north_clinic, alice, paget_on_alendronate_document(), mrn="P-1")
    tz = timezone.get_current_timezone()
    day = timezone.localdate() - timedelta(days=3)
    before = timezone.make_aware(datetime(day.year, day.month, day.day, 23, 0), tz)
    assert tasks.scheduler_tick(now=before) == []  # not yet due
    # ... the scheduler is down at 23:30 and comes back at 00:30 ...
    back = timezone.make_aware(datetime(day.year, day.month, day.day, 0, 30), tz) + timedelta(
        days=1
    )
    tasks.scheduler_tick(now=back)
    assert ReassessmentRun.objects.filter(reason=ReassessmentRun.Reason.DAILY).count() == 1
    tasks.scheduler_tick(now=back + timedelta(minutes=1))  # once, not at every pass
    assert ReassessmentRun.objects.filter(reason=ReassessmentRun.Reason.DAILY).count() == 1


def test_the_daily_run_still_happens_once_when_due_in_the_same_day(
    settings: Any, north_clinic: Clinic, alice: User
) -> None:
    """Control: with the scheduler up at 23:30 the run starts once."""
    settings.ALPCARE_DAILY_REASSESS_AT = "23:30"
    stored_patient(north_clinic, alice, paget_on_alendronate_document(), mrn="P-1")
    tz = timezone.get_current_timezone()
    day = timezone.localdate() - timedelta(days=3)
    due = timezone.make_aware(datetime(day.year, day.month, day.day, 23, 30), tz)
    tasks.scheduler_tick(now=due)
    tasks.scheduler_tick(now=due + timedelta(minutes=10))
    assert ReassessmentRun.objects.filter(daily_for=day).count() == 1
    assert DBTaskResult.objects.filter(status=TaskResultStatus.SUCCESSFUL).exists()


# ---------------------------------------------------------------------------------------------
# A chunk stopped by its worker's shutdown: queued again by the scheduler, and retryable too.


@pytest.mark.queued_tasks
def test_a_chunk_stopped_by_a_worker_shutdown_is_not_queued_twice_by_a_retry_and_the_reaper(
    monkeypatch: pytest.MonkeyPatch, north_clinic: Clinic, alice: User, publisher: User
) -> None:
    """A chunk stopped by a worker's shutdown (SystemExit) reads FAILED until the scheduler's
    next pass re-queues it; meanwhile reassessment_retry accepted a retry, and the reaper then
    re-queued the original too: every patient of the chunk was re-assessed twice. Found by an
    audit."""
    for n in range(3):
        stored_patient(north_clinic, alice, paget_on_alendronate_document(), mrn=f"S-{n}")
    run = tasks.reassessment_start(reason=ReassessmentRun.Reason.MANUAL)
    real = services.patient_reassess
    calls: list[int] = []
    stopped: list[int] = []

    def stopped_at_the_second(*, patient_id: int, run_id: int | None = None) -> bool:
        calls.append(patient_id)
        if len(calls) == 2 and not stopped:
            stopped.append(patient_id)
            raise SystemExit(1)  # db_worker's second signal: "terminating current task"
        return real(patient_id=patient_id, run_id=run_id)

    monkeypatch.setattr(services, "patient_reassess", stopped_at_the_second)
    row = DBTaskResult.objects.get(task_path="pathways.tasks.reassess_chunk")
    run_task_now(row)
    row.refresh_from_db()
    assert row.status == TaskResultStatus.FAILED  # until the scheduler's next pass
    calls.clear()

    # The publisher clicks Retry before the scheduler's next pass: refused, the chunk will run.
    with pytest.raises(tasks.NothingToRetry):
        tasks.reassessment_retry(run=run, user=publisher)
    tasks.tasks_reap()  # the scheduler's next pass
    run_ready_tasks()
    assert sorted(calls) == sorted(set(calls)), f"re-assessed twice: {sorted(calls)}"
    assert len(calls) == 3


@pytest.mark.queued_tasks
def test_a_chunk_stopped_by_a_worker_shutdown_is_not_reported_as_a_stalled_run(
    monkeypatch: pytest.MonkeyPatch, client: Client, north_clinic: Clinic, alice: User
) -> None:
    """Until the scheduler's next pass re-queued a chunk stopped by a worker's shutdown,
    run_progress said "stalled: 1 chunk(s) failed" and /healthz/queue answered 503 with
    stalled_runs 1, although the run finishes by itself: every double SIGTERM of a worker paged
    someone. Found by an audit."""
    stored_patient(north_clinic, alice, paget_on_alendronate_document(), mrn="S-1")
    run = tasks.reassessment_start(reason=ReassessmentRun.Reason.MANUAL)

    def stopped(*, patient_id: int, run_id: int | None = None) -> bool:
        raise SystemExit(1)

    monkeypatch.setattr(services, "patient_reassess", stopped)
    row = DBTaskResult.objects.get(task_path="pathways.tasks.reassess_chunk")
    run_task_now(row)
    status = tasks.run_progress(run).status
    response = client.get("/healthz/queue")
    seen = (status.startswith("stalled"), response.status_code, response.json()["stalled_runs"])
    assert seen == (False, 200, 0), (status, response.json())
