from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pathways import feed
from pathways.interop import hl7v2
from pathways.models import Clinic


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
        parser.add_argument("--encoding", default="utf-8", help="the file's encoding (utf-8)")

    def handle(
        self, *args: Any, file: Path, clinic: str | None, encoding: str, **options: Any
    ) -> None:
        target = None
        if clinic is not None:
            target = Clinic.objects.filter(slug=clinic).first()
            if target is None:
                raise CommandError(f"--clinic: no clinic with slug {clinic!r}")
        if (problem := hl7v2.encoding_problem(encoding)) is not None:
            raise CommandError(f"--encoding: {problem}")
        try:
            text = file.read_bytes().decode(encoding)
            # A file saved "with BOM": its byte order mark is not part of the first MSH.
            content = hl7v2.read_file(text.removeprefix("\ufeff"))
        except OSError as error:
            raise CommandError(f"FILE: cannot read {file}: {error}") from error
        except UnicodeDecodeError as error:  # never read with stand-in characters
            raise CommandError(
                f"FILE: byte {error.start} of {file} is not {encoding} (give --encoding)"
            ) from None
        if not content.messages and not content.problems:
            raise CommandError(f"FILE: {file} holds no HL7 message (no MSH segment)")
        failed = 0
        for number, raw in enumerate(content.messages, start=1):
            try:
                outcome = feed.receive(raw, via="file", clinic=target)
            except Exception as error:  # the database away: this one is said, the rest go on
                self.stdout.write(f"message {number}: not stored ({type(error).__name__}: {error})")
                failed += 1
                continue
            control_id = outcome.message.control_id if outcome.message else ""
            self.stdout.write(f"{control_id or '(no MSH-10)'}: {outcome.code} {outcome.text}")
            failed += outcome.code != "AA"
        for problem in content.problems:
            self.stdout.write(problem)
        self.stdout.write(
            f"{len(content.messages)} message(s), {failed} not accepted; "
            f"{len(content.problems)} problem(s) in the file"
        )
        if failed or content.problems:
            raise CommandError(
                f"{failed} message(s) were not accepted and the file has "
                f"{len(content.problems)} problem(s) (see above)"
            )
