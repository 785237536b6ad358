"""Load benchmark: a busy clinic against gunicorn + PostgreSQL, driven by locust (headless).

    .venv/bin/python bench/load.py [--users 50] [--seconds 60] [--patients 2000] [--port 8300]
        [--database-url postgres://postgres@127.0.0.1:5432/alpcare_load] [--workers 4]

Creates (drops first) the PostgreSQL database named in --database-url, migrates it, seeds one
clinic with --patients synthetic patients (~20 results each, bench/bulk.py) and one clinician
login per simulated user, collects static files and starts gunicorn the way the README deploys
it (``-c gunicorn.conf.py``, DJANGO_DEBUG=0, --workers). Then --users clinician sessions run for
--seconds, each waiting 1-3 s between actions: log in once, then over and over the worklist
(dashboard), a patient page, the edit page's live preview (the JSON POST case-entry.js sends)
and "add a result" (the patient page's htmx form). Every result the server acknowledged
("Result added") is then looked up in the database.

Prints per endpoint: requests, failures, p50, p95 and max (ms); writes acknowledged vs found.
Targets: 0 errors, every endpoint's p95 under 500 ms after log-in, every acknowledged write
stored. Exit status 1 when a target is missed.
"""

from __future__ import annotations

# locust patches the standard library for gevent: it must come before anything else.
from locust import HttpUser, SequentialTaskSet, between, events, task
from locust.env import Environment

# isort: split

import argparse
import json
import os
import random
import secrets
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, ClassVar

import gevent

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from throwaway_db import recreate_database  # noqa: E402

PASSWORD_BYTES = 12
PREVIEW_PATIENTS = 200  # patients the sessions open, preview and add results to
ENDPOINTS = ("log in", "worklist", "patient page", "live preview", "add a result")
P95_TARGET_MS = 500


@dataclass(frozen=True)
class Write:
    patient_pk: int
    value: int
    collected_on: date
    collected_time: str


class ClinicianFlow(SequentialTaskSet):
    """One clinician's round: worklist, a patient, the live preview, a new result."""

    user: Clinician

    def on_start(self) -> None:
        self.patient_pk = 0

    @task
    def worklist(self) -> None:
        self.client.get("/", name="worklist")

    @task
    def patient_page(self) -> None:
        self.patient_pk = random.choice(self.user.patient_pks)
        self.client.get(f"/patients/{self.patient_pk}/", name="patient page")

    @task
    def live_preview(self) -> None:
        with self.client.post(
            f"/patients/{self.patient_pk}/case/preview/",
            data=self.user.preview_bodies[self.patient_pk],
            headers=self.user.htmx_headers("application/json"),
            name="live preview",
            catch_response=True,
        ) as response:
            if response.status_code == 200 and "data-code=" not in response.text:
                response.failure("the preview did not assess the case")

    @task
    def add_result(self) -> None:
        self.user.writes_made += 1
        write = Write(
            patient_pk=self.patient_pk,
            value=random.randint(60, 900),
            # Unique per session and write, and never at a synthetic result's time (07-16 h).
            collected_on=self.user.today - timedelta(days=self.user.writes_made),
            collected_time=f"{20 + self.user.number // 60:02d}:{self.user.number % 60:02d}",
        )
        with self.client.post(
            f"/patients/{write.patient_pk}/results/",
            data={
                "test": "alp",
                "value": str(write.value),
                "unit": "U/L",
                "collected_on": write.collected_on.isoformat(),
                "collected_time": write.collected_time,
                "reference_high": "",
            },
            headers=self.user.htmx_headers(),
            name="add a result",
            catch_response=True,
        ) as response:
            if response.status_code == 200:
                if "Result added" in response.text:
                    Clinician.acknowledged.append(write)
                else:
                    response.failure("the result was not added")


