from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from pathways import engine, fhir
from pathways.models import Clinic, Membership

# The account recorded as the author (access log, change history) when --user is not given.
SERVICE_USERNAME = "fhir-import"


def service_user() -> Any:
    """An account of its own for file imports: it cannot log in."""
    user, created = get_user_model().objects.get_or_create(
        username=SERVICE_USERNAME, defaults={"is_active": False}
    )
    if created:
        user.set_unusable_password()
        user.save()
    return user


class Command(BaseCommand):
    help = (
        "Import one patient's FHIR R4 Bundle (transaction or collection, JSON) into a clinic, "
        "through the same path as POST /api/v1/fhir: all of it or nothing; the same file again "
        "changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="a Bundle as JSON (- for standard input)")
        parser.add_argument("--clinic", required=True, help="the slug of the patient's clinic")
        parser.add_argument(
            "--user",
            help=f"the author recorded in the access log and history (default: {SERVICE_USERNAME})",
        )

    def handle(self, *args: Any, file: Path, clinic: str, user: str | None, **options: Any) -> None:
        target = Clinic.objects.filter(slug=clinic).first()
        if target is None:
            raise CommandError(f"--clinic: no clinic with slug {clinic!r}")
        if user is None:
            author = service_user()
        else:
            author = get_user_model().objects.filter(username=user).first()
            if author is None:
                raise CommandError(f"--user: no user {user!r}")
            if not author.is_active:  # as through the API, which takes only active users' tokens
                raise CommandError(f"--user: {user!r} is deactivated")
            if not Membership.objects.filter(user=author, clinic=target).exists():
                # As through the API: a user writes only to their own clinics' patients (the
                # history and the access log would name them).
                raise CommandError(f"--user: {user!r} is not a member of {target}")
        try:
            # As the FHIR endpoint reads a request's body: bytes (a UTF-8 BOM allowed), and
            # very long integers as numbers the Bundle's check names, not a parse failure.
            raw = self.stdin_bytes() if str(file) == "-" else file.read_bytes()
            data = engine.read_json(raw)
        except RecursionError:
            raise CommandError(f"FILE: {file} is not a JSON Bundle: nested too deeply") from None
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise CommandError(f"FILE: cannot read a JSON Bundle from {file}: {error}") from error
        try:
            outcome = fhir.import_bundle(
                data, clinic=target, user=author, path=f"import_fhir {file}"
            )
        except fhir.BundleInvalid as invalid:
            for issue in invalid.issues:
                self.stderr.write(f"{issue.path}: {issue.message}")
            raise CommandError(
                f"the Bundle was not imported ({invalid.count} problem(s))"
            ) from None
        response = fhir.import_response(outcome, "collection", 0)
        for issue in response["issue"]:
            self.stdout.write(f"{issue['expression'][0]}: {issue['diagnostics']}")

    def stdin_bytes(self) -> bytes:
        import sys

        return sys.stdin.buffer.read()
