from __future__ import annotations

from pathlib import Path
from typing import Any

import hl7
from django.core.management.base import BaseCommand, CommandError, CommandParser

from pathways import feed
from pathways.interop import hl7v2
from pathways.models import Clinic


def split_messages(text: str) -> list[str]:
    """The messages of a file: MLLP-framed or not, any line endings, FHS/BHS batches."""
    return list(hl7.split_file(hl7v2.normalise(text.replace("\x1c", "\r").replace("\x0b", ""))))


class Command(BaseCommand):
    help = (
        "Import a file of HL7 v2 ORU^R01 messages through the same path as the MLLP listener: "
        "each message is stored, applied and acknowledged (the ACK codes are printed)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--clinic", help="clinic slug: overrides the MSH-4 sending facility mapping"
        )

    def handle(self, *args: Any, file: Path, clinic: str | None, **options: Any) -> None:
        target = None
        if clinic is not None:
            target = Clinic.objects.filter(slug=clinic).first()
            if target is None:
                raise CommandError(f"--clinic: no clinic with slug {clinic!r}")
        try:
            text = file.read_text(encoding="utf-8", errors="replace")
        except OSError as error:
            raise CommandError(f"FILE: cannot read {file}: {error}") from error
        messages = split_messages(text)
        if not messages:
            raise CommandError(f"FILE: {file} holds no HL7 message (no MSH segment)")
        failed = 0
        for raw in messages:
            outcome = feed.receive(raw, via="file", clinic=target)
            control_id = outcome.message.control_id if outcome.message else ""
            self.stdout.write(f"{control_id or '(no MSH-10)'}: {outcome.code} {outcome.text}")
            failed += outcome.code != "AA"
        self.stdout.write(f"{len(messages)} message(s), {failed} not accepted")
        if failed:
            raise CommandError(f"{failed} message(s) were not accepted (see above)")
