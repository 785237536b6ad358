"""What audits of the patient page, rule tuning and background work found: the header not
refreshed by an in-page add, a planned course drawn as started, a spoken summary counting a
snoozed card, a rule diff blind to the first of two follow-ups sharing a code, a published rule
that fails on a patient making the patient's page (and a clinic's worklist) a server error.
Each test failed on the code before its fix."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from pathways import publishing, versions
from pathways.models import (
    ApiToken,
    AssessmentSnapshot,
    Clinic,
    FollowUpRule,
    Patient,
    Rule,
    RuleSet,
)
from tests import fhir_bundles
from tests.factories import (
    form_data,
    myeloma_on_zoledronic_acid_14_months_document,
    paget_on_alendronate_document,
    post_as_shown,
    stored_patient,
)
from tests.test_reassess import failing_for
from tests.test_tuning_admin import _rule_post
from tests.test_views_worklist import shown_with_cards

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}


def _day(days_ago: int) -> str:
    return (timezone.localdate() - timedelta(days=days_ago)).isoformat()


def _document(labs: list[dict[str, Any]], therapies: list[Any] | None = None) -> dict[str, Any]:
    return {
        "as_of": timezone.localdate().isoformat(),
        "patient": {"birth_date": "1950-03-02", "sex": "female", "weight_kg": 64},
        "labs": labs,
        "clinical": {"diagnoses": ["paget"], "therapies": therapies or []},
    }


def _alp(value: float, on: str) -> dict[str, Any]:
    return {"test": "alp", "value": value, "unit": "U/L", "collected_at": on}


def _client(user: User) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


def test_a_result_added_in_the_page_refreshes_the_header(
    alice_client: Client, alice: User, north_clinic: Clinic
) -> None:
    """The header names the latest ALP with its date; an in-page add of a newer ALP updated the
    chart and the advice but left the header on the old one."""
    patient = stored_patient(north_clinic, alice, _document([_alp(300, _day(20))]), mrn="H1")
    posted = {
        "test": "alp", "value": "555", "unit": "U/L", "collected_on": _day(1),
        "collected_time": "", "reference_high": "", "reference_low": "",
        "version": str(patient.version),
    }  # fmt: skip
    html = alice_client.post(f"/patients/{patient.pk}/results/", posted, headers=HTMX)
    vitals = re.search(r'id="patient-vitals" hx-swap-oob="true">(.*?)</p>', html.content.decode())
    assert vitals is not None
    assert f"ALP <strong>555 U/L</strong> <small>on {_day(1)}" in vitals[1]


def test_a_planned_course_is_not_drawn_as_started(
    alice_client: Client, alice: User, north_clinic: Clinic
) -> None:
    """Spec §2: a therapy with a future start is neither current nor past. The chart drew a
    start marker titled "zoledronic acid started <a future date>"."""
    future = (timezone.localdate() + timedelta(days=20)).isoformat()
    document = _document(
        [_alp(300, _day(30)), _alp(320, _day(3))],
        [{"agent": "zoledronic_acid", "start": future, "end": None}],
    )
    patient = stored_patient(north_clinic, alice, document, mrn="CH2")
    html = alice_client.get(f"/patients/{patient.pk}/").content.decode()
    assert "zoledronic acid start" not in html


def test_the_spoken_summary_counts_the_cards_still_to_do(
    alice_client: Client, alice: User, north_clinic: Clinic
) -> None:
    """The live region a screen reader hears after an action counted a snoozed urgent card
    ("2 urgent") while the "do today" line listed one."""
    document = myeloma_on_zoledronic_acid_14_months_document()
    document["as_of"] = timezone.localdate().isoformat()
    document["labs"] += [
        {"test": "creatinine", "value": 3.2, "unit": "mg/dL", "collected_at": _day(3)},
        {"test": "calcium", "value": 13, "unit": "mg/dL", "collected_at": _day(3)},
    ]
    patient = stored_patient(north_clinic, alice, document, mrn="DT2")
    html = alice_client.get(f"/patients/{patient.pk}/").content.decode()
    codes = re.findall(r'data-today="([^"]+)"', html)
    shown = shown_with_cards(alice_client, patient)
    assert len(codes) >= 2 and shown
    until = (timezone.localdate() + timedelta(days=7)).isoformat()
    snooze = {"code": codes[0], "action": "snooze", "snooze_until": until, **shown}
    out = alice_client.post(f"/patients/{patient.pk}/cards/", snooze, headers=HTMX)
    text = out.content.decode()
    left = re.findall(r'data-today="([^"]+)"', text)
    status = re.search(r'<span id="patient-status" hx-swap-oob="innerHTML">(.*?)</span>', text)
    assert codes[0] not in left and status is not None
    assert sum(int(n) for n in re.findall(r"(\d+) (?:urgent|high)", status[1])) == len(left)


def test_the_diff_shows_a_change_to_the_first_of_two_follow_ups_sharing_a_code(
    editor: User,
) -> None:
    """The catalogue has two follow-up rules coded alp-recheck, the first whose condition holds
    applies. The diff keyed follow-ups by code, so a change to the first (when the recheck
    falls due) showed "0 differences" to the publisher."""
    base = RuleSet.objects.get(is_current=True)
    client = _client(editor)
    client.post("/admin/pathways/ruleset/start-draft/")
    draft = RuleSet.objects.get(status=RuleSet.Status.DRAFT)
    first = FollowUpRule.objects.filter(rule_set=draft, code="alp-recheck").order_by("position")[0]
    data = {
        "position": first.position, "code": first.code, "title": first.title,
        "rules": json.dumps(first.rules), "when": first.when, "anchor": first.anchor,
        "offset_value": "", "offset_parameter": "alp_recheck_normalised_months",
        "offset_unit": first.offset_unit, "satisfied_by": json.dumps(first.satisfied_by),
    }  # fmt: skip
    assert client.post(f"/admin/pathways/followuprule/{first.pk}/change/", data).status_code == 302
    changes = versions.ruleset_diff(old=base, new=draft)
    assert [(c.section, c.key, c.kind) for c in changes] == [
        ("follow-ups", "alp-recheck", "changed")
    ]
    page = client.get(f"/admin/pathways/ruleset/diff/?old={base.pk}&new={draft.pk}")
    assert "0 differences" not in page.content.decode()


def alp_777_document() -> dict[str, Any]:
    """A case the faulty rule of ``faulty_rule_published`` fails on: latest ALP 777 U/L."""
    document = paget_on_alendronate_document()
    document["labs"][-1]["value"] = 777
    return document


def faulty_rule_published(editor: User, publisher: User) -> None:
    """A condition that compiles and passes every example but divides by zero when the latest
    ALP is 777 U/L, published through the admin."""
    draft = publishing.ruleset_start_draft(user=editor)
    rule = Rule.objects.get(rule_set=draft, code="extreme-alp")
    condition = f"alp_latest != null && alp_latest == 777.0 ? 100 / 0 == 1 : {rule.condition}"
    saved = _client(editor).post(
        f"/admin/pathways/rule/{rule.pk}/change/", _rule_post(rule, condition=condition)
    )
    assert saved.status_code == 302
    _client(editor).post(f"/admin/pathways/ruleset/{draft.pk}/submit/", {"text": "tune"})
    publish_url = f"/admin/pathways/ruleset/{draft.pk}/publish/"
    post_as_shown(_client(publisher), publish_url, {"note": "ok"})
    draft.refresh_from_db()
    assert draft.is_current


def test_a_patients_page_opens_and_says_so_when_a_published_rule_fails_on_them(
    editor: User, publisher: User, north_clinic: Clinic, alice: User
) -> None:
    """A condition that compiles and passes every example but divides by zero for one patient
    was published; that patient's page was a server error (records, results, the other
    advice out of reach). It now names the fault and lists the results."""
    document = alp_777_document()
    patient = stored_patient(north_clinic, alice, document)
    faulty_rule_published(editor, publisher)

    clinician = _client(alice)
    response = clinician.get(f"/patients/{patient.pk}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="rule-fault"' in html and "division by zero" in html
    assert "777" in html  # the results are listed
    # The edit page, its live update and a save of the same case: the fault, never a 500.
    edit = clinician.get(f"/patients/{patient.pk}/edit/")
    assert edit.status_code == 200 and 'id="rule-fault"' in edit.content.decode()
    data = form_data(document, mrn="NEW-777", name="New Patient")
    live = clinician.post("/case/preview/", data, headers=HTMX)
    assert live.status_code == 200 and "division by zero" in live.content.decode()
    saved = clinician.post("/patients/new/", data)
    assert saved.status_code == 400 and "Not saved: rule set" in saved.content.decode()
    assert not Patient.objects.filter(mrn="NEW-777").exists()


def test_one_patient_failing_its_snooze_reassessment_does_not_stop_the_worklist(
    alice_client: Client, north_clinic: Clinic, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worklist re-assesses patients whose snooze ended as it is read. One that failed made
    the whole clinic's worklist a server error on every read, and the patients after it kept
    their stale copy; it is now logged and the others go on, as in a re-assessment run."""
    broken = stored_patient(north_clinic, alice, paget_on_alendronate_document(), mrn="S-1")
    fine = stored_patient(north_clinic, alice, paget_on_alendronate_document(), mrn="S-2")
    AssessmentSnapshot.objects.filter(patient__in=[broken, fine]).update(
        snooze_ends=timezone.localdate(), top_code="stale-copy"
    )
    failing_for(monkeypatch, broken)
    alice_client.raise_request_exception = False
    assert alice_client.get("/").status_code == 200
    snapshot = AssessmentSnapshot.objects.get(patient=fine)
    assert snapshot.top_code != "stale-copy" and snapshot.snooze_ends is None


