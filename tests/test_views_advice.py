"""What the clinician sees (issue 11): the context line above the advice, the working behind it,
citations with their kind and full text, evidence notes, and "Considered, not advised" — on the
patient page and in the case-entry page's live assessment, which share one partial."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from pathways.assessment import assess_patient
from tests.factories import (
    form_data,
    pregnant_third_trimester_document,
    revision_2_inputs_document,
    stored_patient,
)

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}


def contexts(html: str) -> dict[str, str]:
    return dict(re.findall(r'<li data-context="([a-z_0-9]+)">([^<]*)</li>', unescape(html)))


def working(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-working="([a-z_]+)"[^>]*>([^<]*)</dd>', unescape(html)))


def considered(html: str) -> dict[str, str]:
    section = unescape(html).split('<details class="considered', 1)[1].split("</details>", 1)[0]
    rows = re.findall(
        r'data-suppressed="([a-z0-9-]+)">.*?class="considered-reason">([^<]*)<', section, re.S
    )
    return dict(rows)


def codes(html: str) -> set[str]:
    return set(re.findall(r'data-code="([a-z0-9-]+)"', html))


@pytest.fixture
def pregnant_patient(alice: Any, north_clinic: Any) -> Any:
    document = pregnant_third_trimester_document(timezone.localdate())
    return stored_patient(north_clinic, alice, document, mrn="PREG-30", name="Ines Duarte")


def test_a_pregnant_patients_page_says_so_and_lists_the_stood_down_bone_scan(
    alice_client: Client, pregnant_patient: Any
) -> None:
    html = alice_client.get(f"/patients/{pregnant_patient.pk}/").content.decode()
    result = assess_patient(pregnant_patient)

    # The context line, above the advice, in words.
    assert html.index('class="context-line') < html.index('class="mb-2 recommendation-group')
    line = contexts(html)
    assert list(line) == list(result.context) == ["pregnant", "renal_function_unknown"]
    assert line["pregnant"].startswith("Pregnant, week 30 (third trimester): ALP range used")
    assert "ULN 229 U/L, built-in: pregnancy, third trimester" in line["pregnant"]
    assert line["renal_function_unknown"].startswith("Renal function unknown")

    # "Considered, not advised": collapsed, every stood-down rule with its reason.
    assert '<details class="considered mb-2 small" id="considered-not-advised" ' in html
    assert "Considered, not advised (2)" in html
    assert considered(html) == {item.code: item.reason for item in result.suppressed}
    assert considered(html)["bone-scan"] == "radionuclide scan avoided in pregnancy"
    assert "bone-scan" not in codes(html)

    # The working: the ULN and its source, the ALP source with the GGT and B-ALP behind it.
    shown = working(html)
    assert shown["uln"] == "229 U/L \u2014 built-in: pregnancy, third trimester"
    assert shown["alp_source"] == (
        "bone \u2014 GGT 18 U/L (normal, ULN 36); B-ALP 30 \u00b5g/L (raised, ULN 14)"
    )
    assert shown["crcl"].startswith("unknown")


def test_citations_show_their_kind_and_open_to_the_full_text_and_evidence_notes_show(
    alice_client: Client, pregnant_patient: Any
) -> None:
    html = unescape(alice_client.get(f"/patients/{pregnant_patient.pk}/").content.decode())
    card = html.split('data-code="pregnancy-alp-above-range"', 1)[1].split("</li>\n", 1)[0]
    summary = card.split("<summary>", 1)[1].split("</summary>", 1)[0]
    assert 'ACG-2016-PREG</span> <span class="source-kind" data-kind="guideline"' in summary
    full = card.split('<li data-citation="ACG-2016-PREG">', 1)[1]
    assert "Tran TT, Ahn J, Reau NS. ACG clinical guideline: liver disease and pregnancy" in full
    kinds = set(re.findall(r'data-kind="([a-z]+)"', html))
    assert {"guideline", "reference", "seed", "study"} <= kinds
    result = assess_patient(pregnant_patient)
    noted = [rec for rec in result.recommendations if rec.evidence_note]
    assert noted, "the case was chosen for a rule with an evidence note"
    for rec in noted:
        card = html.split(f'data-code="{rec.code}"', 1)[1].split("</li>\n", 1)[0]
        assert f"Evidence note: {rec.evidence_note}" in re.sub(r"</?strong>", "", card)


def test_the_live_preview_shows_the_same_context_line_and_considered_section(
    alice_client: Client, pregnant_patient: Any
) -> None:
    document = pregnant_third_trimester_document(timezone.localdate())
    preview = alice_client.post("/case/preview/", form_data(document), headers=HTMX)
    page = alice_client.get(f"/patients/{pregnant_patient.pk}/").content.decode()
    live = preview.content.decode()
    assert contexts(live) == contexts(page)
    assert considered(live) == considered(page)
    assert working(live) == working(page)
    assert codes(live) == codes(page)
    assert 'style="' not in live.split('id="case-status"', 1)[0]  # CSP: no inline styles


def cards(html: str) -> dict[str, str]:
    """Each recommendation card's markup by its code, without the action forms (patient page)."""
    found = {}
    for card in html.split('<li class="card mb-2 recommendation')[1:]:
        card = card.split("\n    </li>", 1)[0]
        card = re.sub(r'<div class="card-actions[^"]*">.*?</div>', "", card, flags=re.S)
        card = re.sub(r">\s+<", "><", card)  # the layout's whitespace differs by the forms
        found[re.findall(r'data-code="([a-z0-9-]+)"', card)[0]] = card
    return found


