from __future__ import annotations

import os
import re
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from pathways.feed_models import Hl7Feed, Hl7Result
from pathways.models import Clinic, FollowUp, Patient
from tests.factories import form_as_shown

pytestmark = pytest.mark.django_db


def test_seed_demo_is_idempotent_and_prints_the_logins() -> None:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    counts = (Clinic.objects.count(), Patient.objects.count(), FollowUp.objects.count())
    call_command("seed_demo", stdout=StringIO())
    assert (Clinic.objects.count(), Patient.objects.count(), FollowUp.objects.count()) == counts
    assert counts[0] == 2 and counts[1] >= 6
    printed = out.getvalue()
    assert "username clinician" in printed and "username editor" in printed
    pathways = {p.diagnoses[0] for p in Patient.objects.all() if p.diagnoses}
    assert "multiple_myeloma" in pathways and "paget" in pathways


def test_the_demo_clinician_logs_in_and_sees_the_demo_patients(client: Any) -> None:
    call_command("seed_demo", stdout=StringIO())  # twice: loading it again adds nothing
    out = StringIO()
    call_command("seed_demo", stdout=out)
    password = next(
        line.split()[3] for line in out.getvalue().splitlines() if "username clinician" in line
    )
    response = client.post(
        "/accounts/login/", {"username": "clinician", "password": password}, follow=True
    )
    assert response.status_code == 200
    listing = client.get("/patients/").content.decode()
    assert "Margaret Ellis" in listing and "Samuel Okafor" in listing
    # The lab inbox holds what the demo laboratory sent and alpcare could not store by itself,
    # once however often the demo is loaded.
    inbox = client.get("/lab-feed/inbox/").content.decode()
    assert "OBX-3: code ALKP (Alk phos) is not mapped" in inbox
    assert "Sample slightly haemolysed" in inbox
    assert "PID-3: no patient with MRN RV-9911" in inbox
    assert Hl7Result.objects.filter(state=Hl7Result.State.UNMATCHED).count() == 2


def test_synthetic_patients_for_load_tests() -> None:
    call_command("seed_demo", "--patients", "3", "--results", "5", stdout=StringIO())
    synthetic = Patient.objects.filter(mrn__startswith="SYN-")
    assert synthetic.count() == 3
    assert all(p.lab_results.filter(test="alp").count() == 5 for p in synthetic)


def test_more_synthetic_patients_follow_the_highest_number_and_counts_are_checked() -> None:
    """Numbered from the count, a later run after a deletion reused a number in use (a
    DuplicateMrn traceback); --results -1 was a traceback after the demo was committed."""
    call_command("seed_demo", "--patients", "3", "--results", "2", stdout=StringIO())
    Patient.objects.get(mrn="SYN-000001").delete()
    call_command("seed_demo", "--patients", "1", "--results", "2", stdout=StringIO())
    assert sorted(Patient.objects.filter(mrn__startswith="SYN-").values_list("mrn", flat=True)) == [
        "SYN-000000", "SYN-000002", "SYN-000003"
    ]  # fmt: skip
    for argument in ("--results", "--patients"):
        with pytest.raises(CommandError, match=f"{argument}: a count from 0, not -1"):
            call_command("seed_demo", argument, "-1", stdout=StringIO())


