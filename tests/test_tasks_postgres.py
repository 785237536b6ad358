"""Re-assessment under load and after a crash, with real worker processes (issue 9, findings 3
and 4): the race and crash tests. Slow, so they run once, on PostgreSQL (CI's second pass)."""

from __future__ import annotations

import random
import signal
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django_tasks_db.models import DBTaskResult

from pathways import engine, publishing, services, tasks
from pathways.cases import patient_to_case, patient_to_document
from pathways.models import (
    AssessmentSnapshot,
    Clinic,
    FollowUp,
    Patient,
    ReassessmentRun,
    RuleSet,
)
from pathways.rules import current_rule_set, install_catalogue
from tests.conftest import rule_editor
from tests.factories import (
    paget_on_alendronate_document,
    publish_reviewed,
    stored_patient,
    worklist_counted,
    worklist_tallied,
)
from tests.workers import start, start_worker, stop, wait_for

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="race and crash tests start worker processes and hammer the database: they run "
        "once, on PostgreSQL (CI's second pass), to keep CI short; SQLite serialises writers",
    ),
    pytest.mark.django_db(transaction=True),
    pytest.mark.queued_tasks,  # worker processes run them, not the test
]

PATIENTS = 120
WRITERS = 6


@pytest.fixture
def team(db: Any) -> dict[str, Any]:
    # transaction=True flushes every table after each test, the migration's rule set too.
    if not RuleSet.objects.filter(is_current=True).exists():
        install_catalogue(version="2026-11-29.1")
    clinic = Clinic.objects.create(name="Race Clinic", slug="race")
    clinician = User.objects.create_user("carol", password="correct horse battery staple")
    clinic.memberships.create(user=clinician, role="clinician")
    patients = [
        stored_patient(
            clinic, clinician, paget_on_alendronate_document(), mrn=f"M{n}", name=f"P{n}"
        )
        for n in range(PATIENTS)
    ]
    return {
        "clinic": clinic,
        "clinician": clinician,
        "patients": [p.pk for p in patients],
        "editor": rule_editor("rui"),
        "publisher": rule_editor("pat", publisher=True),
    }


class Writers:
    """Clinicians saving cases and adding results as fast as they can, each on its own
    connection, until stopped."""

    def __init__(self, team: dict[str, Any]) -> None:
        self.team = team
        self.stopping = threading.Event()
        self.saves = 0
        self.results = 0
        self.conflicts = 0
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._run, args=(n,), name=f"writer-{n}")
            for n in range(WRITERS)
        ]

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def _run(self, number: int) -> None:
        rng = random.Random(number)
        step = 0
        try:
            while not self.stopping.is_set():
                step += 1
                patient = Patient.objects.get(pk=rng.choice(self.team["patients"]))
                try:
                    if step % 2:
                        self._save_case(patient, rng)
                        with self._lock:
                            self.saves += 1
                    else:
                        self._add_result(patient, number, step, rng)
                        with self._lock:
                            self.results += 1
                except services.StaleVersion:
                    # Another clinician saved first: the screen says so and nothing is written.
                    with self._lock:
                        self.conflicts += 1
        except Exception as error:  # reported by the test
            self.errors.append(f"{type(error).__name__}: {error}")
        finally:
            connection.close()

    def _save_case(self, patient: Patient, rng: random.Random) -> None:
        document = patient_to_document(patient)
        document["labs"][-1]["value"] = rng.choice([128, 260, 412, 738, 1100])
        services.patient_save_case(
            user=self.team["clinician"],
            case=engine.parse_case(document),
            mrn=patient.mrn,
            name=patient.name,
            patient=patient,
            expected_version=patient.version,
        )

    def _add_result(self, patient: Patient, number: int, step: int, rng: random.Random) -> None:
        at = datetime(2026, 7, 1) + timedelta(minutes=number * 10_000 + step)
        document = paget_on_alendronate_document()
        document["labs"] = [
            {
                "test": "alp",
                "value": rng.choice([128, 412, 738]),
                "unit": "U/L",
                "collected_at": at.isoformat(timespec="minutes"),
            }
        ]
        lab = engine.parse_case(document).labs[0]
        services.patient_record_result(
            patient=patient, user=self.team["clinician"], lab=lab, expected_version=patient.version
        )


def _assert_every_patient_is_freshly_assessed(version: str) -> None:
    rule_set = current_rule_set()
    assert rule_set.version == version
    for patient in Patient.objects.all():
        fresh = engine.assess(patient_to_case(patient), rule_set)
        expected = services.snapshot_fields(fresh)
        snapshot = AssessmentSnapshot.objects.get(patient=patient)
        assert snapshot.rule_set_version == version, patient.pk
        for name in ("alp_latest", "top_code", "recommendation_codes", "pathway"):
            assert getattr(snapshot, name) == expected[name], (patient.pk, name)
        stored = set(
            FollowUp.objects.filter(patient=patient)
            .exclude(completed_at__isnull=False, completed_by_result=False)
            .values_list("code", "due", "rule_set_version")
        )
        assert stored == {(f.code, f.due, version) for f in fresh.follow_ups}, patient.pk
    # The worklist's tally, moved by increments from concurrent transactions, equals a recount.
    assert worklist_tallied() == worklist_counted()


