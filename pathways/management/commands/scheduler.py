from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections

from pathways import tasks


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
        while True:
            for line in tasks.scheduler_tick():
                self.stdout.write(line)
            if once:
                return
            time.sleep(interval)
            close_old_connections()  # as after a request: drop a broken or expired connection
