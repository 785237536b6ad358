"""Every URL requires login, and no user reaches another clinic's patients."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from pathways.models import FollowUp
from tests.factories import stored_patient

_PARAM = re.compile(r"<(?:(?P<converter>[a-z]+):)?(?P<name>\w+)>")


def _routes(patterns: list[Any], prefix: str = "") -> list[tuple[str, str | None]]:
    routes: list[tuple[str, str | None]] = []
    for pattern in patterns:
        route = prefix + str(pattern.pattern).lstrip("^").rstrip("$").replace("\\Z", "")
        if isinstance(pattern, URLResolver):
            routes += _routes(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            routes.append((route, pattern.name))
    return routes


def _all_routes() -> list[tuple[str, str | None]]:
    return _routes(get_resolver().url_patterns)


def _fill(route: str, values: dict[str, str]) -> str:
    return "/" + _PARAM.sub(lambda m: values.get(m.group("name"), "1"), route)


# Pages anyone may load: the login page itself, and the logout endpoint's redirect; the health
# probes, which load balancers call without a session and which answer with an empty body; the
# task queue's health for monitoring (counts only, no patient data: tests/test_reassess.py);
# the CDS Hooks discovery document, which EHRs read before they are trusted (it lists the
# services and their prefetch templates, no patient data: tests/test_cds_hooks.py). The CDS
# service calls and feedback are walked: without the EHR's JWT they are a 401.
PUBLIC = {"login", "healthz", "readyz", "healthz_queue", "cds_discovery"}


def test_the_walk_sees_every_part_of_the_site() -> None:
    names = {name for _, name in _all_routes()}
    assert {"dashboard", "patient_detail", "patient_case_preview", "login", "api_docs"} <= names
    # The worklist's actions and exports are walked like every other page.
    assert {
        "card_action",
        "follow_up_done",
        "follow_up_undo",
        "patient_follow_ups_ics",
        "worklist_csv",
        "rule_analytics",
        "patient_responsible",  # the responsible clinician (the worklist's "Only my patients")
    } <= names
    # The FHIR import and export are walked too (anonymous: 401; another clinic's token: 404).
    assert {"fhir_import", "fhir_patient", "fhir_everything"} <= names
    # The lab inbox's actions (match, dismiss with a note, put back).
    assert {"hl7_inbox", "hl7_inbox_match", "hl7_inbox_dismiss", "hl7_inbox_restore"} <= names
    assert any(route.startswith("admin/") for route, _ in _all_routes())
    assert any(route.startswith("api/v1/") for route, _ in _all_routes())


@pytest.mark.django_db
def test_anonymous_never_gets_a_200(client: Any, alice: Any, north_clinic: Any) -> None:
    patient = stored_patient(north_clinic, alice)
    follow_up = FollowUp.objects.filter(patient=patient).first()
    values = {
        "pk": str(patient.pk),
        "patient_pk": str(patient.pk),
        "follow_up_pk": str(follow_up.pk if follow_up else 1),
        "result_pk": str(patient.lab_results.first().pk),  # type: ignore[union-attr]
    }
    checked = 0
    for route, name in _all_routes():
        if name in PUBLIC:
            continue
        url = _fill(route, values)
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            assert response.status_code != 200, f"anonymous {method.upper()} {url} got 200"
            checked += 1
    assert checked > 50


@pytest.mark.django_db
def test_a_user_of_another_clinic_never_reaches_the_patient(
    client: Any, alice: Any, bob: Any, north_clinic: Any
) -> None:
    patient = stored_patient(north_clinic, alice)
    follow_up = FollowUp.objects.filter(patient=patient).first()
    assert follow_up is not None
    values = {
        "pk": str(patient.pk),
        "patient_pk": str(patient.pk),
        "follow_up_pk": str(follow_up.pk),
        "result_pk": str(patient.lab_results.first().pk),  # type: ignore[union-attr]
    }
    client.force_login(bob)
    reached = []
    for route, _name in _all_routes():
        if not _PARAM.search(route) or route.startswith("admin/"):
            continue
        url = _fill(route, values)
        for method in ("get", "post"):
            response = getattr(client, method)(url, HTTP_HX_REQUEST="true")
            if response.status_code not in (404, 405, 401):
                reached.append(f"{method.upper()} {url}: {response.status_code}")
            if response.status_code == 200:
                assert patient.mrn not in response.content.decode()
    assert reached == []
    # The owner does reach the same page (the walk is not passing because everything 404s).
    client.force_login(alice)
    assert client.get(f"/patients/{patient.pk}/").status_code == 200


@pytest.mark.django_db
def test_another_clinics_api_token_never_reaches_the_patient(
    client: Any, alice: Any, bob: Any, north_clinic: Any
) -> None:
    """Every API URL naming a patient, with a token of every scope of the other clinic."""
    from pathways.models import ApiToken

    patient = stored_patient(north_clinic, alice)
    values = {"pk": str(patient.pk)}
    bob_key = ApiToken.issue(user=bob, name="all", scopes=ApiToken.Scope.values)[1]
    alice_key = ApiToken.issue(user=alice, name="all", scopes=ApiToken.Scope.values)[1]
    walked = []
    for route, _name in _all_routes():
        if not route.startswith("api/v1/") or not _PARAM.search(route):
            continue
        url = _fill(route, values)
        for method in ("get", "post"):
            response = getattr(client, method)(url, HTTP_AUTHORIZATION=f"Token {bob_key}")
            assert response.status_code in (404, 405), f"{method.upper()} {url}"
            owner = getattr(client, method)(url, HTTP_AUTHORIZATION=f"Token {alice_key}")
            if owner.status_code == 200:
                walked.append(url)
    assert f"/api/v1/fhir/Patient/{patient.pk}/$everything" in walked
    assert f"/api/v1/fhir/Patient/{patient.pk}" in walked  # the import's Location


@pytest.mark.django_db
def test_staff_in_admin_see_only_their_clinics_patients(
    client: Any, alice: Any, bob: Any, north_clinic: Any
) -> None:
    from django.contrib.auth.models import Permission

    patient = stored_patient(north_clinic, alice, mrn="NORTH-77")
    bob.is_staff = True
    bob.save()
    bob.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_patient", "view_labresult"])
    )
    client.force_login(bob)
    listing = client.get("/admin/pathways/patient/")
    assert listing.status_code == 200
    assert "NORTH-77" not in listing.content.decode()
    assert client.get(f"/admin/pathways/patient/{patient.pk}/change/").status_code in (302, 404)


_REGEX_GROUP = re.compile(r"\(\[\^/\]\+\)")


def _north_lab_feed(clinic: Any, patient: Any) -> dict[str, Any]:
    """The north clinic's HL7 feed, a local code and a result received for the patient."""
    from django.contrib.auth.models import User

    from pathways import feed
    from pathways.feed_models import Hl7Feed, Hl7LocalCode, Hl7Result

    service = User.objects.create_user("northlab-feed")
    hl7feed = Hl7Feed.objects.create(
        sending_facility="NORTHLAB", clinic=clinic, service_user=service
    )
    code = Hl7LocalCode.objects.create(clinic=clinic, code="ALKP", test="alp")
    message = (
        "MSH|^~\\&|LIS|NORTHLAB|ALPCARE|NORTH|20261101090000||ORU^R01|WALK1|P|2.5.1\r"
        f"PID|1||{patient.mrn}^^^H^MR||Ellis^Margaret\r"
        "OBR|1||F1|X|||20261101081500\r"
        "OBX|1|NM|ALKP^ALP^L|1|300|U/L|40-129|H|||F\r"
    )
    assert feed.receive(message, via="test").code == "AA"
    return {"hl7feed": hl7feed, "hl7localcode": code, "hl7result": Hl7Result.objects.get()}