class Clinician(HttpUser):
    wait_time = between(1, 3)
    tasks = [ClinicianFlow]

    # Filled in by main() before the run.
    logins: ClassVar[list[tuple[str, str]]] = []
    patient_pks: ClassVar[list[int]] = []
    preview_bodies: ClassVar[dict[int, str]] = {}
    acknowledged: ClassVar[list[Write]] = []
    today: ClassVar[date] = date.today()
    started: ClassVar[int] = 0

    def on_start(self) -> None:
        self.number = Clinician.started
        Clinician.started += 1
        self.writes_made = 0
        username, password = self.logins[self.number % len(self.logins)]
        self.client.get("/accounts/login/", name="log in (form)")
        with self.client.post(
            "/accounts/login/",
            data={
                "username": username,
                "password": password,
                "csrfmiddlewaretoken": self.client.cookies.get("csrftoken", ""),
            },
            name="log in",
            allow_redirects=False,
            catch_response=True,
        ) as response:
            if response.status_code != 302:
                response.failure(f"log-in refused: {response.status_code}")

    def htmx_headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {
            "HX-Request": "true",
            "X-CSRFToken": self.client.cookies.get("csrftoken") or "",
        }
        if content_type:
            headers["Content-Type"] = content_type
        return headers


def _prepare(args: argparse.Namespace) -> None:
    """Migrate, seed and collect static files, in this process (Django set up here)."""
    os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alpcare.settings")
    os.environ.setdefault("DJANGO_DEBUG", "1")  # this process only: the server runs DEBUG=0
    import django

    django.setup()
    from bulk import seed_assessed
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.utils import timezone

    from pathways.cases import patient_to_document
    from pathways.models import Clinic, Membership, Patient
    from tests.factories import as_browser_json, form_data

    call_command("migrate", verbosity=0)
    today = timezone.localdate()
    Clinician.today = today
    clinic = Clinic.objects.create(name="Load clinic", slug="load")
    started = time.perf_counter()
    seed_assessed(clinic=clinic, count=args.patients, start=0, results=20, today=today)
    print(f"  seeded {args.patients} patients in {time.perf_counter() - started:.1f} s")
    for number in range(args.users):
        password = secrets.token_urlsafe(PASSWORD_BYTES)
        user = User.objects.create_user(f"load-clinician-{number}", password=password)
        Membership.objects.create(user=user, clinic=clinic)
        Clinician.logins.append((user.username, password))
    patients = Patient.objects.filter(clinic=clinic).order_by("?")[:PREVIEW_PATIENTS]
    for patient in patients:
        document = patient_to_document(patient)
        body = as_browser_json(form_data(document, mrn=patient.mrn, name=patient.name))
        Clinician.preview_bodies[patient.pk] = json.dumps(body)
        Clinician.patient_pks.append(patient.pk)
    static_root = ROOT / "staticfiles"
    if not (static_root / "staticfiles.json").exists():
        subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--no-input", "-v0"],
            cwd=ROOT,
            env={**os.environ, "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": secrets.token_urlsafe(50)},
            check=True,
        )


def _start_server(args: argparse.Namespace) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": args.database_url,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_HTTPS": "0",  # plain HTTP on the loopback, as behind a TLS-terminating balancer
        "DJANGO_LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "-c",
            "gunicorn.conf.py",
            "alpcare.wsgi",
            "--bind",
            f"127.0.0.1:{args.port}",
            "--workers",
            str(args.workers),
        ],
        cwd=ROOT,
        env=env,
    )
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{args.port}/accounts/login/") as reply:
                banner = reply.headers["Server"]
                print(f"  gunicorn up: {args.workers} workers; Server header: {banner!r}")
                return server
        except OSError:
            time.sleep(0.1)
    server.terminate()
    raise SystemExit("gunicorn did not start")


@dataclass(frozen=True)
class LoginFigures:
    requests: int
    failures: int
    p50: float
    p95: float