def test_the_live_previews_cards_are_the_patient_pages_cards_without_the_action_forms(
    alice_client: Client, pregnant_patient: Any
) -> None:
    """The live update fills one rendering of each card per rule with the case's rationale
    (advice.card_html); the patient page renders the same template with the forms."""
    document = pregnant_third_trimester_document(timezone.localdate())
    live = alice_client.post("/case/preview/", form_data(document), headers=HTMX)
    page = alice_client.get(f"/patients/{pregnant_patient.pk}/").content.decode()
    live_cards, page_cards = cards(live.content.decode()), cards(page)
    assert len(live_cards) >= 3 and 'class="card-actions' in page
    assert live_cards == page_cards


def test_a_cards_rationale_is_escaped_in_the_rendering_shared_by_its_rule() -> None:
    from pathways import engine
    from pathways.advice import card_html

    def card(rationale: str) -> str:
        recommendation = engine.Recommendation(
            code="check-ggt",
            priority="routine",
            title="Check GGT",
            rationale=rationale,
            citations=("S1",),
            evidence_note="Note & more",
        )
        return card_html(recommendation, (("S1", None),))

    first, second = card("ALP <b>2.1</b> & rising"), card("ALP 1.5 times ULN")
    assert '<p class="rationale mb-1">ALP &lt;b&gt;2.1&lt;/b&gt; &amp; rising</p>' in first
    assert '<p class="rationale mb-1">ALP 1.5 times ULN</p>' in second
    assert "Evidence note:</strong> Note &amp; more" in first
    assert first.replace("ALP &lt;b&gt;2.1&lt;/b&gt; &amp; rising", "ALP 1.5 times ULN") == second


