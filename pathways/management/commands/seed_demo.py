from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from django.utils import timezone

from pathways.demo import CLINICS, MAX_SYNTHETIC_RESULTS, seed_demo, seed_synthetic
from pathways.models import Clinic


class Command(BaseCommand):
    help = (
        "Load the demo clinics, users and patients (idempotent); --patients N adds synthetic ones."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--patients",
            type=int,
            default=0,
            help="Also create N synthetic patients (for demos and load tests).",
        )
        parser.add_argument(
            "--results", type=int, default=20, help="ALP results per synthetic patient."
        )
        parser.add_argument(
            "--seed", type=int, default=1, help="Random seed for synthetic patients."
        )
        parser.add_argument(
            "--url",
            default="http://127.0.0.1:8000/",
            help="Where the server will answer, for the login line (make run passes its own).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        for name in ("patients", "results"):  # checked before anything is seeded
            if options[name] < 0:
                raise CommandError(f"--{name}: a count from 0, not {options[name]}")
        if options["results"] > MAX_SYNTHETIC_RESULTS:  # at most one a day, ten years back
            raise CommandError(
                f"--results: at most {MAX_SYNTHETIC_RESULTS} per patient, not {options['results']}"
            )
        today = timezone.localdate()
        logins = seed_demo(today)
        if options["patients"]:
            from django.contrib.auth.models import User

            clinic = Clinic.objects.get(slug=next(iter(CLINICS)))
            user = User.objects.get(username="clinician")
            try:
                seed_synthetic(
                    clinic=clinic,
                    user=user,
                    count=options["patients"],
                    today=today,
                    seed=options["seed"],
                    results=options["results"],
                )
            except DatabaseError as error:  # one transaction: none of them was added
                raise CommandError(f"no synthetic patients were added: {error}") from error
            self.stdout.write(f"Added {options['patients']} synthetic patients to {clinic}.")
        self.stdout.write(self.style.SUCCESS(f"Demo data ready. Log in at {options['url']} with:"))
        for login in logins:
            self.stdout.write(
                f"  username {login.username:<10} password {login.password}   ({login.role})"
            )
            if login.recovery_codes:
                codes = ", ".join(login.recovery_codes)
                self.stdout.write(
                    f"      then a two-factor code: one of the recovery codes {codes}"
                    f" (each works once), or add key {login.totp_secret} to an authenticator app"
                )
