"""Admin change history: read-only for everyone, and only for objects the user may see.

django-simple-history's history form saved a POST with only the view permission, and its history
list and form fell back to the history table for objects outside the user's clinics.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db.models import Model

from pathways import engine
from pathways.card_actions import card_action_record
from pathways.cases import patient_to_case
from pathways.models import (
    Clinic,
    FollowUp,
    LabResult,
    Membership,
    Patient,
    Rule,
    RuleSet,
    Therapy,
)
from pathways.publishing import ruleset_start_draft
from pathways.rules import current_rule_set
from pathways.services import history_user
from tests.factories import stored_patient


def _view_only_staff(username: str, clinic: Clinic) -> User:
    """Staff with the view permission on every alpcare model and nothing else."""
    user = User.objects.create_user(username, password="correct horse battery staple")
    user.is_staff = True
    user.save()
    Membership.objects.create(user=user, clinic=clinic)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="pathways", codename__startswith="view_")
    )
    return User.objects.get(pk=user.pk)


@pytest.fixture
def north_patient(north_clinic: Clinic, alice: User) -> Patient:
    return stored_patient(north_clinic, alice, mrn="NORTH-412", name="Margaret Ellis")


@pytest.fixture
def north_viewer(north_clinic: Clinic) -> User:
    return _view_only_staff("nora", north_clinic)


@pytest.fixture
def south_viewer(south_clinic: Clinic) -> User:
    return _view_only_staff("sam", south_clinic)


def _objects(patient: Patient) -> dict[str, Model]:
    """One object of every clinic-bound model, all belonging to ``patient``'s clinic."""
    follow_up = FollowUp.objects.filter(patient=patient).first()
    assert follow_up is not None
    return {
        "patient": patient,
        "labresult": LabResult.objects.filter(patient=patient).first(),  # type: ignore[dict-item]
        "therapy": Therapy.objects.filter(patient=patient).first(),  # type: ignore[dict-item]
        "followup": follow_up,
        "clinic": patient.clinic,
        "membership": Membership.objects.filter(clinic=patient.clinic).first(),  # type: ignore[dict-item]
    }


CLINIC_BOUND = ["patient", "labresult", "therapy", "followup", "clinic", "membership"]


def _history_urls(model_name: str, obj: Model) -> tuple[str, str]:
    record = obj.history.latest("history_date")  # type: ignore[attr-defined]
    base = f"/admin/pathways/{model_name}/{obj.pk}/history/"
    return base, f"{base}{record.history_id}/"


def _tampering(model_name: str, obj: Model, south: Clinic) -> dict[str, Any]:
    """The POST the security test sent: every field of the form, one of them changed."""
    changes: dict[str, dict[str, Any]] = {
        "patient": {"name": "Renamed", "clinic": south.pk},
        "labresult": {"value": "9999"},
        "therapy": {"agent": "denosumab"},
        "followup": {"code": "tampered"},
        "clinic": {"name": "Renamed clinic"},
        "membership": {"clinic": south.pk},
    }
    data: dict[str, Any] = {}
    for field in obj._meta.fields:
        if field.editable and not field.auto_created:
            value = field.value_from_object(obj)
            data[field.name] = "" if value is None else value
    data.update(changes[model_name])
    return data


def _snapshot(obj: Model) -> dict[str, Any]:
    fresh = type(obj)._default_manager.get(pk=obj.pk)
    return {field.name: field.value_from_object(fresh) for field in obj._meta.fields}


@pytest.mark.django_db
@pytest.mark.parametrize("model_name", CLINIC_BOUND)
def test_view_only_staff_cannot_change_a_record_through_its_history_form(
    client: Any, north_patient: Patient, north_viewer: User, south_clinic: Clinic, model_name: str
) -> None:
    obj = _objects(north_patient)[model_name]
    before = _snapshot(obj)
    rows_before = obj.history.count()  # type: ignore[attr-defined]
    _, form_url = _history_urls(model_name, obj)
    client.force_login(north_viewer)

    response = client.post(form_url, _tampering(model_name, obj, south_clinic))

    assert response.status_code == 403
    assert _snapshot(obj) == before
    assert obj.history.count() == rows_before  # type: ignore[attr-defined]


@pytest.mark.django_db
@pytest.mark.parametrize("model_name", CLINIC_BOUND)
def test_even_a_superuser_cannot_revert_from_the_history_form(
    client: Any, north_patient: Patient, south_clinic: Clinic, model_name: str
) -> None:
    obj = _objects(north_patient)[model_name]
    before = _snapshot(obj)
    _, form_url = _history_urls(model_name, obj)
    client.force_login(User.objects.create_superuser("root", password="x" * 16))

    response = client.post(form_url, _tampering(model_name, obj, south_clinic))

    assert response.status_code == 403
    assert _snapshot(obj) == before


