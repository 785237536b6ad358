"""Shared fixtures: two clinics, a few named users whose role is obvious."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django_tasks.signals import task_enqueued
from django_tasks_db.backend import DatabaseBackend

from pathways import rules
from pathways.models import Clinic, Membership
from pathways.publishing import rule_editor_grant
from tests.taskqueue import run_when_enqueued


@pytest.fixture
def north_clinic(db: Any) -> Clinic:
    return Clinic.objects.create(name="North Haematology", slug="north")


@pytest.fixture
def south_clinic(db: Any) -> Clinic:
    return Clinic.objects.create(name="South Endocrinology", slug="south")


def _member(username: str, clinic: Clinic, role: str = Membership.Role.CLINICIAN) -> User:
    user = User.objects.create_user(username, password="correct horse battery staple")
    Membership.objects.create(user=user, clinic=clinic, role=role)
    return user


@pytest.fixture
def alice(north_clinic: Clinic) -> User:
    """A clinician at the north clinic."""
    return _member("alice", north_clinic)


@pytest.fixture
def bob(south_clinic: Clinic) -> User:
    """A clinician at the south clinic: must never see north's patients."""
    return _member("bob", south_clinic)


@pytest.fixture
def alice_client(client: Any, alice: User) -> Any:
    client.force_login(alice)
    return client


# The fixtures through which a test reaches the test database (their dependants included).
DATABASE_FIXTURES = frozenset(
    {
        "db",
        "transactional_db",
        "live_server",
        "django_db_reset_sequences",
        "django_db_serialized_rollback",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """ALPCARE_DATABASE_TESTS_ONLY=1 (.ci/run's second run, on PostgreSQL): only the tests that
    use the test database. The others ran in the first run, and would run the same: a test
    that asks for no database is refused any query (pytest-django), and one marked
    own_database makes its own SQLite database in a subprocess, whatever DATABASE_URL says."""
    if os.environ.get("ALPCARE_DATABASE_TESTS_ONLY") != "1":
        return
    kept: list[pytest.Item] = []
    left_out: list[pytest.Item] = []
    for item in items:
        uses = item.get_closest_marker("django_db") or DATABASE_FIXTURES & set(
            getattr(item, "fixturenames", ())
        )
        own = item.get_closest_marker("own_database")
        (kept if uses and not own else left_out).append(item)
    config.hook.pytest_deselected(items=left_out)
    items[:] = kept


@pytest.fixture(scope="session", autouse=True)
def _flush_by_delete_on_postgresql() -> Iterator[None]:
    """A transactional test (the browser tests' live server, the race and crash tests) ends by
    emptying every table. Django does it with one TRUNCATE of all 70-odd tables, which takes
    PostgreSQL 0.5-2 s (new files for each table and index); DELETE of their few rows takes
    milliseconds. The foreign keys are checked at commit (Django makes them DEFERRABLE
    INITIALLY DEFERRED), so the order of the tables does not matter."""
    if connection.vendor != "postgresql":
        yield
        return
    operations = type(connection.ops)
    truncate = operations.sql_flush

    def sql_flush(
        self: Any, style: Any, tables: Any, *, reset_sequences: bool = False, **options: Any
    ) -> list[str]:
        if reset_sequences:
            return truncate(self, style, tables, reset_sequences=True, **options)
        return [f"DELETE FROM {self.quote_name(table)};" for table in tables]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(operations, "sql_flush", sql_flush)
        yield


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    """Passwords are hashed with MD5 in tests (Django's advice for test speed): PBKDF2 takes
    ~0.3 s per hash here, and most tests create users with a password or log in with one.
    The production hashers stay listed, so a hash made before the override still checks."""
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        *settings.PASSWORD_HASHERS,
    ]


@pytest.fixture(autouse=True)
def _tasks_run_when_enqueued(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests see a task's effect at once: each runs through the worker's code when enqueued
    (production runs it in `manage.py db_worker` once the enqueuing transaction commits).
    Tests marked ``queued_tasks`` leave tasks in the queue and run them themselves."""
    if request.node.get_closest_marker("queued_tasks"):
        yield
        return
    task_enqueued.connect(run_when_enqueued, sender=DatabaseBackend, dispatch_uid="pytest-tasks")
    yield
    task_enqueued.disconnect(sender=DatabaseBackend, dispatch_uid="pytest-tasks")


def rule_editor(username: str, *, publisher: bool = False, clinic: Clinic | None = None) -> User:
    """A staff rule editor (a publisher too when asked), member of ``clinic`` if given."""
    user = User.objects.create_user(username, password="correct horse battery staple")
    user.is_staff = True
    user.save()
    if clinic is not None:
        Membership.objects.create(user=user, clinic=clinic, role=Membership.Role.RULE_EDITOR)
    rule_editor_grant(user=user, publish=publisher)
    return User.objects.get(pk=user.pk)  # a fresh object: permissions are cached per instance


@pytest.fixture
def editor(db: Any) -> User:
    """Drafts rule changes; may not publish."""
    return rule_editor("rui")


@pytest.fixture
def publisher(db: Any) -> User:
    """May publish drafts that someone else edited last (four-eyes)."""
    return rule_editor("pat", publisher=True)


@pytest.fixture(autouse=True)
def _fresh_rule_set_cache() -> Iterator[None]:
    # Published sets are cached by primary key; SQLite reuses keys after a test's rollback.
    rules.clear_cache()
    yield
    rules.clear_cache()
