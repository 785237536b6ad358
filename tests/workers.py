"""Real `manage.py db_worker` and `manage.py scheduler` processes against the test database
(PostgreSQL, or a file-backed SQLite database: an in-memory one is not shared)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def database_url_for_workers() -> str:
    """The URL of the database the tests run against, for a child process."""
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        user = db["USER"] or "postgres"
        password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
        host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
        return f"postgres://{user}{password}@{host}/{db['NAME']}"
    name = str(db["NAME"])
    if connection.vendor != "sqlite" or name == ":memory:" or "mode=memory" in name:
        raise RuntimeError("a worker process needs PostgreSQL or a file-backed SQLite database")
    return f"sqlite:///{name}"


def start(command: str, *args: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    environment = {
        **os.environ,
        "DJANGO_DEBUG": "1",
        "DATABASE_URL": database_url_for_workers(),
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "manage.py", command, *args],
            cwd=ROOT,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def start_worker(name: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    return start(
        "db_worker",
        "--no-reload",
        "--no-startup-delay",
        "--interval",
        "0.2",
        "--worker-id",
        name,
        log=log,
        **env,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for(condition: Callable[[], Any], *, timeout: float, what: str) -> float:
    """Poll until ``condition()`` is true; the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - started
