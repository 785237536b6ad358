"""Shared fixtures: two clinics, a few named users whose role is obvious."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User

from pathways import engine, rules
from pathways.models import Clinic, Membership
from pathways.tuning import rule_editor_grant


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


@pytest.fixture(autouse=True)
def _reassess_synchronously(settings: Any) -> None:
    """Tests see the effect of a publication at once (production does it in the background)."""
    settings.ALPCARE_REASSESS_IN_BACKGROUND = False


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
    rules._published_cache.clear()
    yield
    rules._published_cache.clear()
    # Drafts compile under new labels: leave the engine's bounded cache as the next test expects.
    engine.clear_cache()
