"""engine.facts_inputs: what the fact computation reads of a rule set. The impact preview
computes a patient's facts once when the draft and the version in force have equal inputs, so
equal inputs must mean equal facts for every case."""

from __future__ import annotations

import dataclasses

import pytest

from pathways import engine
from pathways.engine.ruleset import RuleSet


@pytest.fixture(scope="module")
def shipped() -> RuleSet:
    return engine.load_catalogue()


def _with_values(rule_set: RuleSet, change: dict[str, float]) -> RuleSet:
    parameters = tuple(
        dataclasses.replace(p, value=change[p.name]) if p.name in change else p
        for p in rule_set.parameters
    )
    return dataclasses.replace(rule_set, parameters=parameters, version="variant")


def _fact_parameters(rule_set: RuleSet) -> set[str]:
    return {name for name, _ in engine.facts_inputs(rule_set)[2]}


def test_changing_every_other_parameter_keeps_the_inputs_and_every_fact(
    shipped: RuleSet,
) -> None:
    reads = _fact_parameters(shipped)
    others = {p.name: float(p.value) * 1.5 + 1 for p in shipped.parameters if p.name not in reads}
    assert "extreme_alp" in others  # a rule's own threshold: not a fact input
    variant = _with_values(shipped, others)
    assert engine.facts_inputs(variant) == engine.facts_inputs(shipped)
    cases = [engine.parse_case(example.case) for rule in shipped.rules for example in rule.examples]
    assert len(cases) > 200
    for case in cases:
        assert (
            engine.compute_facts(case, variant).values == engine.compute_facts(case, shipped).values
        )


@pytest.mark.parametrize("name", ["recent_lab_days", "rcv_cvi_pct", "renal_impairment_crcl"])
def test_a_fact_parameter_or_a_band_changes_the_inputs(shipped: RuleSet, name: str) -> None:
    value = next(float(p.value) for p in shipped.parameters if p.name == name)
    assert engine.facts_inputs(_with_values(shipped, {name: value + 1})) != engine.facts_inputs(
        shipped
    )
    fewer_bands = dataclasses.replace(shipped, uln_bands=shipped.uln_bands[1:])
    assert engine.facts_inputs(fewer_bands) != engine.facts_inputs(shipped)


def test_the_preview_path_gives_the_same_codes_as_a_full_assessment(shipped: RuleSet) -> None:
    variant = _with_values(shipped, {"extreme_alp": 1200})
    for rule in shipped.rules:
        for example in rule.examples:
            case = engine.parse_case(example.case)
            new, facts = engine.assess_with_facts(case, variant, with_text=False)
            old, _ = engine.assess_with_facts(case, shipped, facts=facts, with_text=False)
            assert [r.code for r in old.recommendations] == [
                r.code for r in engine.assess(case, shipped).recommendations
            ]
            assert [r.code for r in new.recommendations] == [
                r.code for r in engine.assess(case, variant).recommendations
            ]
            assert old.follow_ups == engine.assess(case, shipped).follow_ups