@pytest.mark.django_db
def test_view_only_staff_of_another_clinic_walk_the_admin_without_reaching_the_patient(
    client: Any, alice: Any, south_clinic: Any, north_clinic: Any
) -> None:
    """Every admin URL, history pages included, filled with the north patient's objects."""
    from django.contrib.auth.models import Permission, User

    from pathways.models import AccessLog, ApiToken, LabResult, Membership, Therapy

    patient = stored_patient(north_clinic, alice, mrn="NORTH-412", name="Margaret Ellis")
    objects: dict[str, Any] = {
        "patient": patient,
        "labresult": LabResult.objects.filter(patient=patient).first(),
        "therapy": Therapy.objects.filter(patient=patient).first(),
        "followup": FollowUp.objects.filter(patient=patient).first(),
        "clinic": north_clinic,
        "membership": Membership.objects.filter(clinic=north_clinic).first(),
        **_north_lab_feed(north_clinic, patient),
        # Models without change history: their admin has list, change and delete pages only.
        "accesslog": AccessLog.objects.create(user=alice, patient=patient, action="read", path="/"),
        "apitoken": ApiToken.issue(user=alice, name="north", scopes=["read"])[0],
    }
    staff = User.objects.create_user("sam", password="correct horse battery staple")
    staff.is_staff = True
    staff.save()
    Membership.objects.create(user=staff, clinic=south_clinic)
    staff.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="pathways", codename__startswith="view_")
    )
    client.force_login(staff)
    before = (patient.name, [lab.value for lab in LabResult.objects.filter(patient=patient)])

    walked = 0
    for route, _name in _all_routes():
        parts = route.split("/")
        if not route.startswith("admin/pathways/") or parts[2] not in objects:
            continue
        obj = objects[parts[2]]
        history = getattr(obj, "history", None)
        history_id = str(history.latest("history_date").history_id) if history else "1"
        url = _fill(route, {"object_id": str(obj.pk)})
        url = _REGEX_GROUP.sub(str(obj.pk), url, count=1)
        url = _REGEX_GROUP.sub(history_id, url, count=1)
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            walked += 1
            body = response.content.decode(errors="replace")
            assert "NORTH-412" not in body, f"{method.upper()} {url}"
            assert "Margaret Ellis" not in body, f"{method.upper()} {url}"
            if parts[3:4] != [""]:  # a page about one object (not the list): never reached
                assert response.status_code in (302, 403, 404, 405), f"{method} {url}"
    assert walked >= 6 * 12
    patient.refresh_from_db()
    assert (patient.name, [lab.value for lab in LabResult.objects.filter(patient=patient)]) == (
        before
    )
