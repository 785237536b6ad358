"""Writes that race, on PostgreSQL (its READ COMMITTED row locks; SQLite serialises writers
before either reads): the second of two at once must see what the first wrote. Each test holds
the first write's transaction open in the main thread while the second starts in another."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.test import Client
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from pathways import feed
from pathways.feed_models import Hl7Feed, Hl7Message, Hl7Result
from pathways.models import ApiToken, Clinic, LabResult, Membership, RuleSet
from pathways.rules import install_catalogue
from pathways.twofactor import CodeForm, recovery_code_digest, recovery_codes_regenerate
from tests.factories import form_as_shown, stored_patient
from tests.test_hl7_feed import oru

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="row-lock races: PostgreSQL's READ COMMITTED"
    ),
    pytest.mark.django_db(transaction=True),
]


def race(first: Callable[[], Any], second: Callable[[], Any]) -> tuple[Any, Any]:
    """``first`` in the main thread's open transaction, ``second`` started meanwhile (it waits
    for what ``first`` locked): both results; an error in ``second`` fails the test."""
    results: list[Any] = []
    failures: list[str] = []

    def run() -> None:
        try:
            results.append(second())
        except Exception as error:  # reported below
            failures.append(f"{type(error).__name__}: {error}")
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    with transaction.atomic():
        done = first()
        thread.start()
        time.sleep(1)
    thread.join(timeout=30)
    assert not thread.is_alive() and failures == [], failures
    return done, results[0]


@pytest.mark.parametrize("existing", [False, True], ids=["first codes", "new codes"])
def test_two_recovery_code_regenerations_at_once_leave_only_the_last_codes(
    existing: bool,
) -> None:
    """A double click on "new recovery codes" left two sets working (or two recovery devices,
    the second never read at log-in). Found by an audit."""
    user = User.objects.create_user("dora", password="correct horse battery staple")
    TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)
    if existing:
        recovery_codes_regenerate(user=user)
    _, last = race(
        lambda: recovery_codes_regenerate(user=user), lambda: recovery_codes_regenerate(user=user)
    )
    assert StaticDevice.objects.filter(user=user).count() == 1
    stored = StaticToken.objects.filter(device__user=user).values_list("token", flat=True)
    assert sorted(stored) == sorted(recovery_code_digest(user.pk, code) for code in last)
    assert CodeForm(user, data={"otp_token": last[0]}).is_valid()


def test_a_token_revoked_while_an_admin_saves_it_stays_revoked() -> None:
    """A superuser's admin page, opened before the owner revoked the token, saved it live
    again ("revoked" unticked on that page). Found by an audit."""
    root = User.objects.create_superuser("root", password="correct horse battery staple")
    owner = User.objects.create_user("olga", password="correct horse battery staple")
    token, _ = ApiToken.issue(user=owner, name="EHR", scopes=["read"])
    admin, mine = Client(), Client()
    admin.force_login(root)
    mine.force_login(owner)
    url = f"/admin/pathways/apitoken/{token.pk}/change/"
    data = {**form_as_shown(admin, url), "name": ["EHR integration"]}
    revoke = f"/account/api-tokens/{token.pk}/revoke/"
    _, saved = race(lambda: mine.post(revoke), lambda: admin.post(url, data).status_code)
    assert saved == 302
    token.refresh_from_db()
    assert token.revoked and token.name == "EHR integration"


def _north_feed() -> Clinic:
    """A clinic with its clinician alice and the lab feed NORTHLAB (tests/test_hl7_feed.py)."""
    if not RuleSet.objects.filter(is_current=True).exists():  # flushed by transaction=True
        install_catalogue(version="2026-11-29.1")
    clinic = Clinic.objects.create(name="North Haematology", slug="north")
    alice = User.objects.create_user("alice", password="correct horse battery staple")
    Membership.objects.create(user=alice, clinic=clinic, role="clinician")
    Hl7Feed.objects.create(
        sending_facility="NORTHLAB",
        clinic=clinic,
        service_user=User.objects.create_user("northlab-feed"),
        assigning_authority="NORTHHOSP",
    )
    return clinic


def test_the_same_hl7_message_on_two_connections_at_once_is_stored_once_and_counted() -> None:
    """The copy that lost the race to insert the message row was not counted as a resend.
    Found by an audit."""
    clinic = _north_feed()
    patient = stored_patient(clinic, User.objects.get(username="alice"), mrn="N100")
    first, second = race(
        lambda: feed.receive(oru("R2"), via="mllp"), lambda: feed.receive(oru("R2"), via="mllp")
    )
    assert (first.code, second.code, second.duplicate) == ("AA", "AA", True)
    assert Hl7Result.objects.count() == 1
    assert LabResult.objects.filter(patient=patient, collected_on=date(2026, 11, 1)).count() == 1
    assert Hl7Message.objects.get().resent == 1


def test_a_refused_copy_racing_the_applied_one_leaves_its_record() -> None:
    """A copy of a message with the same MSH-10, refused (here: processing ID T), arriving while
    the good copy was being applied overwrote the applied record with its refusal (it read the
    row without a lock, then inserted over it), so a later resend was applied again. Found by
    an audit."""
    clinic = _north_feed()
    patient = stored_patient(clinic, User.objects.get(username="alice"), mrn="N100")
    good = oru("RACE1")
    refused_copy = good.replace("|RACE1|P|", "|RACE1|T|")
    first, second = race(
        lambda: feed.receive(good, via="mllp"), lambda: feed.receive(refused_copy, via="api")
    )
    assert (first.code, second.code) == ("AA", "AR")
    row = Hl7Message.objects.get(control_id="RACE1")
    assert (row.status, row.raw, row.resent) == (Hl7Message.Status.APPLIED, good, 1)
    assert feed.receive(good, via="mllp").duplicate
    assert LabResult.objects.filter(patient=patient, collected_on=date(2026, 11, 1)).count() == 1


def test_two_imports_of_one_new_patient_at_once_store_one_and_answer_the_other_409() -> None:
    """The import that loses the race for a new MRN is refused as a conflict (409: the same
    Bundle sent again applies), not as an invalid Bundle (400). Found by an audit."""
    from pathways import fhir
    from tests import fhir_bundles

    clinic = _north_feed()
    alice = User.objects.get(username="alice")
    key = ApiToken.issue(user=alice, name="ehr", scopes=["write"])[1]
    bundle = fhir_bundles.paget_bundle(mrn="F-RACE")

    def over_the_api() -> Any:
        return Client().post(
            "/api/v1/fhir",
            bundle,
            content_type="application/fhir+json",
            HTTP_AUTHORIZATION=f"Token {key}",
        )

    first, second = race(
        lambda: fhir.import_bundle(bundle, clinic=clinic, user=alice, path="/api/v1/fhir"),
        over_the_api,
    )
    assert first.created
    assert second.status_code == 409, second.content
    assert second.json()["issue"][0]["code"] == "conflict"
    assert clinic.patients.filter(mrn="F-RACE").count() == 1
