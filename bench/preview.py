"""Impact-preview benchmark: a draft against the version in force over 1,000 and 10,000 patients.

    DJANGO_DEBUG=1 .venv/bin/python bench/preview.py [--sizes 1000 10000] [--results 20]

Uses its own throwaway SQLite database (migrated here), seeds synthetic patients with ~20 results
each (bulk_create: acceptable in a benchmark only, it skips history), raises the extreme-ALP
threshold in a draft and times impact.ruleset_preview(). Target: 10,000 patients in < 30 s on
one core.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_DB_DIR = tempfile.TemporaryDirectory(prefix="alpcare-bench-")
os.environ["DATABASE_URL"] = f"sqlite:///{_DB_DIR.name}/preview.sqlite3"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alpcare.settings")

import django  # noqa: E402

django.setup()

from bulk import bulk_seed  # noqa: E402
from django.contrib.auth.models import Permission, User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402
from django_tasks_db.management.commands.db_worker import Worker  # noqa: E402

from pathways import impact, publishing, tasks  # noqa: E402
from pathways.models import (  # noqa: E402
    Clinic,
    LabResult,
    Membership,
    Parameter,
    Patient,
    ReassessmentRun,
    RuleExample,
)


def seed(*, clinic: Clinic, count: int, start: int, results: int, today: date) -> None:
    for _batch in bulk_seed(clinic=clinic, count=count, start=start, results=results, today=today):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--results", type=int, default=20)
    parser.add_argument(
        "--publish",
        action="store_true",
        help="also time publishing the draft and the re-assessment of every patient it queues "
        "(run here by the worker's own loop, as `manage.py db_worker --batch` would)",
    )
    args = parser.parse_args()

    if hasattr(os, "sched_setaffinity"):  # the target is for one core
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    call_command("migrate", verbosity=0)
    today = timezone.localdate()
    clinic = Clinic.objects.create(name="Bench clinic", slug="bench")
    editor = User.objects.create_user("bench-editor", is_staff=True)
    # A member of the clinic: the preview's histogram and nearest patients cover their patients.
    Membership.objects.create(user=editor, clinic=clinic, role=Membership.Role.RULE_EDITOR)
    draft = publishing.ruleset_start_draft(user=editor)
    Parameter.objects.filter(rule_set=draft, name="extreme_alp").update(value=1200)

    seeded = 0
    print(f"impact preview, draft extreme_alp = 1200 U/L; {args.results} results per patient")
    for size in sorted(args.sizes):
        started = time.perf_counter()
        seed(clinic=clinic, count=size - seeded, start=seeded, results=args.results, today=today)
        seeded = size
        labs = LabResult.objects.count()
        print(
            f"  seeded {size:>6} patients, {labs} results in {time.perf_counter() - started:.1f} s"
        )
        with CaptureQueriesContext(connection) as queries:
            started, cpu_started = time.perf_counter(), time.process_time()
            preview = impact.ruleset_preview(draft=draft, user=editor)
            seconds = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
        extreme = next(row for row in preview.rules if row.code == "extreme-alp")
        print(
            f"  preview {preview.patients:>6} patients: {seconds:6.2f} s "
            f"({seconds / preview.patients * 1000:.2f} ms/patient; CPU "
            f"{cpu / preview.patients * 1000:.2f} ms/patient, the figure a busy machine "
            "does not inflate; "
            f"{len(queries.captured_queries)} queries); "
            f"{len(preview.changed)} changed, extreme-alp {extreme.before} -> {extreme.after}, "
            f"{len(preview.errors)} errors"
        )
        for parameter in preview.parameters:
            print(
                f"    {parameter.label} ({parameter.fact}): {parameter.patients} with a value, "
                f"{parameter.above_old} above {parameter.old:g}, {parameter.above_new} above "
                f"{parameter.new:g}; nearest {parameter.nearest[:3]}"
            )
    if args.publish:
        time_publish(draft, editor)


def time_publish(draft: Any, editor: Any) -> None:
    publisher = User.objects.create_user("bench-publisher", is_staff=True)
    publisher.user_permissions.add(Permission.objects.get(codename="publish_ruleset"))
    publisher = User.objects.get(pk=publisher.pk)
    for example in RuleExample.objects.filter(rule_set=draft, rule__code="extreme-alp"):
        for lab in example.case.get("labs", []):
            if lab["test"] == "alp" and lab["unit"] == "ukat/L":
                lab["value"] = 20.01
            elif lab["test"] == "alp" and lab["value"] >= 1000:
                lab["value"] += 200
        example.save()
    publishing.ruleset_submit(rule_set=draft, user=editor, rationale="bench")
    started = time.perf_counter()
    published = publishing.ruleset_publish(rule_set=draft, user=publisher, note="bench")
    seconds = time.perf_counter() - started
    patients = Patient.objects.count()
    print(f"  publish {published.version} (queues the re-assessment): {seconds:6.2f} s")
    run = ReassessmentRun.objects.get(publication__rule_set=published)
    queries = 0

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        nonlocal queries
        queries += 1
        return execute(sql, params, many, context)

    started = time.perf_counter()
    with connection.execute_wrapper(count):
        _worker().run()
    seconds = time.perf_counter() - started
    progress = tasks.run_progress(run)
    print(
        f"  re-assess {patients} patients in {progress.chunks} tasks, one transaction each: "
        f"{seconds:6.2f} s ({seconds / patients * 1000:.2f} ms/patient, "
        f"{queries / patients:.1f} queries/patient), "
        f"{progress.done} done, {progress.failed} failed"
    )


def _worker() -> Worker:
    return Worker(
        queue_names=["*"],
        interval=0,
        batch=True,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id="bench",
        excluded_queue_names=[],
    )


if __name__ == "__main__":
    main()