@pytest.mark.django_db
@pytest.mark.parametrize("model_name", CLINIC_BOUND)
def test_the_history_form_shows_values_not_inputs(
    client: Any, north_patient: Patient, north_viewer: User, south_clinic: Clinic, model_name: str
) -> None:
    stored_patient(south_clinic, north_viewer, mrn="SOUTH-9", name="Southern Patient")
    obj = _objects(north_patient)[model_name]
    list_url, form_url = _history_urls(model_name, obj)
    client.force_login(north_viewer)

    assert client.get(list_url).status_code == 200
    page = client.get(form_url)

    assert page.status_code == 200
    html = page.content.decode()
    assert "<select" not in html  # no drop-down of patients or clinics
    assert 'name="_change_history"' not in html  # no Revert button
    assert "SOUTH-9" not in html and "South Endocrinology" not in html


@pytest.mark.django_db
@pytest.mark.parametrize("model_name", CLINIC_BOUND)
def test_another_clinics_history_is_not_found(
    client: Any, north_patient: Patient, south_viewer: User, model_name: str
) -> None:
    obj = _objects(north_patient)[model_name]
    list_url, form_url = _history_urls(model_name, obj)
    client.force_login(south_viewer)

    for url in (list_url, form_url):
        response = client.get(url)
        assert response.status_code == 404, url
        assert "NORTH-412" not in response.content.decode()
        assert client.post(url).status_code in (403, 404, 405)


@pytest.mark.django_db
def test_a_deleted_records_history_stays_within_its_clinic(
    client: Any, north_patient: Patient, north_viewer: User, south_viewer: User
) -> None:
    lab = LabResult.objects.filter(patient=north_patient).first()
    assert lab is not None
    list_url, _ = _history_urls("labresult", lab)
    lab.delete()

    client.force_login(south_viewer)
    assert client.get(list_url).status_code == 404
    client.force_login(north_viewer)
    assert client.get(list_url).status_code == 200


@pytest.mark.django_db
def test_history_ids_that_are_not_numbers_are_not_found(
    client: Any, north_patient: Patient, north_viewer: User
) -> None:
    client.force_login(north_viewer)
    assert client.get(f"/admin/pathways/patient/{north_patient.pk}/history/x/").status_code == 404
    assert client.get("/admin/pathways/patient/x/history/").status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("model", [Rule, RuleSet])
def test_rule_history_is_read_only_too(
    client: Any, north_viewer: User, editor: User, model: Any
) -> None:
    draft = ruleset_start_draft(user=editor)  # a draft's rows are written with history
    obj: Any = draft if model is RuleSet else draft.rules.order_by("pk").first()
    before = _snapshot(obj)
    _, form_url = _history_urls(model._meta.model_name, obj)
    client.force_login(north_viewer)

    assert client.get(form_url).status_code == 200
    assert client.post(form_url, {"title": "Changed", "note": "Changed"}).status_code == 403
    assert _snapshot(obj) == before


@pytest.mark.django_db
def test_membership_choices_stay_within_the_staff_members_clinics(
    client: Any, north_viewer: User, south_clinic: Clinic, bob: User
) -> None:
    north_viewer.user_permissions.add(Permission.objects.get(codename="add_membership"))
    client.force_login(north_viewer)

    page = client.get("/admin/pathways/membership/add/").content.decode()

    assert "North Haematology" in page
    assert "South Endocrinology" not in page
    assert ">bob<" not in page  # a colleague of another clinic is not offered
    response = client.post(
        "/admin/pathways/membership/add/",
        {"user": north_viewer.pk, "clinic": south_clinic.pk, "role": "clinician"},
    )
    assert response.status_code == 200  # the form re-renders with an error
    assert not Membership.objects.filter(user=north_viewer, clinic=south_clinic).exists()


def test_a_card_actions_history_is_shown_in_the_admin(
    admin_client: Any, north_clinic: Clinic, alice: User
) -> None:
    """Card actions keep their history (an override, its undo, by whom), but had no admin:
    no page showed it. Found by an audit."""
    patient = stored_patient(north_clinic, alice)
    rule_set = current_rule_set()
    result = engine.assess(patient_to_case(patient), rule_set)
    with history_user(alice):
        action = card_action_record(
            patient=patient, user=alice, code=result.recommendations[0].code,
            kind="acknowledge", rule_set=rule_set, result=result,
        )  # fmt: skip
    page = admin_client.get(f"/admin/pathways/cardaction/{action.pk}/history/")
    assert page.status_code == 200 and "alice" in page.content.decode()
