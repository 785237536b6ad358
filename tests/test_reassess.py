"""Re-assessment after a rule-set change: in the background in production, at once in tests."""

from __future__ import annotations

import threading
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from pathways import services
from pathways.models import AssessmentSnapshot
from tests.factories import stored_patient

pytestmark = pytest.mark.django_db


def test_in_production_it_runs_in_a_background_thread_after_commit(
    settings: Any, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    settings.ALPCARE_REASSESS_IN_BACKGROUND = True
    ran_in: list[str] = []
    done = threading.Event()

    def fake_reassess() -> int:
        ran_in.append(threading.current_thread().name)
        done.set()
        return 0

    monkeypatch.setattr(services, "patients_reassess", fake_reassess)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.patients_reassess_after_commit()
    assert ran_in == []  # nothing before the commit
    for callback in callbacks:
        callback()
    assert done.wait(5)
    assert ran_in == ["alpcare-reassess"]


def test_the_daily_command_refreshes_every_snapshot(north_clinic: Any, alice: Any) -> None:
    patient = stored_patient(north_clinic, alice)
    AssessmentSnapshot.objects.filter(patient=patient).delete()
    out = StringIO()
    call_command("reassess", stdout=out)
    assert "Re-assessed 1 patients" in out.getvalue()
    assert AssessmentSnapshot.objects.get(patient=patient).rule_set_version
