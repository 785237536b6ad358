"""/healthz (the process answers) and /readyz (database reachable, migrations applied)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db.migrations.recorder import MigrationRecorder

from pathways import health

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _forget_applied_migrations() -> Iterator[None]:
    health._migrations_applied = False
    yield
    health._migrations_applied = False


def test_healthz_answers_anyone_with_an_empty_body(client: Any) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.content == b""
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]


@pytest.mark.django_db
def test_readyz_is_200_with_an_empty_body_when_the_database_is_ready(client: Any) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.content == b""


@pytest.mark.django_db
def test_readyz_is_503_while_a_migration_is_pending(client: Any) -> None:
    latest = MigrationRecorder.Migration.objects.filter(app="pathways").order_by("-id").first()
    assert latest is not None
    latest.delete()  # as if the new code were deployed before `migrate` ran
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.content == b""


def test_the_probes_refuse_writes(client: Any) -> None:
    assert client.post("/healthz").status_code == 405
    assert client.post("/readyz").status_code == 405


@pytest.mark.django_db
def test_the_probes_answer_plain_http_behind_an_https_redirect(client: Any, settings: Any) -> None:
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/patients/").status_code == 301
    assert client.get("/readyz").status_code == 200
    assert client.get("/healthz").status_code == 200


_PROBE = """
import django, sys
from django.test.utils import setup_test_environment
django.setup()
setup_test_environment()
from django.test import Client
client = Client()
print(client.get("/healthz").status_code, client.get("/readyz").status_code)
"""


def _probe(database_url: str) -> tuple[int, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(
        DJANGO_DEBUG="1", DJANGO_SETTINGS_MODULE="alpcare.settings", DATABASE_URL=database_url
    )
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    healthz, readyz = result.stdout.split()
    return int(healthz), int(readyz)


def test_readyz_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    # A SQLite file in a directory that does not exist cannot be opened; nothing listens on
    # port 1 for PostgreSQL.
    assert _probe(f"sqlite:///{tmp_path / 'missing' / 'db.sqlite3'}") == (200, 503)
    assert _probe("postgres://postgres@127.0.0.1:1/alpcare") == (200, 503)


def test_readyz_is_503_on_a_database_never_migrated(tmp_path: Path) -> None:
    assert _probe(f"sqlite:///{tmp_path / 'fresh.sqlite3'}") == (200, 503)
