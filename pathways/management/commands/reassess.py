from __future__ import annotations

import math
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pathways import tasks
from pathways.models import ReassessmentRun


class Command(BaseCommand):
    help = (
        "Re-assess every patient against the rule set in force (refreshes follow-ups and the "
        "dashboard's snapshots): enqueues a run of background tasks for `manage.py db_worker`. "
        "The scheduler (`manage.py scheduler`) starts one daily by itself."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--wait", action="store_true", help="wait until a worker has finished the run"
        )
        parser.add_argument(
            "--timeout", type=float, default=3600, help="seconds --wait waits (default 3600)"
        )

    def handle(self, *args: Any, wait: bool, timeout: float, **options: Any) -> None:
        if not (math.isfinite(timeout) and timeout >= 0):  # nan: --wait would wait for ever
            raise CommandError(f"--timeout: seconds from 0, not {timeout:g}")
        run = tasks.reassessment_start(reason=ReassessmentRun.Reason.MANUAL)
        progress = tasks.run_progress(run)
        self.stdout.write(
            f"Enqueued re-assessment run {run.pk}: {progress.total} patients "
            f"in {progress.chunks} task(s)."
        )
        if not wait:
            return
        deadline = time.monotonic() + timeout
        while True:
            run.refresh_from_db()
            progress = tasks.run_progress(run)
            if run.finished_at is not None or progress.lost_chunks:
                break
            if time.monotonic() > deadline:
                raise CommandError(
                    f"Run {run.pk} is not finished after {timeout:g} s: is a worker running?"
                )
            time.sleep(1)
        message = (
            f"Re-assessed {progress.done} patients, {progress.failed} failed ({progress.status})."
        )
        if progress.failed or progress.lost_chunks:
            raise CommandError(message)
        self.stdout.write(self.style.SUCCESS(message))
