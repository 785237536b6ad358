"""FHIR import benchmark: one patient's Bundle with 1,000 observations, on SQLite and PostgreSQL.

    DJANGO_DEBUG=1 .venv/bin/python bench/fhir_import.py [--observations 1000] [--runs 3]
        [--database-url postgres://postgres@127.0.0.1:5432/alpcare_fhir_bench]

For each database (a throwaway SQLite file, then the PostgreSQL database named in
--database-url, dropped and created first; `--database-url ""` skips PostgreSQL) it migrates,
creates a clinic and a clinician, builds a transaction Bundle of one patient with
--observations LOINC-coded results (ALP, creatinine, calcium, GGT, vitamin D, in turn, a
distinct collection time each, every one with a reference range), a weight, a diagnosis and a
therapy, then times `pathways.fhir.import_bundle` (validation with fhir.resources, mapping,
one transaction, the re-assessment) as POST /api/v1/fhir runs it: the first import (creates
everything), the same Bundle again (nothing changes), and the same Bundle into a fresh clinic
--runs times (the median is the figure). Prints the times and the database counts proving the
results were stored once. Target: under 2 s. Exit status 1 when a count or the target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 2.0
TESTS = (("6768-6", "U/L", 60, 400), ("2160-0", "mg/dL", 0.6, 2.0), ("17861-6", "mg/dL", 8.5, 10.5),
         ("2324-2", "U/L", 10, 90), ("62292-8", "ng/mL", 12, 60))  # fmt: skip


def bundle(observations: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from tests import fhir_bundles as fb

    start = datetime(2020, 1, 1, 8, 0)
    resources = [fb.patient("BENCH-1")]
    for number in range(observations):
        loinc, unit, low, high = TESTS[number % len(TESTS)]
        value = round(low + (high - low) * ((number * 37) % 100) / 100, 2)
        when = (start + timedelta(hours=12 * number)).isoformat() + "+00:00"
        resources.append(fb.lab(loinc, value, unit, when, low=low, high=high))
    resources += [fb.weight(64, "2026-10-01"), fb.condition("M88.9"),
                  fb.statement("M05BA04", "2021-06-10")]  # fmt: skip
    return fb.bundle(*resources)


def run(observations: int, runs: int) -> int:
    """In a process of its own (DATABASE_URL set): the timings as one JSON line."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alpcare.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection

    from pathways import fhir
    from pathways.models import Clinic, LabResult, Patient

    call_command("migrate", verbosity=0)
    user = User.objects.create_user("bench-clinician")
    data = bundle(observations)

    def once(slug: str) -> float:
        clinic, _ = Clinic.objects.get_or_create(slug=slug, defaults={"name": slug})
        started = time.perf_counter()
        fhir.import_bundle(data, clinic=clinic, user=user, path="bench")
        return time.perf_counter() - started

    first = once("bench-0")
    again = once("bench-0")
    fresh = [once(f"bench-{run}") for run in range(1, runs + 1)]
    patient = Patient.objects.get(clinic__slug="bench-0")
    counts = {
        "results": LabResult.objects.filter(patient=patient).count(),
        "history": LabResult.history.filter(patient_id=patient.pk).count(),
        "version": patient.version,
    }
    print(json.dumps({
        "vendor": connection.vendor, "first": first, "again": again,
        "fresh_median": statistics.median(fresh), "fresh": fresh, **counts,
    }))  # fmt: skip
    return 0


def _postgres(database_url: str) -> None:
    import psycopg

    name = database_url.rsplit("/", 1)[1]
    admin_url = database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--observations", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/alpcare_fhir_bench"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return run(args.observations, args.runs)

    failed = False
    with tempfile.TemporaryDirectory(prefix="alpcare-bench-fhir-") as folder:
        databases = [f"sqlite:///{folder}/fhir.sqlite3"]
        if args.database_url:
            _postgres(args.database_url)
            databases.append(args.database_url)
        print(
            f"FHIR import: 1 patient, {args.observations} observations "
            f"(target < {TARGET_SECONDS:g} s)"
        )
        for url in databases:
            env = {**os.environ, "DATABASE_URL": url, "DJANGO_DEBUG": "1"}
            command = [sys.executable, __file__, "--child", f"--observations={args.observations}",
                       f"--runs={args.runs}"]  # fmt: skip
            output = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            if output.returncode != 0:
                print(output.stderr)
                return 1
            figures = json.loads(output.stdout.strip().splitlines()[-1])
            print(
                f"  {figures['vendor']:<10} first import {figures['first']:.2f} s, "
                f"same Bundle again {figures['again']:.2f} s (nothing written), "
                f"into a new clinic median {figures['fresh_median']:.2f} s "
                f"({', '.join(f'{t:.2f}' for t in figures['fresh'])}); "
                f"stored {figures['results']} results, {figures['history']} history rows, "
                f"patient version {figures['version']}"
            )
            stored_once = figures["results"] == figures["history"] == args.observations
            slow = max(figures["first"], figures["fresh_median"]) >= TARGET_SECONDS
            failed |= slow or not stored_once or figures["version"] != 1
        if args.database_url:
            import psycopg

            admin_url = args.database_url.rsplit("/", 1)[0] + "/postgres"
            name = args.database_url.rsplit("/", 1)[1]
            with psycopg.connect(admin_url, autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