def _finished(run: ReassessmentRun) -> bool:
    run.refresh_from_db()
    return run.finished_at is not None or tasks.run_progress(run).lost_chunks > 0


def test_race_publish_and_daily_run_while_clinicians_save(
    team: dict[str, Any], settings: Any, tmp_path: Path, capsys: Any
) -> None:
    settings.ALPCARE_REASSESS_CHUNK_SIZE = 20
    workers = [start_worker(f"race-{n}", tmp_path / f"worker-{n}.log") for n in range(2)]
    try:
        with Writers(team) as writers:
            time.sleep(1)  # the writers are busy
            draft = publishing.ruleset_start_draft(user=team["editor"])
            published = publish_reviewed(
                rule_set=draft, user=team["publisher"], note="during the rush"
            )
            run = ReassessmentRun.objects.get(publication__rule_set=published)
            publish_seconds = wait_for(lambda: _finished(run), timeout=300, what="the run")
            daily = tasks.reassessment_start(reason=ReassessmentRun.Reason.DAILY)
            daily_seconds = wait_for(lambda: _finished(daily), timeout=300, what="the daily")
            time.sleep(0.5)
        assert writers.errors == []
        assert writers.saves > 20 and writers.results > 20
    finally:
        for worker in workers:
            stop(worker)

    for finished in (run, daily):
        progress = tasks.run_progress(finished)
        assert finished.finished_at is not None
        assert (progress.failed, progress.lost_chunks) == (0, 0), progress.failures
        assert progress.done == PATIENTS
    assert not DBTaskResult.objects.failed().exists()
    _assert_every_patient_is_freshly_assessed(published.label)
    with capsys.disabled():
        print(
            f"\n[race] {PATIENTS} patients, {WRITERS} writers: {writers.saves} case saves and "
            f"{writers.results} results added meanwhile ({writers.conflicts} stale saves refused); "
            f"publication run {publish_seconds:.1f} s, "
            f"daily run {daily_seconds:.1f} s; 0 failed, every patient on {published.version} "
            "with follow-ups equal to a fresh assessment"
        )


def test_crash_a_worker_killed_after_publishing_is_replaced_and_the_run_completes(
    team: dict[str, Any], settings: Any, tmp_path: Path, capsys: Any
) -> None:
    settings.ALPCARE_REASSESS_CHUNK_SIZE = 20
    fast = {"ALPCARE_TASK_STALE_SECONDS": "3", "ALPCARE_TASK_HEARTBEAT_SECONDS": "1"}
    draft = publishing.ruleset_start_draft(user=team["editor"])
    published = publish_reviewed(rule_set=draft, user=team["publisher"], note="crash")
    run = ReassessmentRun.objects.get(publication__rule_set=published)

    # Killed in the middle: some chunks done, one running. A chunk can finish between seeing
    # it run and the kill; then nothing is left running, and another worker is killed the same
    # way (the chunks it had not started are still queued).
    for attempt in range(5):
        doomed = start_worker(f"doomed-{attempt}", tmp_path / f"doomed-{attempt}.log", **fast)
        wait_for(
            lambda: (
                run.chunks.filter(finished_at__isnull=False).exists()
                and DBTaskResult.objects.running().exists()
            ),
            timeout=60,
            what="a running task after a finished one",
        )
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
        killed_at = time.monotonic()
        left_running = DBTaskResult.objects.running().count()
        if left_running:
            break
    done_at_kill = tasks.run_progress(run).done
    assert left_running == 1 and run.finished_at is None  # stuck without a reaper

    replacement = start_worker("replacement", tmp_path / "replacement.log", **fast)
    scheduler = start("scheduler", "--interval", "1", log=tmp_path / "scheduler.log", **fast)
    try:
        wait_for(lambda: _finished(run), timeout=300, what="the run after the crash")
    finally:
        stop(replacement)
        stop(scheduler)
    recovered = time.monotonic() - killed_at
    progress = tasks.run_progress(run)
    assert run.finished_at is not None
    assert (progress.done, progress.failed) == (PATIENTS, 0)
    # None of the run's tasks is left marked running. (The scheduler may have started the daily
    # run meanwhile, when its time has passed today: its tasks are not this run's.)
    running = {str(pk) for pk in DBTaskResult.objects.running().values_list("id", flat=True)}
    assert not running & set(run.chunks.values_list("task_id", flat=True))
    assert "re-queued 1 task(s) of a lost worker" in (tmp_path / "scheduler.log").read_text()
    assert RuleSet.objects.get(is_current=True) == published
    _assert_every_patient_is_freshly_assessed(published.label)
    with capsys.disabled():
        print(
            f"\n[crash] worker killed (kill -9) with {done_at_kill} of {PATIENTS} patients "
            f"recorded done and {left_running} task running; replacement worker + scheduler "
            f"(stale after 3 s) finished all {progress.done} patients, 0 failed, "
            f"{recovered:.1f} s after the kill"
        )
