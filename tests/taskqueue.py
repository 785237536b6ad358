"""Background tasks in tests go through django-tasks-db's own worker code (Worker.run_task),
either at once when enqueued (the default, see conftest) or when a test says so."""

from __future__ import annotations

from typing import Any

from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult

WORKER_ID = "pytest"


def _worker() -> Worker:
    return Worker(
        queue_names=["*"],
        interval=0,
        batch=True,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id=WORKER_ID,
        excluded_queue_names=[],
    )


def run_task_now(row: DBTaskResult) -> None:
    row.claim(WORKER_ID)
    _worker().run_task(row)


def run_ready_tasks() -> int:
    """Run every ready task, oldest first (tasks they enqueue too); how many ran."""
    count = 0
    while (row := DBTaskResult.objects.ready().first()) is not None:
        run_task_now(row)
        count += 1
    return count


def run_when_enqueued(sender: Any, task_result: Any, **kwargs: Any) -> None:
    run_task_now(task_result.db_result)
