"""CDS Hooks audit: the services' cards and the FHIR prefetch reader (pathways/cds_hooks.py,
pathways/interop/fhir_case.py). Each test names what went wrong before its fix. Reuses the
fixtures and helpers of tests/test_cds_hooks.py and tests/cds_support.py."""

from __future__ import annotations

import re
from datetime import UTC, date, timedelta
from typing import Any

import pytest
from django.test import Client

from pathways.cds_hooks import ORDER_SIGN, PATIENT_VIEW
from pathways.interop.fhir_case import case_from_fhir
from pathways.rules import current_rule_set
from tests import test_cds_hooks
from tests.cds_support import LOINC, _condition, draft_order, myeloma_with_rising_creatinine
from tests.test_cds_hooks import _call, _order_sign, _patient_view, _topic

pytestmark = pytest.mark.django_db
ehr_keys, north_ehr = test_cds_hooks.ehr_keys, test_cds_hooks.north_ehr  # the fixtures

ZOLEDRONIC_ACID = "M05BA08"


@pytest.fixture
def ehr() -> Client:
    """The EHR's HTTP client: a server error comes back as a 500, not as an exception."""
    return Client(raise_request_exception=False)


def _cards(client: Client, keys: Any, service: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = _call(client, keys, service, body)
    assert response.status_code == 200, response.content[:300]
    return response.json()["cards"]


# ---------------------------------------------------------------------------------------------
# Partial FHIR dates: never a 500.


@pytest.mark.parametrize("birth_date", ["1956", "1956-03"])
def test_a_partial_birth_date_is_named_not_a_server_error(
    ehr: Client, ehr_keys: Any, north_ehr: Any, birth_date: str
) -> None:
    """Before: fhir_case._patient called .isoformat() on the text fhir.resources gives for a
    valid FHIR date without a day ("1956", "1956-03"): an AttributeError, Django's HTML 500.
    Now the birth date is a problem on `Patient.birthDate` and the EHR gets the "could not
    assess this patient" card (JSON), as for an unusable Patient.gender."""
    record = myeloma_with_rising_creatinine()
    record["patient"]["birthDate"] = birth_date
    response = _call(ehr, ehr_keys, PATIENT_VIEW, _patient_view(record))
    assert response.status_code == 200, response.content[:120]
    assert response["Content-Type"].startswith("application/json")
    (card,) = response.json()["cards"]
    assert card["summary"] == "alpcare could not assess this patient"
    assert f"`Patient.birthDate`: {birth_date}: a full date is required" in card["detail"]


@pytest.mark.parametrize("field", ["recordedDate", "onsetDateTime"])
def test_a_pregnancy_condition_with_a_partial_date_is_not_a_server_error(
    ehr: Client, ehr_keys: Any, north_ehr: Any, field: str
) -> None:
    """Before: a Z33.1 Condition dated "2026-01" (a valid FHIR dateTime) made
    fhir_case._condition call .isoformat() on a str: a 500 for the whole hook call. Now the
    date is named (as an observation's partial date is) and the condition read as undated."""
    record = myeloma_with_rising_creatinine()
    pregnancy = _condition(9, "Z33.1")
    pregnancy[field] = f"{date.today().year}-01"
    record["conditions"]["entry"].append({"resource": pregnancy})
    response = _call(ehr, ehr_keys, PATIENT_VIEW, _patient_view(record))
    assert response.status_code == 200, response.content[:120]
    assert f"Condition/cond-9.{field}" in response.content.decode()


def test_a_partially_dated_pregnancy_condition_still_says_pregnant() -> None:
    """The mapping itself: a pregnancy condition dated by month only is kept as an undated
    reading (still pregnant) and its date named; a partial birth date is named, not used."""
    today = date(2026, 11, 22)
    patient = {"resourceType": "Patient", "id": "p", "gender": "female", "birthDate": "1990-05"}
    pregnancy = _condition(1, "Z33.1") | {"recordedDate": "2026-10"}
    mapped = case_from_fhir([patient, pregnancy], today=today, tz=UTC)
    assert "birth_date" not in mapped.document["patient"]
    assert mapped.document["patient"]["pregnant"] is True
    paths = [problem.path for problem in mapped.problems]
    assert paths == ["Patient.birthDate", f"Condition/{pregnancy['id']}.recordedDate"]


# ---------------------------------------------------------------------------------------------
# Time zones: a pregnancy diagnosis against an observation's local time.


def test_a_later_pregnancy_diagnosis_with_an_offset_wins_over_an_earlier_negative_test(
    client: Client, ehr_keys: Any, north_ehr: Any
) -> None:
    """A 32-year-old woman with breast cancer and ALP 300 U/L: "not pregnant" at 23:30 UTC three
    days ago, then Z33.1 recorded at 20:00-05:00 that day (01:00 UTC the next day: later).

    Before: observation times were turned into the clinic's local time but the condition's
    recordedDate kept as the EHR wrote it ("...T20:00:00-05:00"); compared as text the earlier
    negative test won and the card advised a bone scan (spec §4: stood down in pregnancy)."""
    record = myeloma_with_rising_creatinine(
        creatinine_now=1.0, creatinine_before=None, on_zoledronic_acid=False, icd10cm=("C50.9",)
    )
    record["patient"]["gender"] = "female"
    record["patient"]["birthDate"] = (date.today() - timedelta(days=32 * 365)).isoformat()
    for entry in record["observations"]["entry"]:
        if entry["resource"]["code"]["coding"][0]["code"] == "6768-6":
            entry["resource"]["valueQuantity"]["value"] = 300
    day = (date.today() - timedelta(days=3)).isoformat()
    record["observations"]["entry"].append(
        {
            "resource": {
                "resourceType": "Observation",
                "id": "pregnancy-status",
                "status": "final",
                "code": {"coding": [{"system": LOINC, "code": "82810-3"}]},
                "subject": {"reference": "Patient/ehr-42"},
                "effectiveDateTime": f"{day}T23:30:00+00:00",
                "valueCodeableConcept": {"coding": [{"system": LOINC, "code": "LA26683-5"}]},
            }
        }
    )
    pregnancy = _condition(7, "Z33.1")
    pregnancy["recordedDate"] = f"{day}T20:00:00-05:00"  # 01:00 UTC the next day
    record["conditions"]["entry"].append({"resource": pregnancy})
    topics = [_topic(c) for c in _cards(client, ehr_keys, PATIENT_VIEW, _patient_view(record))]
    assert "bone-scan" not in topics, topics
    assert "pregnancy-alp-above-range" in topics, topics


# ---------------------------------------------------------------------------------------------
# Cards carry what alpcare's own cards show for the same case.


def test_card_sources_say_what_kind_of_source_each_is(
    client: Client, ehr_keys: Any, north_ehr: Any
) -> None:
    """pathways.md §8: the kind of every citation (seed, guideline, ...) is shown beside it, as
    alpcare's _sources.html does. Before: the CDS card's **Sources** gave the text only, so a
    seed summary (machine-written, pending review) read in the EHR like any guideline."""
    cards = _cards(client, ehr_keys, PATIENT_VIEW, _patient_view(myeloma_with_rising_creatinine()))
    (card,) = [c for c in cards if _topic(c) == "antiresorptive-dental-exam"]
    citations = {c.key: c for c in current_rule_set().citations}
    kinds = {citations[key].kind for key in ("ASCO-2018", "S3-3")}
    assert kinds == {"guideline", "seed"}
    sources = card["detail"].split("**Sources**", 1)[1]
    for key in ("ASCO-2018", "AAOMS-2022", "S3-3"):
        citation = citations[key]
        (line,) = [ln for ln in sources.splitlines() if citation.text[:40] in ln]
        assert re.search(rf"\b{citation.kind}\b", line), (key, citation.kind, line)
        assert key in line


def test_summary_card_keeps_the_evidence_note_and_sources_of_a_routine_rule(
    client: Client, ehr_keys: Any, north_ehr: Any
) -> None:
    """Paget's disease, ALP 150 U/L, no bisphosphonate: paget-bisphosphonate (routine) goes to
    the one info card "for the rest". Before: that card listed title and rationale only, not
    the evidence note and sources alpcare's own card (_card.html) shows."""
    rule = current_rule_set().rule("paget-bisphosphonate")
    assert rule is not None and rule.evidence_note
    record = myeloma_with_rising_creatinine(
        creatinine_now=1.0, creatinine_before=None, on_zoledronic_acid=False, icd10cm=("M88.9",)
    )
    cards = _cards(client, ehr_keys, PATIENT_VIEW, _patient_view(record))
    (summary,) = [c for c in cards if _topic(c) is None and "further ALP" in c["summary"]]
    assert len(summary["summary"]) <= 140  # CDS Hooks 2.0
    assert rule.title in summary["detail"]  # the rule fired and is listed here
    assert rule.evidence_note in summary["detail"], summary["detail"]
    citations = {c.key: c for c in current_rule_set().citations}
    for key in rule.citations:
        assert citations[key].text in summary["detail"], key


# ---------------------------------------------------------------------------------------------
# Order-sign: the zoledronic acid dose card agrees with its own suggestion.


def test_order_sign_dose_card_text_agrees_with_its_own_suggestion(
    client: Client, ehr_keys: Any, north_ehr: Any
) -> None:
    """A new start of zoledronic acid (a 4 mg draft), a 70-year-old man, 78 kg, creatinine
    1.266 mg/dL 20 days ago, his 70th birthday since: CrCl current (age 70) = 59.9 mL/min →
    3.5 mg; the same creatinine at the age of its collection (69) = 60.8 → 4.0 mg.

    pathways.md §2: the dosing CrCl is CrCl current when not on zoledronic acid. Before: the
    suggestion used it (3.5 mg) but the card's text, from the case with the draft counted as a
    course already on, used a baseline at the creatinine's date: "Zoledronic acid 4.0 mg"."""
    record = myeloma_with_rising_creatinine(
        creatinine_now=1.266, creatinine_before=None, on_zoledronic_acid=False
    )
    today = date.today()
    seventieth = date(today.year - 70, today.month, min(today.day, 28))
    record["patient"]["birthDate"] = (seventieth - timedelta(days=10)).isoformat()
    cards = _cards(
        client, ehr_keys, ORDER_SIGN, _order_sign(record, draft_order(ZOLEDRONIC_ACID, 4))
    )
    (dose_card,) = [card for card in cards if _topic(card) == "za-dose"]
    (suggestion,) = dose_card["suggestions"]
    resource = suggestion["actions"][0]["resource"]
    suggested = resource["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"]
    assert suggested == 3.5, suggestion["label"]  # the spec's new-start rule
    stated = re.search(
        r"Zoledronic acid ([\d.]+) mg .* dosing CrCl of ([\d.]+)", dose_card["detail"]
    )
    assert stated, dose_card["detail"]
    assert float(stated[1]) == suggested, (dose_card["detail"][:200], suggestion["label"])
    assert f"CrCl {stated[2]} mL/min" in suggestion["label"]
