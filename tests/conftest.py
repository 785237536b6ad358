"""Shared fixtures: two clinics, a few named users whose role is obvious."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from pathways.models import Clinic, Membership


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
