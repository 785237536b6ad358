"""CDS Hooks benchmark: `alp-patient-view` with a full prefetch, over HTTP against gunicorn.

    DJANGO_DEBUG=1 .venv/bin/python bench/cds_hooks.py [--port 8650] [--workers 4]
        [--calls 200] [--observations 40]

Uses DATABASE_URL when set (PostgreSQL, as in production), else a throwaway SQLite database;
migrates it, registers a trusted EHR (ES384 key, inline JWKS) and a matching patient, starts
gunicorn on the port and calls the service as the EHR would: a signed JWT per call (signed
before the clock starts: the EHR's cost, not alpcare's), a full prefetch of one myeloma patient
(Patient, `--observations` LOINC-coded results, Conditions, MedicationStatements). Prints
p50/p95/max latency and throughput at 1 and at 20 concurrent clients.

Target: p95 < 50 ms at 1 client.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_DB_DIR = tempfile.TemporaryDirectory(prefix="alpcare-bench-cds-")
os.environ.setdefault("DATABASE_URL", f"sqlite:///{_DB_DIR.name}/cds.sqlite3")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alpcare.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402

from pathways.cds_models import CdsCard, CdsClient, CdsJwtUse  # noqa: E402
from pathways.models import Clinic, Membership  # noqa: E402
from tests.cds_support import EHR_ISSUER, EhrKeys, _lab, myeloma_with_rising_creatinine  # noqa: E402
from tests.factories import myeloma_on_zoledronic_acid_14_months_document, stored_patient  # noqa: E402

SERVICE = "/cds-services/alp-patient-view"


def setup(keys: EhrKeys) -> None:
    call_command("migrate", verbosity=0)
    clinic, _ = Clinic.objects.get_or_create(slug="bench-cds", defaults={"name": "Bench CDS"})
    user, _ = User.objects.get_or_create(username="bench-cds")
    Membership.objects.get_or_create(user=user, clinic=clinic)
    CdsClient.objects.filter(issuer=EHR_ISSUER).delete()
    CdsClient.objects.create(name="Bench EHR", issuer=EHR_ISSUER, clinic=clinic, jwks=keys.jwks)
    if not clinic.patients.filter(mrn="NORTH-42").exists():
        stored_patient(
            clinic, user, myeloma_on_zoledronic_acid_14_months_document(), mrn="NORTH-42"
        )


def full_prefetch(observations: int) -> dict[str, Any]:
    prefetch = myeloma_with_rising_creatinine()
    entries = prefetch["observations"]["entry"]
    # Monthly ALP, calcium and vitamin D on top of the case's results, up to `observations`.
    series = [("6768-6", 180.0, "U/L"), ("17861-6", 9.4, "mg/dL"), ("62292-8", 24.0, "ng/mL")]
    index = 100
    while len(entries) < observations:
        loinc, value, unit = series[index % len(series)]
        entries.append({"resource": _lab(index, loinc, value, unit, 30 + 10 * index)})
        index += 1
    prefetch["observations"]["total"] = len(entries)
    return prefetch


def body(prefetch: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "hook": "patient-view",
            "hookInstance": "b0d5a7a6-0f43-4f0a-a1a5-5f8c9f0f3c1e",
            "context": {"userId": "Practitioner/1", "patientId": "ehr-42"},
            "prefetch": prefetch,
        }
    ).encode()


def call(port: int, payload: bytes, token: str) -> tuple[float, int]:
    start = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(
        "POST",
        SERVICE,
        body=payload,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    response = connection.getresponse()
    response.read()
    connection.close()
    return (time.perf_counter() - start) * 1000, response.status


def wait_for(port: int) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/cds-services")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("gunicorn did not start")


def run(port: int, payload: bytes, tokens: list[str], clients: int) -> dict[str, float]:
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(lambda token: call(port, payload, token), tokens))
    elapsed = time.perf_counter() - start
    latencies = sorted(ms for ms, _status in results)
    errors = sum(1 for _ms, status in results if status != 200)
    return {
        "p50": statistics.median(latencies),
        "p95": latencies[int(0.95 * (len(latencies) - 1))],
        "max": latencies[-1],
        "per_second": len(results) / elapsed,
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8650)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--observations", type=int, default=40)
    args = parser.parse_args()

    keys = EhrKeys()
    setup(keys)
    payload = body(full_prefetch(args.observations))
    audience = f"http://127.0.0.1:{args.port}{SERVICE}"
    env = {**os.environ, "DJANGO_DEBUG": os.environ.get("DJANGO_DEBUG", "1")}
    server = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/gunicorn"),
            "alpcare.wsgi:application",
            "--bind",
            f"127.0.0.1:{args.port}",
            "--workers",
            str(args.workers),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        wait_for(args.port)
        database = django.db.connection.vendor
        print(
            f"alp-patient-view, full prefetch ({args.observations} observations, "
            f"{len(payload) // 1024} KiB), gunicorn {args.workers} workers, {database}, "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
        )
        run(args.port, payload, [keys.token(audience) for _ in range(20)], 1)  # warm-up
        for clients in (1, 20):
            tokens = [keys.token(audience) for _ in range(args.calls)]
            figures = run(args.port, payload, tokens, clients)
            target = "  (target p95 < 50 ms)" if clients == 1 else ""
            print(
                f"{clients:>2} client(s): p50 {figures['p50']:6.1f} ms"
                f"  p95 {figures['p95']:6.1f} ms  max {figures['max']:6.1f} ms"
                f"  {figures['per_second']:6.1f} calls/s"
                f"  errors {figures['errors']:.0f}{target}"
            )
        sample = call(args.port, payload, keys.token(audience))
        print(f"check: a last call answered {sample[1]}; cards stored {CdsCard.objects.count()}")
    finally:
        server.terminate()
        server.wait(timeout=30)
        CdsJwtUse.objects.all().delete()


if __name__ == "__main__":
    main()