def test_the_working_shows_corrected_calcium_and_a_computed_crcl_with_its_inputs(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    today = timezone.localdate()
    patient = stored_patient(north_clinic, alice, revision_2_inputs_document(today), mrn="R2-W")
    shown = working(alice_client.get(f"/patients/{patient.pk}/").content.decode())
    drawn = (today - timedelta(days=20)).isoformat()
    # 2.3 mmol/L = 9.22 mg/dL; albumin 33 g/L = 3.3 g/dL: + 0.8 x 0.7 = 9.78 mg/dL.
    assert shown["calcium"] == "9.78 mg/dL (calcium 9.22 mg/dL, albumin 3.3 g/dL)"
    assert shown["crcl"].startswith(
        f"50 mL/min \u00b7 Cockcroft\u2013Gault from creatinine 1 mg/dL and 58.5 kg \u00b7 {drawn}"
    )
    assert shown["uln"] == "105 U/L \u2014 the lab's limit"
    # 0.4 µkat/L = 24 U/L: a normal ALT does not make the source hepatic.
    assert shown["alp_source"] == (
        "unknown \u2014 GGT not measured, ALT 24 U/L (normal, ULN 45); B-ALP not measured"
    )


@pytest.mark.parametrize(
    ("patient", "labs", "expected"),
    [
        (
            {"birth_date": "age:3", "sex": "male"},
            [{"test": "alp", "value": 2400, "unit": "U/L"}],
            {"under_5": "Child under 5 (age 3)"},
        ),
        (
            {"birth_date": "age:12", "sex": "female"},
            [{"test": "alp", "value": 600, "unit": "U/L"}],
            {"child": "Child (age 12)"},
        ),
        (
            {"birth_date": "age:70", "sex": "female", "weight_kg": 60},
            [
                {"test": "alp", "value": 150, "unit": "U/L"},
                {"test": "calcium", "value": 12.5, "unit": "mg/dL"},
                {"test": "creatinine", "value": 0.9, "unit": "mg/dL"},
            ],
            {"hypercalcaemia": "Hypercalcaemia: corrected calcium 12.5 mg/dL (ULN 10.2)"},
        ),
    ],
)
def test_the_context_line_names_children_and_hypercalcaemia(
    alice_client: Client, patient: dict[str, Any], labs: list[dict[str, Any]], expected: Any
) -> None:
    today = timezone.localdate()
    years = int(patient["birth_date"].removeprefix("age:"))
    born = today.replace(year=today.year - years) - timedelta(days=40)
    drawn = (today - timedelta(days=5)).isoformat()
    document = {
        "patient": {**patient, "birth_date": born.isoformat()},
        "labs": [{**lab, "collected_at": drawn} for lab in labs],
    }
    html = alice_client.post("/case/preview/", form_data(document), headers=HTMX).content
    line = contexts(html.decode())
    for code, start in expected.items():
        assert line[code].startswith(start), line
    assert ("child" in line) == ("child" in expected)  # under 5 says it once


def test_below_crcl_30_no_card_offers_a_zoledronic_acid_dose(alice_client: Client) -> None:
    """Spec (issue 11): when za-not-recommended-renal fires, no card offers a dose; the dose
    rule is listed under "Considered, not advised" with its reason."""
    drawn = (timezone.localdate() - timedelta(days=10)).isoformat()
    document = {
        "patient": {"birth_date": "1950-01-10", "sex": "male", "weight_kg": 70},
        "labs": [
            {"test": "alp", "value": 180, "unit": "U/L", "collected_at": drawn},
            {"test": "crcl", "value": 25, "unit": "mL/min", "collected_at": drawn},
        ],
        "clinical": {
            "diagnoses": ["multiple_myeloma"],
            "crcl_baseline": 50,  # dosed at 3.5 mg when started; CrCl 25 now
            "myeloma": {"requires_therapy": True},
            "therapies": [{"agent": "zoledronic_acid", "start": drawn}],
        },
    }
    html = alice_client.post("/case/preview/", form_data(document), headers=HTMX).content
    text = unescape(html.decode())
    assert "za-not-recommended-renal" in codes(text)
    assert "za-dose" not in codes(text)
    assert considered(text)["za-dose"] == "CrCl below 30 now: not recommended"
    cards = re.findall(r'class="rationale mb-1">([^<]*)<', text)
    assert not [card for card in cards if re.search(r"Zoledronic acid \d", card)], cards