def test_make_run_prints_the_address_it_serves_on() -> None:
    """`make run PORT=8123` prints a login address with the port its server binds."""
    root = Path(__file__).resolve().parents[1]
    dry_run = subprocess.run(
        ["make", "-n", "-C", str(root), "run", "HOST=127.0.0.1", "PORT=8123"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    seed = next(line for line in dry_run if "manage.py seed_demo" in line)
    serve = next(line for line in dry_run if "honcho start" in line)
    assert "ALPCARE_RUN_ADDR=127.0.0.1:8123" in serve
    out = StringIO()
    call_command("seed_demo", *seed.split("seed_demo", 1)[1].split(), stdout=out)
    assert "Log in at http://127.0.0.1:8123/ with:" in out.getvalue()


def test_the_demo_lab_feed_saves_unchanged_in_the_admin(admin_client: Any) -> None:
    """The demo feed's service user (riverside-lab-feed) is not a member of Riverside, the
    clinic it feeds: the admin's own rule ("the results this feed stores are recorded as
    theirs") refuses the demo feed as seeded, so saving it unchanged fails, and every result
    the demo feed stores is authored by a user outside the clinic."""
    call_command("seed_demo", stdout=StringIO())
    feed = Hl7Feed.objects.get(sending_facility="RIVERSIDE-LAB")
    url = f"/admin/pathways/hl7feed/{feed.pk}/change/"
    response = admin_client.post(url, form_as_shown(admin_client, url))
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert feed.service_user.memberships.filter(clinic=feed.clinic).exists()


def test_synthetic_patients_are_all_added_or_none(monkeypatch: Any) -> None:
    """Each synthetic patient was committed on its own: a failure at the 3rd left 2 behind
    (and a traceback), though the output never said any were added. Found by an audit."""
    from django.db import DatabaseError

    from pathways import demo

    real = demo.patient_save_case
    synthetic: list[str] = []

    def save(*args: Any, **kwargs: Any) -> Any:
        if kwargs["mrn"].startswith("SYN-"):
            synthetic.append(kwargs["mrn"])
            if len(synthetic) == 3:
                raise DatabaseError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(demo, "patient_save_case", save)
    with pytest.raises(CommandError, match="no synthetic patients were added: disk full"):
        call_command("seed_demo", "--patients", "5", "--results", "2", stdout=StringIO())
    assert not Patient.objects.filter(mrn__startswith="SYN-").exists()


def test_synthetic_patients_have_the_results_asked_for_or_it_is_refused() -> None:
    """--results 1000 ("ALP results per synthetic patient") silently gave at most one a day of
    a random 180-900 day span (here 270), and said nothing. Found by an audit."""
    call_command("seed_demo", "--patients", "1", "--results", "1000", stdout=StringIO())
    patient = Patient.objects.get(mrn__startswith="SYN-")
    assert patient.lab_results.filter(test="alp").count() == 1000
    with pytest.raises(CommandError, match="--results: at most 3650 per patient, not 3651"):
        call_command("seed_demo", "--patients", "1", "--results", "3651", stdout=StringIO())
    assert Patient.objects.filter(mrn__startswith="SYN-").count() == 1


CHECK = """
from django.contrib.auth.models import User
from pathways.twofactor import CodeForm
user = User.objects.get(username="editor")
form = CodeForm(user, None, data={"otp_token": CODE})
print("VERIFIED" if form.is_valid() else "REFUSED")
"""


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.own_database
def test_make_run_demo_recovery_codes_work_in_the_server_it_starts(tmp_path: Path) -> None:
    """`make run` runs `seed_demo` and then the server as separate processes, both with
    DJANGO_DEBUG=1 and no DJANGO_SECRET_KEY (README: "paste one of the three recovery codes
    printed under their login"). Each process drew its own throwaway key, so the codes
    seed_demo kept as digests never matched in the server. Found by a review."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "ALPCARE_"))}
    env.update(DJANGO_DEBUG="1", DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}")
    assert _manage(env, "migrate", "--no-input", "-v0").returncode == 0
    seeded = _manage(env, "seed_demo")
    assert seeded.returncode == 0, seeded.stderr
    editor_line = seeded.stdout.split("username editor", 1)[1]
    code = re.search(r"recovery codes ([0-9a-z]{8})", editor_line).group(1)  # type: ignore[union-attr]
    # A later process (the web server `make run` starts next), as a request would verify it.
    checked = _manage(env, "shell", "-c", f"CODE = {code!r}\n{CHECK}")
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip().splitlines()[-1] == "VERIFIED"