def test_the_api_names_a_published_rules_fault_as_the_screens_do(
    editor: User, publisher: User, north_clinic: Clinic, alice: User
) -> None:
    """The same fault through the API was a bare 500 "internal error" on /assess, a patient's
    assessment and a FHIR import (the screens name it). Each now names the rule set and the
    fault; the import stores nothing, as the case form does not save. Found by an audit."""
    patient = stored_patient(north_clinic, alice, alp_777_document())
    faulty_rule_published(editor, publisher)
    api = Client(raise_request_exception=False)
    key = ApiToken.issue(user=alice, name="k", scopes=["assess", "read", "write"])[1]
    auth: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Token {key}"}

    def named(response: Any) -> str:
        assert response.status_code == 500, response.content
        text = response.content.decode()
        assert "could not assess this case" in text and "division by zero" in text
        return text

    named(api.post("/api/v1/assess", alp_777_document(), content_type="application/json", **auth))
    named(api.get(f"/api/v1/patients/{patient.pk}/assessment", **auth))
    bundle = json.dumps(fhir_bundles.paget_bundle(mrn="F-777"))
    assert '"value": 260' in bundle
    bundle = bundle.replace('"value": 260', '"value": 777', 1)
    outcome = named(api.post("/api/v1/fhir", bundle, content_type="application/fhir+json", **auth))
    assert '"resourceType": "OperationOutcome"' in outcome and "not stored" in outcome
    assert not Patient.objects.filter(mrn="F-777").exists()