def _cpu_seconds(server_pid: int) -> dict[str, dict[int, float]]:
    """CPU time used so far, per process: the app server (gunicorn and its workers), this
    process (locust), every PostgreSQL process (other users' included), and the whole machine
    (as pid 0)."""
    import psutil

    def used(process: psutil.Process) -> float:
        try:
            times = process.cpu_times()
        except psutil.Error:
            return 0.0
        return float(times.user + times.system)

    server = psutil.Process(server_pid)
    machine = psutil.cpu_times()
    return {
        "gunicorn": {p.pid: used(p) for p in [server, *server.children(recursive=True)]},
        "locust (this process)": {os.getpid(): used(psutil.Process())},
        "postgres (all databases)": {
            p.pid: used(p) for p in psutil.process_iter() if p.name() == "postgres"
        },
        "machine": {0: float(machine.user + machine.system + machine.nice + machine.irq)},
    }


def _cores(
    before: dict[str, dict[int, float]], after: dict[str, dict[int, float]], seconds: float
) -> dict[str, float]:
    """Cores used in between by the processes alive at the end (one that started in between
    counts from zero; one that ended is missed, so these are lower bounds)."""
    return {
        name: sum(used - before[name].get(pid, 0.0) for pid, used in after[name].items()) / seconds
        for name in before
    }


def _run(
    args: argparse.Namespace, server_pid: int
) -> tuple[Environment, LoginFigures, dict[str, float]]:
    """Log every session in (ramping up at --spawn-rate), wait --settle s, then measure
    --seconds: the targets are for the work after log-in, and 50 password hashes at once
    would otherwise queue in front of the first pages."""
    env = Environment(user_classes=[Clinician], events=events, host=f"http://127.0.0.1:{args.port}")
    runner = env.create_local_runner()
    runner.start(args.users, spawn_rate=args.spawn_rate)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        logins = env.stats.entries.get(("log in", "POST"))
        if logins is not None and logins.num_requests >= args.users:
            break
        gevent.sleep(0.2)
    assert logins is not None
    login = LoginFigures(
        logins.num_requests,
        logins.num_failures,
        logins.get_response_time_percentile(0.5),
        logins.get_response_time_percentile(0.95),
    )
    # Requests queued behind the log-ins' password hashing finish in the next seconds: let them,
    # so that the figures are the steady work after log-in.
    gevent.sleep(args.settle)
    env.stats.reset_all()
    cpu_before, started = _cpu_seconds(server_pid), time.monotonic()
    gevent.spawn_later(args.seconds, runner.quit)
    runner.greenlet.join()
    cpu_after, elapsed = _cpu_seconds(server_pid), time.monotonic() - started
    return env, login, _cores(cpu_before, cpu_after, elapsed)


def _solo(args: argparse.Namespace, rounds: int = 15) -> dict[str, float]:
    """Median time of each action for one session alone: the cost of a request without load."""
    import statistics

    import requests

    base = f"http://127.0.0.1:{args.port}"
    session = requests.Session()
    session.get(f"{base}/accounts/login/")
    username, password = Clinician.logins[0]
    token = session.cookies.get("csrftoken") or ""
    session.post(
        f"{base}/accounts/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token},
    )
    token = session.cookies.get("csrftoken") or ""
    hx = {"HX-Request": "true", "X-CSRFToken": token}
    patient_pk = Clinician.patient_pks[-1]
    times: dict[str, list[float]] = {name: [] for name in ENDPOINTS[1:]}
    for number in range(rounds):
        result = {
            "test": "alp",
            "value": "321",
            "unit": "U/L",
            "collected_on": (Clinician.today - timedelta(days=number + 1)).isoformat(),
            "collected_time": f"23:{number:02d}",
            "reference_high": "",
        }
        actions: list[tuple[str, str, str, dict[str, Any]]] = [
            ("worklist", "GET", "/", {}),
            ("patient page", "GET", f"/patients/{patient_pk}/", {}),
            (
                "live preview",
                "POST",
                f"/patients/{patient_pk}/case/preview/",
                {
                    "data": Clinician.preview_bodies[patient_pk],
                    "headers": {**hx, "Content-Type": "application/json"},
                },
            ),
            (
                "add a result",
                "POST",
                f"/patients/{patient_pk}/results/",
                {"data": result, "headers": hx},
            ),
        ]
        for name, method, path, options in actions:
            started = time.perf_counter()
            response = session.request(method, base + path, **options)
            times[name].append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (name, response.status_code)
    return {name: statistics.median(values) for name, values in times.items()}


