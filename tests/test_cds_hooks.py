"""CDS Hooks 2.0: discovery, both hooks (cards from the engine), feedback, JWT trust."""

from __future__ import annotations

import copy
import json
import time
from datetime import date, timedelta
from typing import Any

import jwt
import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from pathways import engine
from pathways.cds_hooks import ORDER_SIGN, PATIENT_VIEW, _summary
from pathways.cds_models import CdsCard, CdsClient, CdsFeedback
from pathways.engine.vocabulary import OVERRIDE_REASON_SYSTEM, OVERRIDE_REASONS
from pathways.interop.fhir_case import case_from_fhir
from pathways.models import Clinic, Patient
from pathways.rules import current_rule_set
from tests.cds_support import (
    EHR_ISSUER,
    EhrKeys,
    FhirStub,
    draft_order,
    fhir_stub_server,
    myeloma_with_rising_creatinine,
)
from tests.factories import myeloma_on_zoledronic_acid_14_months_document, stored_patient
from tests.test_faults_and_refreshes import faulty_rule_published

SERVER = "http://testserver"


@pytest.fixture
def ehr_keys() -> EhrKeys:
    return EhrKeys()


@pytest.fixture
def north_ehr(north_clinic: Clinic, ehr_keys: EhrKeys) -> CdsClient:
    """The north clinic's EHR, trusted with its inline JWKS."""
    return CdsClient.objects.create(
        name="North EHR", issuer=EHR_ISSUER, clinic=north_clinic, jwks=ehr_keys.jwks
    )


def _url(service: str) -> str:
    return f"/cds-services/{service}"


