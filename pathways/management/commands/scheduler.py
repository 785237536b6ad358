from __future__ import annotations

import logging
import math
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections

from pathways import tasks

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "The background work's clock: re-queues the tasks of workers that died (no heartbeat) "
        "and enqueues the daily re-assessment at ALPCARE_DAILY_REASSESS_AT. Run one (or from cron "
        "with --once every minute); several are safe."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="one pass, then exit (for cron)")
        parser.add_argument(
            "--interval", type=float, default=30, help="seconds between passes (default 30)"
        )

    def handle(self, *args: Any, once: bool, interval: float, **options: Any) -> None:
        # Before the first pass: time.sleep() refuses it only after a whole pass, then the
        # clock stops.
        if not (math.isfinite(interval) and interval >= 0):
            raise CommandError(f"--interval: seconds from 0, not {interval:g}")
        while True:
            if once:  # cron reports a failed pass
                for line in tasks.scheduler_tick():
                    self.stdout.write(line)
                return
            try:
                for line in tasks.scheduler_tick():
                    self.stdout.write(line)
            except Exception:
                # A database restarting, a network blip: the clock must not stop (the daily
                # run and the re-queuing of dead workers' tasks hang on it). Said, and tried
                # again at the next pass.
                logger.exception("scheduler pass failed; trying again in %g s", interval)
            time.sleep(interval)
            close_old_connections()  # as after a request: drop a broken or expired connection
