"""Page benchmark: the clinician screens at 100 and at 10,000 patients, against a floor.

    DJANGO_DEBUG=1 .venv/bin/python bench/pages.py [--sizes 100 10000] [--results 20] [--runs 25]
        [--database-url postgres://postgres@127.0.0.1:5432/alpcare_pages]

Uses its own throwaway database, migrated here: a temporary SQLite file, or with
--database-url a PostgreSQL database of that name, created afresh, vacuumed and analysed after
seeding (as autovacuum would keep a live one), and dropped at the end. Seeds synthetic patients
with ~20 results each. Seeding writes patients, results and therapies with bulk_create
(acceptable in a benchmark only: it skips the history rows), then stores each patient's
follow-ups and dashboard snapshot from the real engine result, as services.follow_ups_sync
does. Prints the median time of each page through the test Client (the full middleware
stack), side by side per size:

- floor: a bare logged-in view with the same middleware;
- the dashboard's first page; a filtered page (overdue, myeloma); a search for the MRN of one
  patient on the worklist (it lists that patient at every size); a broad search sorted by ALP
  ("bench1": about 11 % of the patients at any size, so its cost grows with its matches by
  nature; shown, not a target);
- the worklist's "urgent or high advice" patients and "top priority urgent";
- beside each list page's time, the patients it listed: a page not yet full at the smaller
  size draws fewer rows, which its time reflects;
- a patient page (~20 results: chart, recommendations, follow-ups);
- a live case-entry update (the htmx assess-preview of a ~20-result case), and the engine's
  share of it: the same case document parsed and assessed in process, timed in the same loop.

Targets: the dashboard at 10,000 patients within 1.5x of itself at 100; the live update within
2x of the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from throwaway_db import recreate_database  # the bench folder: this script's own


def _database_url() -> str | None:
    """--database-url, read before Django is set up (the settings read DATABASE_URL)."""
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--database-url")
    return early.parse_known_args()[0].database_url


_DB_DIR = tempfile.TemporaryDirectory(prefix="alpcare-bench-pages-")
DATABASE_URL = _database_url()
if DATABASE_URL:
    recreate_database(DATABASE_URL, create=True)
os.environ["DATABASE_URL"] = DATABASE_URL or f"sqlite:///{_DB_DIR.name}/pages.sqlite3"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alpcare.settings")

import django  # noqa: E402

django.setup()

from bulk import seed_assessed  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth.decorators import login_required  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, reset_queries  # noqa: E402
from django.http import HttpRequest, HttpResponse, HttpResponseBase  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import include, path  # noqa: E402
from django.utils import timezone  # noqa: E402

from pathways import engine  # noqa: E402
from pathways.assessment import assess_document_with_facts  # noqa: E402
from pathways.case_post import as_browser_json, form_data  # noqa: E402
from pathways.demo import synthetic_case  # noqa: E402
from pathways.forms import JsonPostedForm, case_draft  # noqa: E402
from pathways.models import (  # noqa: E402
    ON_WORKLIST,
    AssessmentSnapshot,
    Clinic,
    FollowUp,
    LabResult,
    Membership,
    Patient,
)
from pathways.rules import current_rule_set  # noqa: E402


@login_required
def floor(request: HttpRequest) -> HttpResponse:
    """The floor: logged in, full middleware, no work."""
    return HttpResponse("ok")


urlpatterns = [path("bench/floor/", floor), path("", include("alpcare.urls"))]
settings.ROOT_URLCONF = __name__
settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]


def median_ms(
    pages: dict[str, Callable[[], Any]], runs: int
) -> tuple[dict[str, float], dict[str, list[tuple[float, str]]]]:
    """Median time per page, and the median time of each of its queries (DJANGO_DEBUG=1).

    The pages are interleaved run by run, so that load from other processes on the machine
    falls on all of them alike."""
    for request in pages.values():  # warm caches (rule set, templates)
        for _ in range(3):
            request()
    times: dict[str, list[float]] = {name: [] for name in pages}
    query_times: dict[str, dict[int, list[float]]] = {name: {} for name in pages}
    sql: dict[str, dict[int, str]] = {name: {} for name in pages}
    for _ in range(runs):
        for name, request in pages.items():
            reset_queries()
            started = time.perf_counter()
            response = request()
            times[name].append((time.perf_counter() - started) * 1000)
            if isinstance(response, HttpResponseBase):  # not the in-process engine row
                assert response.status_code == 200, (name, response.status_code)
            for index, query in enumerate(connection.queries):
                query_times[name].setdefault(index, []).append(float(query["time"]) * 1000)
                sql[name][index] = query["sql"]
    queries = {
        name: [(statistics.median(values), sql[name][i]) for i, values in per_query.items()]
        for name, per_query in query_times.items()
    }
    return {name: statistics.median(values) for name, values in times.items()}, queries


ENGINE_ROW = "  its engine alone (no HTTP)"


def _pages(
    client: Client, patient_pk: int, listed_mrn: str, form_body: str
) -> dict[str, Callable[[], Any]]:
    hx = {"HX-Request": "true"}
    # What the live update's view hands the engine: the posted form's case document.
    document = case_draft(JsonPostedForm(json.loads(form_body))).document
    return {
        "floor (bare logged-in view)": lambda: client.get("/bench/floor/"),
        "dashboard, first page": lambda: client.get("/"),
        "dashboard, filtered": lambda: client.get("/?status=overdue&pathway=myeloma"),
        "dashboard, MRN search": lambda: client.get(f"/?q={listed_mrn}"),
        "dashboard, broad search by ALP": lambda: client.get("/?q=bench1&sort=alp"),
        "worklist, urgent or high advice": lambda: client.get("/?status=action"),
        "worklist, top priority urgent": lambda: client.get("/?priority=urgent"),
        "patient page (~20 results)": lambda: client.get(f"/patients/{patient_pk}/"),
        "live case-entry update": lambda: client.post(
            "/case/preview/",
            form_body,
            content_type="application/json",
            headers=hx,
        ),
        ENGINE_ROW: lambda: assess_document_with_facts(document, rule_set=current_rule_set()),
    }


def _rows_shown(pages: dict[str, Callable[[], Any]]) -> dict[str, int]:
    """Patients each list page shows: a page not yet full at the smaller size draws fewer rows,
    which its time reflects (not a cost of the number of patients)."""
    shown = {}
    for name, request in pages.items():
        if name.startswith(("dashboard", "worklist")):
            shown[name] = request().content.count(b'data-mrn="')
    return shown


def _cell(ms: float, listed: int | None) -> str:
    return f"{ms:>12.1f} ms" + (f" ({listed:>2})" if listed is not None else " " * 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 10000])
    parser.add_argument("--results", type=int, default=20)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--queries", action="store_true", help="show queries of 1 ms or more")
    parser.add_argument("--database-url", help="a PostgreSQL database to create, use and drop")
    args = parser.parse_args()
    try:
        run(args)
    finally:
        if DATABASE_URL:
            connection.close()
            recreate_database(DATABASE_URL, create=False)


def run(args: argparse.Namespace) -> None:

    call_command("migrate", verbosity=0)
    today = timezone.localdate()
    clinic = Clinic.objects.create(name="Bench clinic", slug="bench")
    user = User.objects.create_user("bench-clinician")
    Membership.objects.create(user=user, clinic=clinic)
    client = Client()
    client.force_login(user)

    pages: dict[str, Callable[[], Any]] = {}
    columns: dict[int, dict[str, float]] = {}
    rows: dict[int, dict[str, int]] = {}
    seeded = 0
    print(
        f"alpcare pages benchmark on {connection.vendor}: {args.results} results per patient, "
        f"median of {args.runs}"
    )
    for size in sorted(args.sizes):
        started = time.perf_counter()
        seed_assessed(
            clinic=clinic, count=size - seeded, start=seeded, results=args.results, today=today
        )
        seeded = size
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE")
        print(
            f"  seeded {size:>6} patients ({LabResult.objects.count()} results, "
            f"{FollowUp.objects.count()} follow-ups) in {time.perf_counter() - started:.1f} s"
        )
        if not pages:
            patient = Patient.objects.order_by("pk").first()
            assert patient is not None
            document = engine.case_to_document(
                engine.parse_case(synthetic_case(random.Random(7), today, results=args.results))
            )
            # The live preview posts the form as one JSON object (static/alpcare/case-entry.js):
            # name to value, a list for a name given more than once.
            form_body = json.dumps(
                as_browser_json(form_data(document, mrn="BENCH", name="Bench Preview"))
            )
            # A patient on the worklist: the search finds and lists one row at every size.
            listed_mrn = (
                AssessmentSnapshot.objects.filter(ON_WORKLIST)
                .order_by("patient_id")
                .values_list("patient__mrn", flat=True)
                .first()
            )
            assert listed_mrn is not None
            pages = _pages(client, patient.pk, listed_mrn, form_body)
            live = pages["live case-entry update"]().content.decode()
            assert "data-code=" in live and "live-errors" in live, "the preview must assess"
        columns[size], queries = median_ms(pages, args.runs)
        rows[size] = _rows_shown(pages)
        assert rows[size]["dashboard, MRN search"] == 1, "the MRN search must list its patient"
        if args.queries:
            for name, timed in queries.items():
                slow = [(ms, sql) for ms, sql in timed if ms >= 1]
                print(
                    f"    {name}: {len(timed)} queries"
                    + "".join(f"\n      {ms:6.1f} ms  {sql[:110]}" for ms, sql in slow)
                )

    sizes = sorted(columns)
    header = "".join(f"{size:>14,} pts" for size in sizes)
    print(f"\n{'median ms (patients listed)':<32}{header}")
    for name in pages:
        print(
            f"{name:<32}"
            + "".join(_cell(columns[size][name], rows[size].get(name)) for size in sizes)
        )
    first, last = sizes[0], sizes[-1]
    floor_ms = columns[last]["floor (bare logged-in view)"]
    for name in ("dashboard, first page", "dashboard, filtered", "dashboard, MRN search"):
        ratio = columns[last][name] / columns[first][name]
        verdict = "ok" if ratio <= 1.5 else "MISSED"
        print(f"{name} at {last:,} vs {first:,}: {ratio:.2f}x (target <= 1.5x) {verdict}")
    broad = "dashboard, broad search by ALP"
    ratio = columns[last][broad] / columns[first][broad]
    print(f"{broad} at {last:,} vs {first:,}: {ratio:.2f}x (no target: matches grow with size)")
    live_ms = columns[last]["live case-entry update"]
    live = live_ms / floor_ms
    print(f"live update vs floor: {live:.2f}x (target <= 2x) {'ok' if live <= 2 else 'MISSED'}")
    engine_ms = columns[last][ENGINE_ROW]
    print(
        f"  beyond the floor the live update takes {live_ms - floor_ms:.1f} ms: "
        f"the engine (parse, assess) {engine_ms:.1f} ms, the rest (form, panel) "
        f"{live_ms - floor_ms - engine_ms:.1f} ms"
    )


if __name__ == "__main__":
    main()