def _call(
    client: Client,
    keys: EhrKeys,
    service: str,
    body: dict[str, Any],
    *,
    token: str | None = None,
    path: str | None = None,
) -> Any:
    path = path or _url(service)
    token = token or keys.token(SERVER + _url(service))
    return client.post(
        path,
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


def _patient_view(prefetch: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/1", "patientId": "ehr-42"},
        **extra,
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def _order_sign(prefetch: dict[str, Any], *orders: dict[str, Any]) -> dict[str, Any]:
    return {
        "hook": "order-sign",
        "hookInstance": "0d5c8a53-8d6b-4bd3-a4c0-5a0e3f1cd5b4",
        "context": {
            "userId": "Practitioner/1",
            "patientId": "ehr-42",
            "draftOrders": {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": order} for order in orders],
            },
        },
        "prefetch": prefetch,
    }


def _engine_result(prefetch: dict[str, Any]) -> engine.Result:
    """What the engine says about the same resources, asked directly."""
    resources = [prefetch["patient"]]
    for key in ("observations", "conditions", "medicationRequests", "medicationStatements"):
        resources += [entry["resource"] for entry in prefetch[key]["entry"]]
    mapped = case_from_fhir(resources, today=date.today())
    return engine.assess(engine.parse_case(mapped.document), current_rule_set())


def _topic(card: dict[str, Any]) -> str | None:
    return card["source"].get("topic", {}).get("code")


# ---------------------------------------------------------------------------------------------
# Discovery.


def test_discovery_is_public_and_lists_both_services(client: Client, db: Any) -> None:
    response = client.get("/cds-services")
    assert response.status_code == 200
    services = {service["id"]: service for service in response.json()["services"]}
    assert services[PATIENT_VIEW]["hook"] == "patient-view"
    assert services[ORDER_SIGN]["hook"] == "order-sign"
    prefetch = services[PATIENT_VIEW]["prefetch"]
    assert prefetch["patient"] == "Patient/{{context.patientId}}"
    for loinc in ("6768-6", "17838-4", "2160-0", "17861-6", "62292-8", "29463-7", "82810-3"):
        assert f"http://loinc.org|{loinc}" in prefetch["observations"]
    assert set(prefetch) >= {"conditions", "medicationRequests", "medicationStatements"}


# ---------------------------------------------------------------------------------------------
# patient-view.


@pytest.mark.django_db
def test_patient_view_gives_a_card_per_urgent_or_high_recommendation_and_a_summary(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    # Revision 2: the label withholds on a rise of 0.5 mg/dL from a normal baseline (1.0 → 1.6).
    prefetch = myeloma_with_rising_creatinine(creatinine_now=1.6)
    response = _call(client, ehr_keys, PATIENT_VIEW, _patient_view(prefetch))
    assert response.status_code == 200, response.content
    cards = response.json()["cards"]

    result = _engine_result(prefetch)
    pressing = [r for r in result.recommendations if r.priority in ("urgent", "high")]
    rest = [r for r in result.recommendations if r.priority not in ("urgent", "high")]
    assert {r.code for r in pressing} >= {
        "iv-bp-withhold-creatinine-rise",
        "antiresorptive-dental-exam",
    }
    assert [_topic(card) for card in cards[: len(pressing)]] == [r.code for r in pressing]
    for card, recommendation in zip(cards, pressing, strict=False):
        assert card["summary"] == recommendation.title[:140] or card["summary"].endswith("…")
        assert len(card["summary"]) < 140
        expected = {"urgent": "critical", "high": "warning"}[recommendation.priority]
        assert card["indicator"] == expected
        assert recommendation.rationale in card["detail"]
        assert result.rule_set in card["source"]["label"]
        assert all(key in card["source"]["label"] for key in recommendation.citations)
        codes = [reason["code"] for reason in card["overrideReasons"]]
        assert codes == list(OVERRIDE_REASONS)
        assert card["overrideReasons"][0]["system"] == OVERRIDE_REASON_SYSTEM
        assert "links" not in card  # no patient with this MRN in the north clinic
    summary = cards[len(pressing)]
    assert summary["indicator"] == "info"
    assert all(r.title in summary["detail"] for r in rest)
    assert len({card["uuid"] for card in cards}) == len(cards)
    assert CdsCard.objects.filter(client=north_ehr).count() == len(cards)


@pytest.mark.django_db
def test_patient_view_links_the_clinics_patient_with_that_mrn(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient, alice: Any, bob: Any, south_clinic: Any
) -> None:
    stored = stored_patient(
        north_ehr.clinic, alice, myeloma_on_zoledronic_acid_14_months_document(), mrn="NORTH-42"
    )
    south = stored_patient(south_clinic, bob, mrn="SOUTH-42")
    before = Patient.objects.get(pk=stored.pk)

    response = _call(
        client, ehr_keys, PATIENT_VIEW, _patient_view(myeloma_with_rising_creatinine())
    )
    links = [link["url"] for card in response.json()["cards"] for link in card.get("links", [])]
    assert links and set(links) == {f"{SERVER}/patients/{stored.pk}/"}

    # The hook's data is never merged into the stored patient.
    after = Patient.objects.get(pk=stored.pk)
    assert (after.version, after.updated_at) == (before.version, before.updated_at)
    assert after.lab_results.count() == before.lab_results.count()

    # Another clinic's patient with the EHR's MRN is never linked.
    other = myeloma_with_rising_creatinine(mrn="SOUTH-42")
    response = _call(client, ehr_keys, PATIENT_VIEW, _patient_view(other))
    assert f"/patients/{south.pk}/" not in response.content.decode()

    # Two MRNs of the EHR's patient, two patients in alpcare: linked to neither (an arbitrary
    # one was linked, and feedback on its cards was recorded on it), and the cards say why.
    stored_patient(north_ehr.clinic, alice, mrn="NORTH-43")
    two = myeloma_with_rising_creatinine()
    two["patient"]["identifier"].append({**two["patient"]["identifier"][0], "value": "NORTH-43"})
    response = _call(client, ehr_keys, PATIENT_VIEW, _patient_view(two))
    assert response.status_code == 200
    assert not [card for card in response.json()["cards"] if card.get("links")]
    assert (
        "its MRNs are those of 2 patients in alpcare (NORTH-42, NORTH-43): the cards are "
        "linked to none of them"
    ) in response.content.decode()
    # A card of its own: the record was read whole, nothing was left out of the assessment.
    (link_card,) = [c for c in response.json()["cards"] if "its MRNs are" in c["detail"]]
    assert link_card["summary"] == "alpcare could not tell which of its patients this is"


@pytest.mark.django_db
def test_patient_view_says_what_it_needs_when_the_record_cannot_be_assessed(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    prefetch = myeloma_with_rising_creatinine()
    prefetch["patient"]["gender"] = "unknown"
    cards = _call(client, ehr_keys, PATIENT_VIEW, _patient_view(prefetch)).json()["cards"]
    assert len(cards) == 1
    assert cards[0]["summary"] == "alpcare could not assess this patient"
    assert "Patient.gender" in cards[0]["detail"]


@pytest.mark.django_db
def test_patient_view_says_so_when_the_rule_set_in_force_fails_on_the_patient(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient, editor: User, publisher: User
) -> None:
    """A published rule that fails at run time (the screens name the fault) made the service
    answer 500: the EHR showed nothing, read as "no advice". Found by an audit."""
    faulty_rule_published(editor, publisher)
    prefetch = myeloma_with_rising_creatinine()
    alp = prefetch["observations"]["entry"][3]["resource"]
    assert alp["code"]["coding"][0]["code"] == "6768-6"
    alp["valueQuantity"]["value"] = 777
    response = _call(client, ehr_keys, PATIENT_VIEW, _patient_view(prefetch))
    assert response.status_code == 200, response.content
    (card,) = response.json()["cards"]
    assert card["indicator"] == "warning"
    assert card["summary"] == "alpcare could not assess this patient: its rule set has a fault"
    assert "division by zero" in card["detail"] and "rolls it back" in card["detail"]


@pytest.mark.django_db
def test_a_card_listing_what_could_not_be_read_says_how_many_more_there_are(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    """25 weights in an unknown unit: the card lists 20 and says 5 more, rather than ending
    at 20 as if there were no others."""
    prefetch = myeloma_with_rising_creatinine()
    weight = prefetch["observations"]["entry"][0]["resource"]
    for index in range(25):
        bad = json.loads(json.dumps(weight))
        bad["id"] = f"stone-{index}"
        bad["valueQuantity"].update(unit="st", code="st")
        prefetch["observations"]["entry"].append({"resource": bad})
    cards = _call(client, ehr_keys, PATIENT_VIEW, _patient_view(prefetch)).json()["cards"]
    [note] = [
        c for c in cards if c["summary"] == "alpcare left part of the record out of its assessment"
    ]
    lines = note["detail"].splitlines()
    assert len(lines) == 1 + 20 + 1 and "is not kg or [lb_av]" in lines[1]
    assert lines[-1] == "- and 5 more not listed here"


@pytest.mark.django_db
def test_patient_view_fetches_from_the_fhir_server_when_prefetch_is_absent(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    prefetch = myeloma_with_rising_creatinine()
    from pathways.cds_hooks import PREFETCH

    responses = {
        template.replace("{{context.patientId}}", "ehr-42"): prefetch[key]
        for key, template in PREFETCH.items()
    }
    stub = FhirStub(responses)
    with fhir_stub_server(stub) as fhir_server:
        north_ehr.fhir_base_url = fhir_server
        north_ehr.save()
        partial = {"patient": prefetch["patient"]}  # the rest must be fetched
        body = _patient_view(
            partial,
            fhirServer=fhir_server,
            fhirAuthorization={"access_token": "ehr-token-123", "token_type": "Bearer"},
        )
        fetched = _call(client, ehr_keys, PATIENT_VIEW, body)
    assert fetched.status_code == 200, fetched.content
    assert len(stub.paths) == 4 and not any(path.startswith("/fhir/Patient") for path in stub.paths)
    assert set(stub.authorizations) == {"Bearer ehr-token-123"}

    prefetched = _call(client, ehr_keys, PATIENT_VIEW, _patient_view(prefetch))
    assert [_topic(c) for c in fetched.json()["cards"]] == [
        _topic(c) for c in prefetched.json()["cards"]
    ]
    assert [c["summary"] for c in fetched.json()["cards"]] == [
        c["summary"] for c in prefetched.json()["cards"]
    ]


def test_a_paged_prefetch_result_is_read_to_its_last_page(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    """A prefetch searchset may be paged (CDS Hooks 2.0): its first page alone was assessed as
    if it were the patient's whole record."""
    prefetch = myeloma_with_rising_creatinine()
    observations = prefetch["observations"]["entry"]
    assert len(observations) >= 2
    half = len(observations) // 2
    stub = FhirStub({})
    with fhir_stub_server(stub) as fhir_server:
        north_ehr.fhir_base_url = fhir_server
        north_ehr.save()
        first = {**prefetch["observations"], "entry": observations[:half]}
        first["link"] = [{"relation": "next", "url": f"{fhir_server}/Observation?_page=2"}]
        stub.responses["Observation?_page=2"] = {
            **prefetch["observations"],
            "entry": observations[half:],
        }
        paged = {**prefetch, "observations": first}
        read = _call(client, ehr_keys, PATIENT_VIEW, _patient_view(paged, fhirServer=fhir_server))
        assert stub.paths == ["/fhir/Observation?_page=2"]
        whole = _call(client, ehr_keys, PATIENT_VIEW, _patient_view(prefetch))
        assert [c["summary"] for c in read.json()["cards"]] == [
            c["summary"] for c in whole.json()["cards"]
        ]
        first_only = _call(client, ehr_keys, PATIENT_VIEW, _patient_view(paged))
        assert first_only.status_code == 412
        assert "prefetch incomplete" in first_only.json()["error"]
        # A next link that never ends is refused, not cut at some page.
        stub.responses["Observation?_page=2"] = first
        endless = _call(
            client, ehr_keys, PATIENT_VIEW, _patient_view(paged, fhirServer=fhir_server)
        )
    assert endless.status_code == 412
    assert endless.json()["error"] == (
        "prefetch.observations: its next page could not be read (more than 20 pages of results)"
    )


def test_a_prefetch_key_the_ehr_could_not_read_is_fetched_not_taken_for_none(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    """CDS Hooks 2.0: an OperationOutcome in a prefetch key says the EHR could not read that
    data. It was read as "no observations", and the patient was assessed without them."""
    prefetch = myeloma_with_rising_creatinine()
    failed = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "timeout"}],
    }
    not_read = {**prefetch, "observations": failed}
    refused = _call(client, ehr_keys, PATIENT_VIEW, _patient_view(not_read))
    assert refused.status_code == 412 and "prefetch incomplete" in refused.json()["error"]
    from pathways.cds_hooks import PREFETCH

    query = PREFETCH["observations"].replace("{{context.patientId}}", "ehr-42")
    stub = FhirStub({query: prefetch["observations"]})
    with fhir_stub_server(stub) as fhir_server:
        north_ehr.fhir_base_url = fhir_server
        north_ehr.save()
        body = _patient_view(not_read, fhirServer=fhir_server)
        fetched = _call(client, ehr_keys, PATIENT_VIEW, body)
        stub.responses[query] = failed  # the server cannot read them either
        still_failed = _call(client, ehr_keys, PATIENT_VIEW, body)
    assert len(stub.paths) == 2 and stub.paths[0].startswith("/fhir/Observation?")
    whole = _call(client, ehr_keys, PATIENT_VIEW, _patient_view(prefetch))
    assert [c["summary"] for c in fetched.json()["cards"]] == [
        c["summary"] for c in whole.json()["cards"]
    ]
    assert still_failed.status_code == 412
    assert "answered with an OperationOutcome" in still_failed.json()["error"]


@pytest.mark.django_db
def test_another_patients_data_in_the_hooks_resources_is_refused(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    """The resources were merged into one case whoever they were about."""
    prefetch = myeloma_with_rising_creatinine()
    other_patient = {**prefetch, "patient": {**prefetch["patient"], "id": "ehr-77"}}
    response = _call(client, ehr_keys, PATIENT_VIEW, _patient_view(other_patient))
    assert response.status_code == 400
    assert response.json()["error"] == (
        "Patient/ehr-77: about Patient/ehr-77, not the hook's patient (context.patientId ehr-42)"
    )
    entries = prefetch["observations"]["entry"]
    stray = {**entries[0]["resource"], "subject": {"reference": "Patient/ehr-77"}}
    mixed = {
        **prefetch,
        "observations": {**prefetch["observations"], "entry": [*entries, {"resource": stray}]},
    }
    response = _call(client, ehr_keys, PATIENT_VIEW, _patient_view(mixed))
    assert response.status_code == 400
    assert response.json()["error"].startswith(f"Observation/{stray['id']}: about Patient/ehr-77")
    absolute = {
        **entries[0]["resource"],
        "subject": {"reference": "https://ehr.example/fhir/Patient/ehr-42"},
    }
    same = {
        **prefetch,
        "observations": {
            **prefetch["observations"],
            "entry": [{"resource": absolute}, *entries[1:]],
        },
    }
    assert _call(client, ehr_keys, PATIENT_VIEW, _patient_view(same)).status_code == 200


@pytest.mark.django_db
def test_without_prefetch_or_fhir_server_the_call_is_a_412(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    response = _call(client, ehr_keys, PATIENT_VIEW, _patient_view(None))
    assert response.status_code == 412
    assert "fhirServer" in response.json()["error"]


# ---------------------------------------------------------------------------------------------
# order-sign.


@pytest.mark.django_db
def test_order_sign_suggests_the_crcl_dose_for_a_4_mg_zoledronic_acid_order(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    prefetch = myeloma_with_rising_creatinine(on_zoledronic_acid=False)
    body = _order_sign(prefetch, draft_order("M05BA08", 4))
    cards = _call(client, ehr_keys, ORDER_SIGN, body).json()["cards"]
    topics = [_topic(card) for card in cards]
    assert {"za-dose", "iv-bp-renal-before-infusion", "antiresorptive-dental-exam"} <= set(topics)
    assert "calcium-vitamin-d" in topics
    assert "iv-bp-withhold-creatinine-rise" not in topics  # starting today: no rise on it yet

    dose_card = cards[topics.index("za-dose")]
    (suggestion,) = dose_card["suggestions"]
    (action,) = suggestion["actions"]
    assert action["type"] == "update"
    dose = action["resource"]["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]
    # CrCl by Cockcroft-Gault: (140 - 70) * 78 / (72 * 1.4) ≈ 54 mL/min → 3.5 mg (Zometa label).
    assert dose == {"value": 3.5, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}
    assert action["resource"]["id"] == "draft-1"
    assert "3.5 mg" in suggestion["label"]


@pytest.mark.django_db
def test_order_sign_warns_to_withhold_on_a_creatinine_rise_during_a_course(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    prefetch = myeloma_with_rising_creatinine(creatinine_now=1.6)
    body = _order_sign(prefetch, draft_order("M05BA08", 4))
    cards = _call(client, ehr_keys, ORDER_SIGN, body).json()["cards"]
    hold = next(c for c in cards if _topic(c) == "iv-bp-withhold-creatinine-rise")
    assert hold["indicator"] == "critical"


@pytest.mark.django_db
def test_order_sign_says_zoledronic_acid_is_not_recommended_below_crcl_30(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    prefetch = myeloma_with_rising_creatinine(creatinine_now=3.0, on_zoledronic_acid=False)
    cards = _call(
        client, ehr_keys, ORDER_SIGN, _order_sign(prefetch, draft_order("M05BA08", 4))
    ).json()["cards"]
    topics = [_topic(card) for card in cards]
    assert "za-not-recommended-renal" in topics
    assert cards[topics.index("za-not-recommended-renal")]["indicator"] == "critical"
    # The Paget dose (5 mg) does not follow the oncology label's CrCl table, but below CrCl 30
    # no dose is offered "by any rule" (spec §0): an audit found the 5 mg order let through.
    paget_dose = _call(
        client, ehr_keys, ORDER_SIGN, _order_sign(prefetch, draft_order("M05BA08", 5))
    ).json()["cards"]
    paget_topics = {_topic(card) for card in paget_dose}
    assert "za-not-recommended-renal" in paget_topics and "za-dose" not in paget_topics


@pytest.mark.django_db
def test_order_sign_for_paget_gives_only_the_rules_the_catalogue_holds(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    prefetch = myeloma_with_rising_creatinine(icd10cm=("M88.9",), on_zoledronic_acid=False)
    cards = _call(
        client, ehr_keys, ORDER_SIGN, _order_sign(prefetch, draft_order("M05BA08", 5))
    ).json()["cards"]
    # Revision 2: creatinine before each infusion holds for the 5 mg infusion too (Reclast).
    assert [_topic(card) for card in cards] == ["calcium-vitamin-d", "iv-bp-renal-before-infusion"]


@pytest.mark.django_db
def test_order_sign_gives_each_agent_the_rules_about_it(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    prefetch = myeloma_with_rising_creatinine(creatinine_now=3.0, on_zoledronic_acid=False)
    pamidronate = _call(
        client, ehr_keys, ORDER_SIGN, _order_sign(prefetch, draft_order("M05BA03", 90))
    ).json()["cards"]
    pamidronate_topics = {_topic(card) for card in pamidronate}
    assert {"iv-bp-renal-before-infusion", "antiresorptive-dental-exam"} <= pamidronate_topics
    assert "za-not-recommended-renal" not in pamidronate_topics  # a zoledronic acid rule
    assert not any("suggestions" in card for card in pamidronate)

    denosumab = _call(
        client, ehr_keys, ORDER_SIGN, _order_sign(prefetch, draft_order("M05BX04", 120))
    ).json()["cards"]
    # Revision 2: the dental examination holds for oncology-dose denosumab too.
    assert {_topic(card) for card in denosumab} == {
        "calcium-vitamin-d",
        "mm-monitor-calcium",
        "antiresorptive-dental-exam",
    }


@pytest.mark.django_db
def test_order_sign_ignores_orders_of_other_medicines(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    body = _order_sign(myeloma_with_rising_creatinine(), draft_order("A02BC01", 20))  # omeprazole
    response = _call(client, ehr_keys, ORDER_SIGN, body)
    assert response.status_code == 200
    assert response.json() == {"cards": []}


# ---------------------------------------------------------------------------------------------
# Feedback.


def _feedback(card_uuid: str, outcome: str, **extra: Any) -> dict[str, Any]:
    """Feedback on a card, as the EHR sends it just after the clinician acted on the card."""
    when = timezone.now().isoformat(timespec="seconds")
    item = {"card": card_uuid, "outcome": outcome, "outcomeTimestamp": when}
    return {"feedback": [{**item, **extra}]}


@pytest.mark.django_db
def test_feedback_stores_accepted_and_overridden_outcomes_with_the_reason(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    cards = _myeloma_cards(client, ehr_keys)
    first, second = cards[0]["uuid"], cards[1]["uuid"]
    feedback_url = f"/cds-services/{PATIENT_VIEW}/feedback"

    accepted = _call(
        client, ehr_keys, PATIENT_VIEW, _feedback(first, "accepted"), path=feedback_url
    )
    assert accepted.status_code == 200, accepted.content
    reason = {"system": OVERRIDE_REASON_SYSTEM, "code": "contraindicated"}
    overridden = _call(
        client,
        ehr_keys,
        PATIENT_VIEW,
        _feedback(second, "overridden", overrideReason={"reason": reason, "userComment": "AKI"}),
        path=feedback_url,
    )
    assert overridden.status_code == 200, overridden.content

    rows = {row.card_id.hex: row for row in CdsFeedback.objects.all()}
    assert rows[first.replace("-", "")].outcome == "accepted"
    stored = rows[second.replace("-", "")]
    assert (stored.outcome, stored.override_reason, stored.override_comment) == (
        "overridden",
        "contraindicated",
        "AKI",
    )
    assert stored.card.rule_code == _topic(cards[1])

    resent = _call(client, ehr_keys, PATIENT_VIEW, _feedback(first, "accepted"), path=feedback_url)
    assert resent.status_code == 200
    assert CdsFeedback.objects.count() == 2  # a retry is not counted twice


@pytest.mark.parametrize(
    ("moved", "said"),
    [
        (timedelta(days=2), "is in the future"),
        (-timedelta(days=365 * 27), "is before the card was issued"),
    ],
)
@pytest.mark.django_db
def test_feedback_dated_before_its_card_or_after_now_is_refused(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient, moved: timedelta, said: str
) -> None:
    """outcomeTimestamp is when the action was taken (CDS Hooks 2.0): on the card, so after it
    was issued and not after now. Stored as the action's time, a wrong one dated the override
    into another period of the rule analytics; a clock skew of seconds is allowed."""
    cards = _call(
        client, ehr_keys, PATIENT_VIEW, _patient_view(myeloma_with_rising_creatinine())
    ).json()["cards"]
    feedback_url = f"/cds-services/{PATIENT_VIEW}/feedback"
    when = (timezone.now() + moved).isoformat(timespec="seconds")
    body = _feedback(cards[0]["uuid"], "accepted", outcomeTimestamp=when)
    response = _call(client, ehr_keys, PATIENT_VIEW, body, path=feedback_url)
    assert response.status_code == 400
    assert response.json()["error"].startswith(f"feedback[0].outcomeTimestamp: {said}")
    assert not CdsFeedback.objects.exists()

    skewed = (timezone.now() + timedelta(seconds=20)).isoformat(timespec="seconds")
    body = _feedback(cards[0]["uuid"], "accepted", outcomeTimestamp=skewed)
    assert _call(client, ehr_keys, PATIENT_VIEW, body, path=feedback_url).status_code == 200


@pytest.mark.django_db
def test_feedback_refuses_unknown_reasons_other_without_text_and_unknown_cards(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    cards = _call(
        client, ehr_keys, PATIENT_VIEW, _patient_view(myeloma_with_rising_creatinine())
    ).json()["cards"]
    url = f"/cds-services/{PATIENT_VIEW}/feedback"
    card = cards[0]["uuid"]
    bad = [
        (
            _feedback(card, "overridden", overrideReason={"reason": {"code": "bored"}}),
            "reason.code",
        ),
        (
            _feedback(card, "overridden", overrideReason={"reason": {"code": "other"}}),
            "userComment",
        ),
        (_feedback("00000000-0000-0000-0000-000000000000", "accepted"), "feedback[0].card"),
        (_feedback(card, "ignored"), "feedback[0].outcome"),
    ]
    for body, field in bad:
        response = _call(client, ehr_keys, PATIENT_VIEW, body, path=url)
        assert response.status_code == 400
        assert field in response.json()["error"]
    assert CdsFeedback.objects.count() == 0


# ---------------------------------------------------------------------------------------------
# Trust: the JWT.


@pytest.mark.django_db
def test_calls_without_a_valid_jwt_get_401_and_no_patient_data(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    audience = SERVER + _url(PATIENT_VIEW)
    body = json.dumps(_patient_view(myeloma_with_rising_creatinine()))
    stranger = EhrKeys(kid=ehr_keys.kid)  # same kid, another key: a forged signature
    replayed = ehr_keys.token(audience)
    assert (
        _call(client, ehr_keys, PATIENT_VIEW, json.loads(body), token=replayed).status_code == 200
    )
    tokens = {
        "bad signature": stranger.token(audience),
        "wrong aud": ehr_keys.token("https://elsewhere.example.org/cds-services/alp-patient-view"),
        "expired": ehr_keys.token(audience, exp=int(time.time()) - 120, iat=int(time.time()) - 400),
        "replayed jti": replayed,
        "unknown iss": ehr_keys.token(audience, iss="https://unknown-ehr.example.org"),
        "no jti": ehr_keys.token(audience, jti=None),
        "no iat": ehr_keys.token(audience, iat=None),  # CDS Hooks 2.0: iat REQUIRED
        "no kid": jwt.encode(  # the right key, but the header names none (kid REQUIRED)
            {
                "iss": EHR_ISSUER,
                "aud": audience,
                "iat": int(time.time()),
                "jti": "no-kid",
                "exp": int(time.time()) + 60,
            },
            ehr_keys.private_key,
            algorithm="ES384",
        ),
        "valid for days": ehr_keys.token(audience, exp=int(time.time()) + 3 * 86400),
        "HS256 (alg confusion)": jwt.encode(
            {"iss": EHR_ISSUER, "aud": audience, "exp": int(time.time()) + 60, "jti": "hs"},
            "the EHR public key as an HMAC secret",
            algorithm="HS256",
        ),
        "not a JWT": "not-a-jwt",
    }
    for problem, token in tokens.items():
        response = client.post(
            _url(PATIENT_VIEW),
            body,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )
        assert response.status_code == 401, problem
        assert set(response.json()) == {"error"}, problem
    no_token = client.post(_url(PATIENT_VIEW), body, content_type="application/json")
    assert no_token.status_code == 401
    feedback = client.post(
        f"/cds-services/{PATIENT_VIEW}/feedback",
        json.dumps(_feedback("00000000-0000-0000-0000-000000000000", "accepted")),
        content_type="application/json",
    )
    assert feedback.status_code == 401


def _call_signed(client: Client, issuer: str, key: Any, kid: str, alg: str = "ES384") -> Any:
    """A patient-view call from a client with a JWKS URL, signed with ``key`` named ``kid``."""
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": SERVER + _url(PATIENT_VIEW),
        "iat": now,
        "exp": now + 300,
        "jti": f"{kid}-{time.monotonic_ns()}",
    }
    token = jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})
    return client.post(
        _url(PATIENT_VIEW),
        json.dumps(_patient_view(myeloma_with_rising_creatinine())),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


@pytest.mark.django_db
def test_an_rs384_client_with_a_jwks_url_is_trusted(client: Client, north_clinic: Clinic) -> None:
    import jwt as pyjwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = pyjwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    jwks = {"keys": [{**public, "kid": "rsa-1", "alg": "RS384", "use": "sig"}]}
    stub = FhirStub({"jwks.json": jwks})
    with fhir_stub_server(stub) as base:
        CdsClient.objects.create(
            name="RSA EHR",
            issuer="https://rsa-ehr.example.org",
            clinic=north_clinic,
            jwks_url=f"{base}/jwks.json",
        )
        response = _call_signed(
            client, "https://rsa-ehr.example.org", private_key, "rsa-1", alg="RS384"
        )
    assert response.status_code == 200, response.content
    assert response.json()["cards"]


@pytest.mark.django_db
def test_a_key_rotated_in_at_the_jwks_url_is_trusted_at_once(
    client: Client, north_clinic: Clinic
) -> None:
    """The EHR adds a key to its JWKS URL and signs with it: the cached JWKS (5 minutes) gave
    401 to every call until it expired. An unknown kid has the JWKS re-read, at most once a
    minute, so made-up kids do not become a stream of fetches."""
    from cryptography.hazmat.primitives.asymmetric import ec

    def public(key: Any, kid: str) -> dict[str, Any]:
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        return {**jwk, "kid": kid, "alg": "ES384", "use": "sig"}

    old, new = ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(ec.SECP384R1())
    stub = FhirStub({"rotating-jwks.json": {"keys": [public(old, "rot-1")]}})
    with fhir_stub_server(stub) as base:
        CdsClient.objects.create(
            name="Rotating EHR",
            issuer="https://rotating-ehr.example.org",
            clinic=north_clinic,
            jwks_url=f"{base}/rotating-jwks.json",
        )

        def call(key: Any, kid: str) -> int:
            return int(
                _call_signed(client, "https://rotating-ehr.example.org", key, kid).status_code
            )

        assert call(old, "rot-1") == 200
        stub.responses["rotating-jwks.json"] = {
            "keys": [public(old, "rot-1"), public(new, "rot-2")]
        }
        assert call(new, "rot-2") == 200
        fetches = len(stub.paths)
        assert call(new, "made-up") == 401
        assert call(new, "made-up-too") == 401
        assert len(stub.paths) == fetches  # within the minute: no re-read


@pytest.mark.django_db
def test_an_inactive_client_is_not_trusted(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    north_ehr.active = False
    north_ehr.save()
    body = _patient_view(myeloma_with_rising_creatinine())
    assert _call(client, ehr_keys, PATIENT_VIEW, body).status_code == 401


@pytest.mark.django_db
def test_anonymous_calls_to_the_real_services_are_refused(client: Client) -> None:
    for service in (PATIENT_VIEW, ORDER_SIGN):
        for path in (_url(service), f"{_url(service)}/feedback"):
            assert client.post(path, "{}", content_type="application/json").status_code == 401
            assert client.get(path).status_code == 405


# ---------------------------------------------------------------------------------------------
# Admin: trusted clients.


@pytest.mark.django_db
def test_staff_see_and_configure_only_their_clinics_clients(
    client: Client, north_ehr: CdsClient, bob: Any, south_clinic: Clinic, ehr_keys: EhrKeys
) -> None:
    from django.contrib.auth.models import Permission

    bob.is_staff = True
    bob.save()
    bob.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_cdsclient", "add_cdsclient"])
    )
    client.force_login(bob)
    listing = client.get("/admin/pathways/cdsclient/")
    assert listing.status_code == 200
    assert EHR_ISSUER not in listing.content.decode()
    assert client.get(f"/admin/pathways/cdsclient/{north_ehr.pk}/change/").status_code in (302, 404)

    form = {
        "name": "South EHR",
        "issuer": "https://ehr.south.example.org",
        "jwks": json.dumps(ehr_keys.jwks),
        "jwks_url": "",
        "mrn_system": "",
        "active": "on",
    }
    other_clinic = client.post(
        "/admin/pathways/cdsclient/add/", {**form, "clinic": north_ehr.clinic_id}
    )
    assert other_clinic.status_code == 200  # the form again: north is not a choice for bob
    assert not CdsClient.objects.filter(issuer="https://ehr.south.example.org").exists()

    private = EhrKeys()
    private_jwk = pyjwt_private_jwk(private)
    pasted_private = client.post(
        "/admin/pathways/cdsclient/add/",
        {**form, "clinic": south_clinic.pk, "jwks": json.dumps({"keys": [private_jwk]})},
    )
    assert "private key" in pasted_private.content.decode()

    added = client.post("/admin/pathways/cdsclient/add/", {**form, "clinic": south_clinic.pk})
    assert added.status_code == 302
    assert CdsClient.objects.get(issuer="https://ehr.south.example.org").clinic == south_clinic


def pyjwt_private_jwk(keys: EhrKeys) -> dict[str, Any]:
    import jwt as pyjwt

    return pyjwt.algorithms.ECAlgorithm.to_jwk(keys.private_key, as_dict=True)


@pytest.mark.django_db
def test_only_the_clients_configured_fhir_server_is_fetched_from(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    stub = FhirStub({})
    with fhir_stub_server(stub) as fhir_server:
        north_ehr.fhir_base_url = "https://fhir.north.example.org/r4"
        north_ehr.save()
        body = _patient_view(None, fhirServer=fhir_server)
        response = _call(client, ehr_keys, PATIENT_VIEW, body)
    assert response.status_code == 412
    assert "not the FHIR server configured" in response.json()["error"]
    assert stub.paths == []


@pytest.mark.django_db
def test_feedback_on_a_known_patient_counts_in_the_rule_analytics(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient, alice: Any
) -> None:
    from pathways.analytics import rule_analytics
    from pathways.models import CardAction

    first, second = _ruled_cards_about_north_42(client, ehr_keys, north_ehr, alice)[:2]
    url = f"/cds-services/{PATIENT_VIEW}/feedback"
    reason = {"system": OVERRIDE_REASON_SYSTEM, "code": "contraindicated"}
    _call(client, ehr_keys, PATIENT_VIEW, _feedback(first["uuid"], "accepted"), path=url)
    _call(
        client,
        ehr_keys,
        PATIENT_VIEW,
        _feedback(second["uuid"], "overridden", overrideReason={"reason": reason}),
        path=url,
    )
    _call(client, ehr_keys, PATIENT_VIEW, _feedback(first["uuid"], "accepted"), path=url)

    actions = CardAction.objects.filter(source=CardAction.Source.CDS)
    assert sorted(actions.values_list("code", "kind")) == sorted(
        [(_topic(first), "accept"), (_topic(second), "override")]
    )
    today = timezone.localdate()
    rows = {
        row.code: row
        for row in rule_analytics([north_ehr.clinic_id], today - timedelta(days=30), today)
    }
    accepted_code, overridden_code = str(_topic(first)), str(_topic(second))
    assert rows[accepted_code].accepted == 1
    assert rows[overridden_code].overridden == 1
    assert dict(rows[overridden_code].reasons) == {"contraindicated": 1}


@pytest.fixture
def card_an_hour_old(client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient, alice: Any) -> Any:
    """A ruled card the EHR was shown an hour ago about a stored north patient (NORTH-42), so
    that outcomes minutes old are after its issue."""
    card = _ruled_cards_about_north_42(client, ehr_keys, north_ehr, alice)[0]
    CdsCard.objects.update(issued_at=timezone.now() - timedelta(hours=1))
    return card


def _myeloma_cards(client: Client, ehr_keys: EhrKeys) -> list[dict[str, Any]]:
    """The cards patient-view gives for a myeloma patient whose creatinine rose to 1.6."""
    body = _patient_view(myeloma_with_rising_creatinine(creatinine_now=1.6))
    return list(_call(client, ehr_keys, PATIENT_VIEW, body).json()["cards"])


def _ruled_cards_about_north_42(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient, alice: Any
) -> list[dict[str, Any]]:
    """The cards from rules (not the summary) patient-view gives about a myeloma patient on
    zoledronic acid, stored in the north clinic as NORTH-42."""
    stored_patient(
        north_ehr.clinic, alice, myeloma_on_zoledronic_acid_14_months_document(), mrn="NORTH-42"
    )
    cards = _myeloma_cards(client, ehr_keys)
    return [card for card in cards if _topic(card)]


def _outcome(
    client: Client,
    keys: EhrKeys,
    card: dict[str, Any],
    outcome: str,
    minutes_ago: int,
    **extra: Any,
) -> None:
    """The EHR reports what the clinician did with ``card`` ``minutes_ago``."""
    when = (timezone.now() - timedelta(minutes=minutes_ago)).isoformat()
    body = _feedback(card["uuid"], outcome, outcomeTimestamp=when, **extra)
    response = _call(
        client, keys, PATIENT_VIEW, body, path=f"/cds-services/{PATIENT_VIEW}/feedback"
    )
    assert response.status_code == 200, response.content


def _overridden_for(code: str) -> dict[str, Any]:
    reason = {"system": OVERRIDE_REASON_SYSTEM, "code": code}
    return {"overrideReason": {"reason": reason, "userComment": f"{code}: see notes"}}


def _analytics_row(north_ehr: CdsClient, card: dict[str, Any]) -> Any:
    from pathways.analytics import rule_analytics

    today = timezone.localdate()
    rows = rule_analytics([north_ehr.clinic_id], today - timedelta(days=1), today)
    return next(row for row in rows if row.code == _topic(card))


@pytest.mark.django_db
def test_a_card_accepted_then_overridden_counts_once_as_overridden(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient, card_an_hour_old: Any
) -> None:
    """CDS Hooks 2.0 feedback reports the outcome of a card: a later report on the same card
    replaces the earlier. Both stayed in force, the card counted as accepted and overridden."""
    card = card_an_hour_old
    _outcome(client, ehr_keys, card, "accepted", minutes_ago=10)
    _outcome(
        client, ehr_keys, card, "overridden", minutes_ago=5, **_overridden_for("contraindicated")
    )

    row = _analytics_row(north_ehr, card)
    assert (row.accepted, row.overridden, dict(row.reasons)) == (0, 1, {"contraindicated": 1})
    assert sorted(CdsFeedback.objects.values_list("outcome", flat=True)) == [
        "accepted",
        "overridden",
    ]  # every report kept as received


@pytest.mark.django_db
def test_a_card_overridden_again_with_another_reason_counts_the_later_reason_once(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient, card_an_hour_old: Any
) -> None:
    card = card_an_hour_old
    _outcome(
        client, ehr_keys, card, "overridden", minutes_ago=10, **_overridden_for("not-applicable")
    )
    _outcome(
        client, ehr_keys, card, "overridden", minutes_ago=5, **_overridden_for("contraindicated")
    )

    row = _analytics_row(north_ehr, card)
    assert (row.overridden, dict(row.reasons)) == (1, {"contraindicated": 1})
    assert CdsFeedback.objects.count() == 2


@pytest.mark.django_db
def test_an_outcome_that_arrives_after_a_later_one_does_not_replace_it(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient, card_an_hour_old: Any
) -> None:
    """Feedback can arrive out of order (a retry of an older report): the outcome in force is
    the latest by outcomeTimestamp, not the last received."""
    card = card_an_hour_old
    _outcome(
        client, ehr_keys, card, "overridden", minutes_ago=5, **_overridden_for("contraindicated")
    )
    _outcome(client, ehr_keys, card, "accepted", minutes_ago=10)
    _outcome(
        client, ehr_keys, card, "overridden", minutes_ago=8, **_overridden_for("not-applicable")
    )

    row = _analytics_row(north_ehr, card)
    assert (row.accepted, row.overridden, dict(row.reasons)) == (0, 1, {"contraindicated": 1})
    assert CdsFeedback.objects.count() == 3


@pytest.mark.django_db
def test_a_resent_outcome_counts_once_and_does_not_bring_back_a_replaced_one(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient, card_an_hour_old: Any
) -> None:
    """An EHR retrying after a timeout resends the same report: it counts once, and the resend
    of a report a later one replaced leaves the later one in force."""
    from pathways.models import CardAction

    card = card_an_hour_old
    accepted_at = (timezone.now() - timedelta(minutes=10)).isoformat()
    overridden_at = (timezone.now() - timedelta(minutes=5)).isoformat()
    url = f"/cds-services/{PATIENT_VIEW}/feedback"
    accepted = _feedback(card["uuid"], "accepted", outcomeTimestamp=accepted_at)
    overridden = _feedback(
        card["uuid"],
        "overridden",
        outcomeTimestamp=overridden_at,
        **_overridden_for("contraindicated"),
    )
    for body in (accepted, overridden, overridden, accepted, overridden):
        assert _call(client, ehr_keys, PATIENT_VIEW, body, path=url).status_code == 200

    row = _analytics_row(north_ehr, card)
    assert (row.accepted, row.overridden, dict(row.reasons)) == (0, 1, {"contraindicated": 1})
    assert CdsFeedback.objects.count() == 2
    in_force = CardAction.objects.filter(source=CardAction.Source.CDS, undone_at__isnull=True)
    assert list(in_force.values_list("kind", flat=True)) == ["override"]


@pytest.mark.django_db
def test_a_later_outcome_takes_back_the_action_of_its_own_card(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient, card_an_hour_old: Any
) -> None:
    """The same advice shown twice (two patient-view calls) is two cards. Both accepted at the
    same instant, then the second overridden: the action taken back must be the second card's.
    It was found by its fields, which both cards' actions share, so the first's went."""
    from pathways.models import CardAction

    again = _myeloma_cards(client, ehr_keys)
    second = next(card for card in again if _topic(card) == _topic(card_an_hour_old))
    CdsCard.objects.update(issued_at=timezone.now() - timedelta(hours=1))
    url = f"/cds-services/{PATIENT_VIEW}/feedback"
    at = (timezone.now() - timedelta(minutes=10)).isoformat()
    for card in (card_an_hour_old, second):
        body = _feedback(card["uuid"], "accepted", outcomeTimestamp=at)
        assert _call(client, ehr_keys, PATIENT_VIEW, body, path=url).status_code == 200
    _outcome(
        client, ehr_keys, second, "overridden", minutes_ago=5, **_overridden_for("contraindicated")
    )

    taken_back = CardAction.objects.get(undone_at__isnull=False)
    assert taken_back.feedback is not None
    assert str(taken_back.feedback.card.uuid) == second["uuid"]
    in_force = CardAction.objects.filter(undone_at__isnull=True).order_by("kind")
    cards = in_force.values_list("kind", "feedback__card__uuid")
    assert [(kind, str(uuid)) for kind, uuid in cards] == [
        ("accept", card_an_hour_old["uuid"]),
        ("override", second["uuid"]),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("extra", "where"),
    [
        (
            {"overrideReason": {
                "reason": {"system": OVERRIDE_REASON_SYSTEM, "code": "contraindicated"},
                "userComment": "A\x00KI",
            }},
            "feedback[0].overrideReason.userComment",
        ),
        ({"acceptedSuggestions": [{"id": "a\x00b"}]}, "feedback[0].acceptedSuggestions[0].id"),
    ],
)  # fmt: skip
def test_feedback_with_a_nul_character_is_a_400_naming_it(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient, extra: dict[str, Any], where: str
) -> None:
    """PostgreSQL cannot store a NUL in a text: it was a 500 there, and stored on SQLite."""
    body = _patient_view(myeloma_with_rising_creatinine(creatinine_now=1.6))
    card = _call(client, ehr_keys, PATIENT_VIEW, body).json()["cards"][0]["uuid"]
    outcome = "overridden" if "overrideReason" in extra else "accepted"
    response = _call(client, ehr_keys, PATIENT_VIEW, _feedback(card, outcome, **extra),
                     path=f"/cds-services/{PATIENT_VIEW}/feedback")  # fmt: skip
    assert response.status_code == 400
    assert f"{where}: contains a NUL character (\\\\u0000)" in response.content.decode()
    assert not CdsFeedback.objects.exists()


@pytest.mark.django_db
def test_an_ehr_mrn_with_a_nul_character_links_to_no_patient(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient, north_clinic: Clinic, alice: Any
) -> None:
    """No stored MRN holds a NUL, and PostgreSQL cannot compare one: the lookup was a 500."""
    stored_patient(north_clinic, alice, mrn="N100")
    body = _patient_view(myeloma_with_rising_creatinine(creatinine_now=1.6, mrn="N\x00100"))
    response = _call(client, ehr_keys, PATIENT_VIEW, body)
    assert response.status_code == 200
    assert response.json()["cards"]
    assert not CdsCard.objects.filter(patient__isnull=False).exists()


def test_a_summary_is_under_140_characters() -> None:
    """CDS Hooks 2.0, Card: summary "<140-character"; a longer title ends in an ellipsis."""
    assert _summary("x" * 139) == "x" * 139
    assert _summary("x" * 140) == "x" * 138 + "…"
    assert len(_summary("word " * 60)) < 140


@pytest.mark.django_db
def test_a_prefetch_key_sent_as_null_is_no_data_not_a_key_to_fetch(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    """CDS Hooks 2.0, Prefetch Template: "If the CDS Client has no data to populate a template
    prefetch key, the prefetch template key MUST have a value of null". An EHR whose patient
    has no MedicationRequests gets the cards of an empty result; it got a 412 (no fhirServer
    to fetch the key from), as for a key left out."""
    prefetch = myeloma_with_rising_creatinine()
    expected = _call(client, ehr_keys, PATIENT_VIEW, _patient_view(copy.deepcopy(prefetch)))
    assert expected.status_code == 200
    prefetch["medicationRequests"] = None
    response = _call(client, ehr_keys, PATIENT_VIEW, _patient_view(prefetch))
    assert response.status_code == 200, response.content
    assert [card["summary"] for card in response.json()["cards"]] == [
        card["summary"] for card in expected.json()["cards"]
    ]
    prefetch["patient"] = None  # there is always a patient in context: that one is fetched
    assert _call(client, ehr_keys, PATIENT_VIEW, _patient_view(prefetch)).status_code == 412


@pytest.mark.django_db
def test_a_draft_order_for_another_patient_is_refused(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    """draftOrders are the orders of context.patientId being signed: one about another patient
    is refused (400), as a prefetched resource about another patient is. It was assessed
    against this patient's record, with a dose suggestion."""
    order = draft_order("M05BA08", 4.0)
    order["subject"] = {"reference": "Patient/someone-else"}
    body = _order_sign(myeloma_with_rising_creatinine(creatinine_now=1.6), order)
    response = _call(client, ehr_keys, ORDER_SIGN, body)
    assert response.status_code == 400
    assert "Patient/someone-else" in response.json()["error"]
    assert not CdsCard.objects.exists()


@pytest.mark.django_db
def test_an_override_with_only_a_user_comment_is_stored(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    """CDS Hooks 2.0, OverrideReason: "reason | CONDITIONAL | Required if user selected an
    override reason from the list ... (instead of only leaving a userComment)". A comment
    alone is an override with no coded reason; it was refused with the whole batch."""
    cards = _call(
        client, ehr_keys, PATIENT_VIEW, _patient_view(myeloma_with_rising_creatinine())
    ).json()["cards"]
    url = f"/cds-services/{PATIENT_VIEW}/feedback"
    body = _feedback(cards[0]["uuid"], "overridden", overrideReason={"userComment": "nephrology"})
    response = _call(client, ehr_keys, PATIENT_VIEW, body, path=url)
    assert response.status_code == 200, response.content
    stored = CdsFeedback.objects.get()
    assert (stored.override_reason, stored.override_comment) == ("", "nephrology")
    not_a_coding = _feedback(cards[1]["uuid"], "overridden", overrideReason={"reason": "x"})
    refused = _call(client, ehr_keys, PATIENT_VIEW, not_a_coding, path=url)
    assert refused.status_code == 400
    assert "overrideReason.reason" in refused.json()["error"]
