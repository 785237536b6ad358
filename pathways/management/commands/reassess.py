from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from pathways.services import patients_reassess


class Command(BaseCommand):
    help = (
        "Re-assess every patient against the rule set in force: refreshes follow-ups and the "
        "dashboard's snapshots. Run daily (results depend on today's date)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        count = patients_reassess()
        self.stdout.write(self.style.SUCCESS(f"Re-assessed {count} patients."))