def _writes_found() -> tuple[int, list[Write]]:
    from datetime import time as clock

    from pathways.models import LabResult

    missing = []
    for write in Clinician.acknowledged:
        hour, minute = (int(part) for part in write.collected_time.split(":"))
        stored = LabResult.objects.filter(
            patient_id=write.patient_pk,
            test="alp",
            value=write.value,
            collected_on=write.collected_on,
            collected_time=clock(hour, minute),
        ).exists()
        if not stored:
            missing.append(write)
    return len(Clinician.acknowledged) - len(missing), missing


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--port", type=int, default=8300)
    parser.add_argument("--spawn-rate", type=float, default=5, help="sessions started per second")
    parser.add_argument(
        "--settle", type=float, default=10, help="seconds between the last log-in and measuring"
    )
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/alpcare_load")
    args = parser.parse_args()

    print(
        f"alpcare load benchmark: {args.users} clinicians for {args.seconds} s, "
        f"{args.patients} patients, gunicorn {args.workers} workers, PostgreSQL"
    )
    recreate_database(args.database_url, create=True)
    _prepare(args)
    server = _start_server(args)
    try:
        solo = _solo(args)
        load_before = os.getloadavg()[0]
        env, login, cores = _run(args, server.pid)
        load_after = os.getloadavg()[0]
    finally:
        server.terminate()
        server.wait(timeout=30)

    stats = env.stats
    print(
        f"\nlog in ({login.requests} sessions, ramping {args.spawn_rate:g}/s, not in the targets): "
        f"p50 {login.p50:.0f} ms, p95 {login.p95:.0f} ms, {login.failures} errors"
    )
    print(f"machine load average (1 min) {load_before:.1f} before, {load_after:.1f} after")
    print(
        f"CPU used while measuring, in cores (this machine has {os.cpu_count()}): "
        + ", ".join(f"{name} {used:.2f}" for name, used in cores.items())
    )
    print(f"\nafter log-in, {args.seconds} s")
    print(
        f"{'endpoint':<16}{'requests':>9}{'errors':>8}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}"
        f"{'alone ms':>10}"
    )
    missed = [f"log in: {login.failures} errors"] if login.failures else []
    for name in ENDPOINTS[1:]:
        entry = stats.entries.get((name, "POST")) or stats.entries.get((name, "GET"))
        if entry is None:
            print(f"{name:<16}{'-':>9}")
            missed.append(f"{name}: no requests")
            continue
        p50 = entry.get_response_time_percentile(0.5)
        p95 = entry.get_response_time_percentile(0.95)
        print(
            f"{name:<16}{entry.num_requests:>9}{entry.num_failures:>8}"
            f"{p50:>9.0f}{p95:>9.0f}{entry.max_response_time:>9.0f}{solo[name]:>10.0f}"
        )
        if p95 >= P95_TARGET_MS:
            missed.append(f"{name}: p95 {p95:.0f} ms")
    total = stats.total
    print(f"{'all':<16}{total.num_requests:>9}{total.num_failures:>8}")
    for error in stats.errors.values():
        print(f"  error: {error.method} {error.name}: {error.error} x{error.occurrences}")
    if total.num_failures:
        missed.append(f"{total.num_failures} errors")

    found, missing = _writes_found()
    print(
        f"\nwrites acknowledged (ramp-up included) {len(Clinician.acknowledged)}, "
        f"found in the database {found}"
    )
    for write in missing[:10]:
        print(f"  missing: {write}")
    if missing:
        missed.append(f"{len(missing)} acknowledged writes missing")
    print(
        "targets: 0 errors, p95 < 500 ms after log-in, every write stored: "
        + ("met" if not missed else "MISSED (" + "; ".join(missed) + ")")
    )
    from django.db import connections

    connections.close_all()
    recreate_database(args.database_url, create=False)
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
