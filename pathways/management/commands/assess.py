from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from pathways import engine
from pathways.assessment import assess_json


class Command(BaseCommand):
    help = "Assess a case document (spec §1) and print the result document (spec §6)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("case", help="Path to the case JSON file, or - for standard input.")

    def handle(self, *args: Any, **options: Any) -> None:
        source = options["case"]
        try:
            text = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
        except OSError as os_error:
            self.stderr.write(f"{source}: {os_error.strerror}")
            sys.exit(2)
        try:
            result = assess_json(text)
        except engine.CaseInvalid as invalid:
            for error in invalid.errors:
                self.stderr.write(
                    f"{error.field}: {error.message}" if error.field else error.message
                )
            sys.exit(2)
        self.stdout.write(engine.render_result_json(result), ending="")
