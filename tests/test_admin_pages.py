"""The admin pages as a clinic's staff member uses them: a feed's service user, the list
filters, a match in the unmatched inbox that cannot be applied, and deleting a user."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from pathways import feed, publishing
from pathways.feed_models import Hl7Feed, Hl7Message, Hl7Result
from pathways.models import Clinic, Membership, Patient
from pathways.services import patient_set_responsible
from tests.factories import stored_patient

pytestmark = pytest.mark.django_db


def _staff(username: str, *clinics: Clinic) -> User:
    user = User.objects.create_user(username, password="correct horse battery staple")
    user.is_staff = True
    user.save()
    for clinic in clinics:
        Membership.objects.create(user=user, clinic=clinic)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="pathways"))
    return User.objects.get(pk=user.pk)


def test_a_feed_s_service_user_is_a_member_of_its_clinic(
    client: Any, north_clinic: Clinic, alice: User, bob: User
) -> None:
    """The service user is recorded as the author of every result the feed stores: another
    clinic's clinician was offered and saved."""
    client.force_login(_staff("nora", north_clinic))
    form = client.get("/admin/pathways/hl7feed/add/").content.decode()
    assert f'<option value="{alice.pk}">alice</option>' in form
    assert f'<option value="{bob.pk}">' not in form
    fields = {"sending_facility": "NORTHLAB", "clinic": north_clinic.pk, "enabled": "on"}
    refused = client.post("/admin/pathways/hl7feed/add/", {**fields, "service_user": bob.pk})
    assert refused.status_code == 200 and not Hl7Feed.objects.exists()
    saved = client.post("/admin/pathways/hl7feed/add/", {**fields, "service_user": alice.pk})
    assert saved.status_code == 302
    assert Hl7Feed.objects.get().service_user == alice


def test_a_superuser_is_told_when_the_service_user_is_not_of_the_feed_s_clinic(
    client: Any, north_clinic: Clinic, bob: User
) -> None:
    client.force_login(User.objects.create_superuser("root", password="x" * 16))
    response = client.post("/admin/pathways/hl7feed/add/", {
        "sending_facility": "NORTHLAB", "clinic": north_clinic.pk, "service_user": bob.pk,
        "enabled": "on",
    })  # fmt: skip
    assert "bob is not a member of North Haematology" in response.content.decode()
    assert not Hl7Feed.objects.exists()


@pytest.mark.parametrize(
    "model_name", ["patient", "membership", "cdsclient", "hl7feed", "hl7localcode", "hl7result"]
)
def test_list_filters_name_only_the_staff_member_s_clinics(
    client: Any, north_clinic: Clinic, south_clinic: Clinic, alice: User, bob: User,
    model_name: str,
) -> None:  # fmt: skip
    stored_patient(north_clinic, alice)
    stored_patient(south_clinic, bob, mrn="S1", name="Southern")
    client.force_login(_staff("nora", north_clinic))
    response = client.get(f"/admin/pathways/{model_name}/")
    assert response.status_code == 200
    assert "South Endocrinology" not in response.content.decode()


def _unmatched(clinic: Clinic) -> Hl7Result:
    message = Hl7Message.objects.create(
        control_id="C1", sending_facility="LAB", clinic=clinic, raw="MSH|", received_via="test"
    )
    return Hl7Result.objects.create(
        message=message, clinic=clinic, mrn="NOPE", code="ALKP", status="F",
        collected_at=timezone.now(), state=Hl7Result.State.UNMATCHED, value="120", unit="U/L",
        reason="no patient with this MRN",
    )  # fmt: skip


def test_an_inbox_match_to_another_clinic_s_patient_is_refused_on_the_form(
    client: Any, north_clinic: Clinic, south_clinic: Clinic, bob: User
) -> None:
    """It was refused, then said "changed successfully" and logged as a change."""
    result = _unmatched(north_clinic)
    southern = stored_patient(south_clinic, bob, mrn="S1", name="Southern")
    client.force_login(_staff("nora", north_clinic, south_clinic))
    response = client.post(
        f"/admin/pathways/hl7result/{result.pk}/change/",
        {"patient": southern.pk, "test": "alp", "unit_matched": "U/L"},
    )
    assert response.status_code == 200
    assert "Not a patient of this result&#x27;s clinic." in response.content.decode()
    result.refresh_from_db()
    assert (result.state, result.patient_id) == (Hl7Result.State.UNMATCHED, None)
    assert not LogEntry.objects.filter(object_id=str(result.pk)).exists()


def test_a_match_refused_under_lock_is_said_and_not_logged_as_a_change(
    client: Any, north_clinic: Clinic, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another user applied or dismissed the result between the form's check and the save."""
    result = _unmatched(north_clinic)
    patient = stored_patient(north_clinic, alice)

    def taken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("this result is no longer in the inbox")

    monkeypatch.setattr(feed, "inbox_match", taken)
    client.force_login(_staff("nora", north_clinic))
    response = client.post(
        f"/admin/pathways/hl7result/{result.pk}/change/",
        {"patient": patient.pk, "test": "alp", "unit_matched": "U/L"},
        follow=True,
    )
    shown = [str(message) for message in response.context["messages"]]
    assert shown == ["this result is no longer in the inbox"]
    assert not LogEntry.objects.filter(object_id=str(result.pk)).exists()


def test_a_user_who_looks_after_patients_is_not_deleted(
    admin_client: Any, alice: User, north_clinic: Clinic
) -> None:
    """Deleting the user unassigned their patients by the database's SET NULL, a bulk update
    with no history row ("Only my patients" changed without a trace)."""
    carol = User.objects.create_user("carol")
    Membership.objects.create(user=carol, clinic=north_clinic)
    patient = stored_patient(north_clinic, alice, mrn="N200")
    patient_set_responsible(patient=patient, responsible_id=carol.pk)
    response = admin_client.post(f"/admin/auth/user/{carol.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403  # accounts are deactivated, never deleted (below)
    assert User.objects.filter(pk=carol.pk).exists()
    assert Patient.objects.get(pk=patient.pk).responsible == carol


def test_an_account_is_deactivated_never_deleted(
    admin_client: Any, editor: User, publisher: User
) -> None:
    """Deleting a rule editor's account (no patient read, so nothing protected it) cleared by
    the database's SET NULL who published the rule set in force, the publication's author and
    every history row's author, with no record of it. Found by an audit."""
    draft = publishing.ruleset_start_draft(user=editor)
    publishing.ruleset_submit(rule_set=draft, user=editor, rationale="tuning")
    published = publishing.ruleset_publish(
        rule_set=draft, user=publisher, note="ok", reassess=False
    )
    page = admin_client.get(f"/admin/auth/user/{publisher.pk}/change/").content.decode()
    assert f"/admin/auth/user/{publisher.pk}/delete/" not in page
    listing = admin_client.get("/admin/auth/user/").content.decode()
    assert 'value="delete_selected"' not in listing
    response = admin_client.post(f"/admin/auth/user/{publisher.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    published.refresh_from_db()
    assert published.published_by == publisher
