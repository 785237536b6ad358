"""What an audit of sign-in and clinic scoping found: a stored impact preview named patients
of a clinic its requester had left, and the admin showed users' second-factor secrets."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from pathways import publishing
from pathways.models import Clinic, ImpactPreview, Membership, Parameter
from tests.conftest import rule_editor
from tests.factories import paget_on_alendronate_document, stored_patient

pytestmark = pytest.mark.django_db


def test_a_stored_impact_preview_stops_naming_a_clinics_patients_once_membership_is_removed(
    north_clinic: Clinic, alice: User
) -> None:
    """Users see only their own clinics' patients. The stored preview kept the MRNs and names
    of the clinics the editor belonged to when it ran, and showed them to the requester for
    ever; it now asks to be run again."""
    editor = rule_editor("rui", clinic=north_clinic)
    draft = publishing.ruleset_start_draft(user=editor)
    document = paget_on_alendronate_document()
    document["labs"][-1]["value"] = 1100
    stored_patient(north_clinic, alice, document, mrn="N-777", name="Patient Nadia")
    Parameter.objects.filter(rule_set=draft, name="extreme_alp").update(value=1200)

    client = Client()
    client.force_login(editor)
    response = client.post(f"/admin/pathways/ruleset/{draft.pk}/preview/")
    assert response.status_code == 302
    assert ImpactPreview.objects.count() == 1
    assert "N-777" in client.get(response["Location"]).content.decode()  # while a member

    Membership.objects.filter(user=editor, clinic=north_clinic).delete()
    again = client.get(response["Location"], follow=True)
    body = again.content.decode()
    assert "N-777" not in body and "Patient Nadia" not in body
    assert "names patients of a clinic you are no longer in: run it again" in body


def test_the_admin_never_shows_a_users_two_factor_secrets(north_clinic: Clinic) -> None:
    """Recovery codes are shown once, at enrolment; the admin's part is to delete a lost
    device. The admin showed each user's TOTP key, its otpauth URI (a QR code) and the unused
    recovery codes to anyone who could view devices: whoever read them had that user's second
    factor."""
    from django_otp.plugins.otp_static.models import StaticDevice
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from pathways.twofactor import authenticator_confirm, authenticator_start

    victim = rule_editor("pat", publisher=True, clinic=north_clinic)
    device = authenticator_start(user=victim)
    codes = authenticator_confirm(user=victim, device=device)
    client = Client()
    client.force_login(User.objects.create_superuser("root"))
    change = client.get(f"/admin/otp_totp/totpdevice/{device.pk}/change/")
    assert change.status_code == 200 and device.key not in change.content.decode()
    assert client.get(f"/admin/otp_totp/totpdevice/{device.pk}/config/").status_code == 403
    static = StaticDevice.objects.get(user=victim)
    page = client.get(f"/admin/otp_static/staticdevice/{static.pk}/change/").content.decode()
    assert not any(code in page for code in codes)
    delete = client.post(f"/admin/otp_totp/totpdevice/{device.pk}/delete/", {"post": "yes"})
    assert delete.status_code == 302
    assert not TOTPDevice.objects.filter(user=victim).exists()


def test_view_only_staff_cannot_start_an_impact_preview(north_clinic: Clinic) -> None:
    """A preview is a background assessment of every patient: view-only staff could start one
    with a POST. The page no longer offers it to them and the POST is refused."""
    from django.contrib.auth.models import Permission

    editor = rule_editor("rui", clinic=north_clinic)
    draft = publishing.ruleset_start_draft(user=editor)
    viewer = User.objects.create_user("vera")
    viewer.is_staff = True
    viewer.save()
    Membership.objects.create(user=viewer, clinic=north_clinic)
    viewer.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="pathways", codename__startswith="view_")
    )
    client = Client()
    client.force_login(viewer)
    url = f"/admin/pathways/ruleset/{draft.pk}/preview/"
    page = client.get(url)
    assert page.status_code == 200 and 'id="run-preview"' not in page.content.decode()
    assert client.post(url).status_code == 403
    assert not ImpactPreview.objects.exists()
    editing = Client()
    editing.force_login(editor)
    assert 'id="run-preview"' in editing.get(url).content.decode()
