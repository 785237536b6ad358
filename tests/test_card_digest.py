"""What a card's digest covers: an action on a card holds until a new rule-set version changes
the card (issue 12), so every parameter and reference table a card's facts are computed with
must count (card_actions._COMPUTED_WITH and the facts' descriptions)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from pathways import engine, publishing
from pathways.card_actions import _FACT_PARAMS
from pathways.cases import patient_to_case
from pathways.models import AssessmentSnapshot, CardAction, Parameter, Rule, RuleExample
from pathways.rules import current_rule_set
from tests.factories import paget_on_alendronate_document, publish_reviewed, stored_patient
from tests.test_views_worklist import act, card_markup, rows, urgent_document


def _example_cases(rule_set: engine.RuleSet) -> list[engine.Case]:
    return [engine.parse_case(example.case) for rule in rule_set.rules for example in rule.examples]


def _moved(rule_set: engine.RuleSet, cases: list[engine.Case], base: list[dict[str, Any]],
           **changed: Any) -> set[str]:  # fmt: skip
    """The facts of any case that differ from ``base`` with the rule set changed so."""
    params = changed.pop("params", None)
    changed_set = dataclasses.replace(rule_set, **changed) if changed else rule_set
    moved: set[str] = set()
    for case, before in zip(cases, base, strict=True):
        after = engine.compute_facts(case, changed_set, params=params).values
        moved |= {name for name, value in after.items() if value != before[name]}
    return moved


@pytest.mark.django_db
def test_every_fact_a_parameter_or_table_moves_names_it() -> None:
    """Changed in turn, each parameter and each reference band: the facts that move must count
    it. The RCV parameters, the recent window, the menopause age and both tables did not: an
    acknowledged "persistently elevated" card stayed acknowledged after a new version changed
    the RCV it prints, and a za-dose card after a new dose table."""
    rule_set = current_rule_set()
    cases = _example_cases(rule_set)
    assert len(cases) > 100
    base = [engine.compute_facts(case, rule_set).values for case in cases]
    gaps: dict[str, set[str]] = {}
    params = rule_set.parameter_values()
    for name, value in params.items():
        for factor in (1.5, 0.6):
            changed = {**params, name: value * factor if value else 1.0}
            moved = _moved(rule_set, cases, base, params=changed)
            gaps.setdefault(name, set()).update(
                fact for fact in moved if name not in _FACT_PARAMS[fact]
            )
    for table in ("uln_bands", "za_dose_bands"):
        bands = getattr(rule_set, table)
        for index, band in enumerate(bands):
            for field in dataclasses.fields(band):
                value = getattr(band, field.name)
                if not isinstance(value, float) or field.name.startswith("age"):
                    continue
                changed_bands = list(bands)
                changed_bands[index] = dataclasses.replace(band, **{field.name: value * 1.5 + 1})
                moved = _moved(rule_set, cases, base, **{table: tuple(changed_bands)})
                gaps.setdefault(f"tables.{table}", set()).update(
                    fact for fact in moved if f"tables.{table}" not in _FACT_PARAMS[fact]
                )
    assert {name: sorted(facts) for name, facts in gaps.items() if facts} == {}


CODE = "alp-persistently-elevated"


def persistently_elevated_document() -> dict[str, Any]:
    """Paget's disease on alendronate for 8 months, ALP 300 -> 290 U/L: the high card
    alp-persistently-elevated, whose rationale prints the RCV for a fall."""
    today = timezone.localdate()

    def day(n: int) -> str:
        return (today - timedelta(days=n)).isoformat()

    def alp(value: float, days_ago: int) -> dict[str, Any]:
        collected = f"{day(days_ago)}T08:00"
        return {"test": "alp", "value": value, "unit": "U/L", "collected_at": collected,
                "reference_high": 129}  # fmt: skip

    paget = paget_on_alendronate_document(
        as_of=today.isoformat(), labs=[alp(300, 270), alp(290, 10)]
    )
    paget["clinical"]["therapies"] = [{"agent": "alendronate", "start": day(250), "end": None}]
    return paget


def _card(patient: Any) -> engine.Recommendation:
    result = engine.assess(patient_to_case(patient), current_rule_set())
    return next(rec for rec in result.recommendations if rec.code == CODE)


@pytest.mark.django_db
def test_a_new_rcv_parameter_that_rewords_an_acknowledged_card_brings_it_back(
    alice_client: Client, alice: Any, north_clinic: Any, editor: Any, publisher: Any
) -> None:
    """The card prints the RCV for a fall, computed from the RCV parameters: a new version with
    another within-subject variation rewords it. Its acknowledgement held (the parameters were
    not counted), and the patient stayed off the worklist."""
    patient = stored_patient(north_clinic, alice, persistently_elevated_document(), mrn="PE-1")
    before = _card(patient)
    assert before.priority == "high"
    act(alice_client, patient, code=CODE, action="acknowledge")
    assert rows(alice_client.get("/").content.decode()) == []  # nothing else urgent or high
    # A new version: the site's within-subject variation of ALP (the RCV) is 8 % not 5.3 %.
    draft = publishing.ruleset_start_draft(user=editor)
    Parameter.objects.filter(rule_set=draft, name="rcv_cvi_pct").update(value=8.0)
    RuleExample.objects.filter(
        rule_set=draft,
        name__in=[
            "ALP 100 → 118.4 U/L: 18.4 % above the RCV↑ 18.38 %",
            "ALP 300 → 253.4 (15.53 % lower, beyond the RCV↓)",
        ],
    ).delete()
    publish_reviewed(rule_set=draft, user=publisher, note="RCV: CVI 8 %")  # re-assesses
    after = _card(patient)
    # The card the clinician acknowledged now says something else (the RCV it prints moved)...
    assert after.rationale != before.rationale
    # ...so it is back: on the patient page without its acknowledgement, and on the worklist.
    page = alice_client.get(f"/patients/{patient.pk}/").content.decode()
    assert 'data-action="acknowledge"' not in page
    snapshot = AssessmentSnapshot.objects.get(patient=patient)
    assert snapshot.action_rank == engine.PRIORITY_RANK["high"]
    assert rows(alice_client.get("/").content.decode()) == ["PE-1"]


@pytest.mark.django_db
def test_a_new_evidence_note_on_an_acknowledged_card_brings_it_back(
    alice_client: Client, alice: Any, north_clinic: Any, editor: Any, publisher: Any
) -> None:
    """The evidence note is printed on the card ("Evidence note: ..."): a version that adds
    one to extreme-alp changes the card the clinician acknowledged."""
    patient = stored_patient(north_clinic, alice, urgent_document(), mrn="URG-1")
    act(alice_client, patient, code="extreme-alp", action="acknowledge")
    draft = publishing.ruleset_start_draft(user=editor)
    note = "The seed's threshold is unsourced: exclude a sample error before acting."
    Rule.objects.filter(rule_set=draft, code="extreme-alp").update(evidence_note=note)
    publish_reviewed(rule_set=draft, user=publisher, note="evidence note on extreme-alp")
    page = alice_client.get(f"/patients/{patient.pk}/").content.decode()
    card = card_markup(page, "extreme-alp")
    assert note.replace("'", "&#x27;") in card  # the card as shown now carries the note
    assert 'data-action="acknowledge"' not in card


@pytest.mark.django_db
def test_an_action_under_the_version_in_force_holds_whatever_digest_it_stored(
    alice_client: Client, alice: Any, north_clinic: Any
) -> None:
    """The card is compared with itself under the version the action was taken under, both
    digested now: a release whose digest covers more (as this one's: the evidence note, the
    tables) does not bring back every card acted on before it."""
    patient = stored_patient(north_clinic, alice, urgent_document(), mrn="URG-2")
    act(alice_client, patient, code="extreme-alp", action="acknowledge")
    CardAction.objects.update(card_digest="0" * 64)  # as an earlier release digested it
    page = alice_client.get(f"/patients/{patient.pk}/").content.decode()
    card = card_markup(page, "extreme-alp")
    assert "Acknowledged" in card
    assert CardAction.objects.get().ended_at is None
