"""assess(): rule evaluation, escalation, ordering, rationale rendering, caching, the result."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from pathways.engine import (
    PRIORITIES,
    Rule,
    RuleEvaluationError,
    RuleSet,
    assess,
    parse_case,
    render_result_json,
    result_to_document,
    run_examples,
)
from pathways.engine.assess import compiled_rule_set
from pathways.engine.conditions import inline_parameters
from pathways.engine.templates import fact_resolver, render
from tests.engine.clinical_cases import (
    assess_document,
    catalogue,
    codes,
    heavy_myeloma_case,
    lab,
    man_with_unexplained_elevated_alp,
    merged,
    myeloma_on_zoledronic_acid_14_months,
    newly_diagnosed_myeloma_with_lytic_lesions,
    paget_with_elevated_alp_on_alendronate,
)


def recommendation(document: dict[str, Any], code: str) -> Any:
    result = assess_document(document)
    found = [item for item in result.recommendations if item.code == code]
    assert found, f"{code} did not fire: {codes(result)}"
    return found[0]


def with_rule(rule_set: RuleSet, rule: Rule) -> RuleSet:
    return replace(rule_set, version="test", rules=(*rule_set.rules, rule))


# --- escalation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("clinical", "priority"),
    [
        ({}, "routine"),
        ({"cancer": "lung"}, "routine"),
        ({"cancer": "breast"}, "high"),
        ({"cancer": "prostate"}, "high"),
        ({"cancer": "renal"}, "high"),
        ({"bone_pain": True}, "high"),
    ],
)
def test_bone_scan_escalates_for_breast_prostate_renal_cancer_or_bone_pain(
    clinical: dict[str, Any], priority: str
) -> None:
    # Revision 2: a likely bone source (normal GGT) and a reason to scan (here the ALP persists).
    document = merged(
        man_with_unexplained_elevated_alp(),
        labs=[
            lab("alp", 240, "2026-10-01"),
            lab("alp", 250, "2026-11-02"),
            lab("ggt", 30, "2026-11-02"),
        ],
        clinical=clinical,
    )
    assert recommendation(document, "bone-scan").priority == priority


def test_mgus_no_bisphosphonate_is_high_when_one_is_current() -> None:
    mgus = {
        "as_of": "2026-11-22",
        "patient": {"birth_date": "1958-02-20", "sex": "female"},
        "clinical": {"diagnoses": ["mgus"]},
    }
    assert recommendation(mgus, "mgus-no-bisphosphonate").priority == "routine"
    on_alendronate = merged(
        mgus, clinical={"therapies": [{"agent": "alendronate", "start": "2026-01-01"}]}
    )
    assert recommendation(on_alendronate, "mgus-no-bisphosphonate").priority == "high"


# --- order and pathway -----------------------------------------------------------------------


def test_recommendations_are_ordered_by_priority_then_catalogue_order() -> None:
    result = assess_document(heavy_myeloma_case())
    rank = {priority: index for index, priority in enumerate(PRIORITIES)}
    position = {rule.code: index for index, rule in enumerate(catalogue().rules)}
    keys = [(rank[r.priority], position[r.code]) for r in result.recommendations]
    assert keys == sorted(keys)
    assert result.recommendations[0].priority == "urgent"


def test_bone_rules_do_not_fire_in_the_myeloma_pathway_and_vice_versa() -> None:
    myeloma = assess_document(
        merged(
            newly_diagnosed_myeloma_with_lytic_lesions(),
            labs=[lab("alp", 300, "2026-11-02")],
        )
    )
    assert myeloma.pathway == "myeloma"
    bone_only = {r.code for r in catalogue().rules if r.pathway == "bone"}
    assert not bone_only & set(codes(myeloma))
    assert "confirm-bone-origin" in codes(myeloma)  # a "both" rule
    bone = assess_document(man_with_unexplained_elevated_alp())
    myeloma_only = {r.code for r in catalogue().rules if r.pathway == "myeloma"}
    assert not myeloma_only & set(codes(bone))


def test_a_rule_reading_fired_is_evaluated_after_the_rule_it_names() -> None:
    rule_set = catalogue()
    moved = next(r for r in rule_set.rules if r.code == "za-dose")
    reordered = replace(
        rule_set,
        version="reordered",
        rules=(moved, *(r for r in rule_set.rules if r is not moved)),
    )
    document = merged(
        newly_diagnosed_myeloma_with_lytic_lesions(),
        labs=[lab("alp", 90, "2026-11-02"), lab("crcl", 75, "2026-11-02")],
    )
    result = assess(parse_case(document), reordered)
    assert {"mm-bone-agent", "za-dose"} <= set(codes(result))


def test_a_disabled_rule_never_fires_but_its_examples_still_run() -> None:
    rule_set = catalogue()
    disabled = replace(
        rule_set,
        version="disabled",
        rules=tuple(
            replace(r, enabled=False) if r.code == "extreme-alp" else r for r in rule_set.rules
        ),
    )
    document = merged(man_with_unexplained_elevated_alp(), labs=[lab("alp", 1500, "2026-11-02")])
    assert "extreme-alp" not in codes(assess(parse_case(document), disabled))
    outcomes = [o for o in run_examples(disabled) if o.rule == "extreme-alp"]
    assert outcomes and all(o.passed for o in outcomes)


# --- rationale --------------------------------------------------------------------------------


def test_rationale_names_the_facts_with_values_and_units() -> None:
    item = recommendation(paget_with_elevated_alp_on_alendronate(), "confirm-bone-origin")
    assert item.rationale == (
        "ALP 412 U/L on 2026-10-01 = 3.19 \u00d7 ULN (129 U/L, lab); "
        "bone-specific ALP: unknown (not measured); GGT: unknown"
    )
    assert item.citations == ("S0-1", "S0-3")


def test_rationale_names_coded_values_in_words() -> None:
    """A diagnosis reads as the form shows it ("Paget's disease of bone", "HIV/AIDS"), not as its
    code ("paget", "hiv aids"); in the form's order, however the document listed them."""
    document = merged(
        paget_with_elevated_alp_on_alendronate(),
        clinical={"diagnoses": ["paget", "hiv_aids", "vitamin_d_deficiency"]},
    )
    rationale = recommendation(document, "calcium-vitamin-d").rationale
    assert rationale.startswith(
        "Diagnoses: Paget's disease of bone, vitamin D deficiency, HIV/AIDS; current therapies: "
    )


def test_rationale_states_the_label_dose_for_a_known_crcl() -> None:
    document = myeloma_on_zoledronic_acid_14_months()
    document["labs"] = [lab("crcl", 45, "2026-11-02")]
    rationale = recommendation(document, "za-dose").rationale
    assert rationale.startswith("Zoledronic acid 3.3 mg IV over at least 15 minutes")
    assert "dosing CrCl of 45 mL/min" in rationale


def test_rationale_drops_segments_whose_facts_are_null() -> None:
    document = merged(
        newly_diagnosed_myeloma_with_lytic_lesions(),
        labs=[lab("alp", 90, "2026-11-02")],
        clinical={"diagnoses": ["multiple_myeloma", "chronic_kidney_disease"]},
    )
    rationale = recommendation(document, "mm-pamidronate-renal").rationale
    assert rationale == (
        "CrCl unknown; renal impairment: yes. Below CrCl 30 reduce the dose and use only where "
        "benefit outweighs risk"
    )


def test_rationale_with_thresholds_from_parameters() -> None:
    document = merged(man_with_unexplained_elevated_alp(), labs=[lab("alp", 1000.1, "2026-11-02")])
    rationale = recommendation(document, "extreme-alp").rationale
    assert rationale.startswith("ALP 1000.1 U/L is above 1000 U/L")


def test_every_fired_rationale_is_fully_rendered() -> None:
    for rule in catalogue().rules:
        for example in rule.examples:
            if not example.fires:
                continue
            item = recommendation(example.case, rule.code)
            assert "{" not in item.rationale and "[[" not in item.rationale, rule.code
            assert item.rationale, rule.code


def test_templates_leave_unknown_names_alone_and_never_format() -> None:
    resolve = fact_resolver({"alp_latest": 100.0, "alp_uln": None}, {})
    assert render("{alp_latest} {nope} {0} {alp_latest.__class__}", resolve) == (
        "100 U/L {nope} {0} {alp_latest.__class__}"
    )
    assert render("a[[ ULN {alp_uln}]] b[[ {alp_latest}]]", resolve) == "a b 100 U/L"
    assert render("{alp_uln}", resolve) == "unknown"


def test_a_null_unsafe_admin_condition_raises_a_clear_error() -> None:
    rule = Rule(
        code="unsafe",
        pathway="both",
        priority="info",
        title="t",
        rationale="r",
        condition="alp_latest > 3.0",
        citations=("S0-1",),
    )
    rule_set = with_rule(catalogue(), rule)
    document = merged(man_with_unexplained_elevated_alp(), labs=[])
    with pytest.raises(RuleEvaluationError, match="rule unsafe: condition"):
        assess(parse_case(document), rule_set)


# --- compilation cache ------------------------------------------------------------------------


def test_a_rule_set_compiles_once_per_version_and_content() -> None:
    rule_set = catalogue()
    assert compiled_rule_set(rule_set) is compiled_rule_set(rule_set)
    same_content = replace(rule_set)
    assert compiled_rule_set(same_content) is compiled_rule_set(rule_set)
    changed = replace(
        rule_set,
        parameters=tuple(
            replace(p, value=900.0) if p.name == "extreme_alp" else p for p in rule_set.parameters
        ),
    )
    assert compiled_rule_set(changed) is not compiled_rule_set(rule_set)
    document = merged(man_with_unexplained_elevated_alp(), labs=[lab("alp", 950, "2026-11-02")])
    assert "extreme-alp" in codes(assess(parse_case(document), changed))
    assert "extreme-alp" not in codes(assess(parse_case(document), rule_set))


def test_use_cache_false_recompiles_and_gives_the_same_result() -> None:
    case = parse_case(heavy_myeloma_case())
    assert assess(case, catalogue(), use_cache=False) == assess(case, catalogue())


# --- the result document (§6) ---------------------------------------------------------------


def test_result_document_has_exactly_the_spec_shape_and_key_order() -> None:
    document = result_to_document(assess_document(paget_with_elevated_alp_on_alendronate()))
    assert list(document) == [
        "as_of",
        "rule_set",
        "pathway",
        "context",
        "findings",
        "recommendations",
        "suppressed",
        "follow_ups",
        "sources",
    ]
    # Revision 1's findings first, unchanged (an r1 client still reads them), then the additions.
    assert list(document["findings"]) == [
        "alp_latest",
        "alp_uln",
        "alp_x_uln",
        "alp_elevated",
        "bone_alp",
        "crcl_current",
        "crcl_baseline",
        "alp_latest_date",
        "alp_uln_source",
        "alp_source",
        "ggt",
        "calcium_corrected",
        "crcl_method",
        "rcv_rise_pct",
        "rcv_fall_pct",
        "za_dosing_crcl",
        "alp_gestational_week",
        "pregnancy_trimester",
        "ggt_latest",
        "ggt_uln",
        "bone_alp_latest",
        "bone_alp_uln",
        "crcl_current_date",
        "crcl_creatinine",
        "crcl_weight_kg",
    ]
    assert {k: document["findings"][k] for k in ("alp_latest", "alp_uln", "alp_x_uln")} == {
        "alp_latest": 412.0,
        "alp_uln": 129.0,
        "alp_x_uln": 3.19,
    }
    assert document["findings"]["alp_elevated"] is True
    assert list(document["recommendations"][0]) == [
        "code",
        "priority",
        "title",
        "rationale",
        "citations",
        "evidence_note",
    ]
    cited = {key for item in document["recommendations"] for key in item["citations"]}
    assert set(document["sources"]) == cited
    for source in document["sources"].values():
        assert source["kind"] in ("seed", "guideline", "label", "study", "reference", "local")
        assert source["text"]
    assert list(document["follow_ups"][0]) == ["code", "due", "status", "rule", "title"]
    assert document["follow_ups"][0] == {
        "code": "alp-recheck",
        "due": "2027-01-01",
        "status": "upcoming",
        "rule": "paget-monitor-alp",
        "title": "Recheck ALP",
    }
    assert (document["as_of"], document["rule_set"], document["pathway"]) == (
        "2026-11-22",
        "catalogue",
        "bone",
    )


def test_render_result_json_is_indented_utf8_with_a_final_newline() -> None:
    result = assess_document(paget_with_elevated_alp_on_alendronate())
    text = render_result_json(result)
    assert text.endswith("}\n")
    assert "\u00d7 ULN" in text  # not escaped
    assert json.loads(text) == result_to_document(result)
    assert text == json.dumps(result_to_document(result), indent=2, ensure_ascii=False) + "\n"


def test_parameters_are_folded_into_the_programs_outside_string_literals() -> None:
    assert inline_parameters('x > params.a && s == "params.a"', {"a": 2}) == (
        'x > 2.0 && s == "params.a"'
    )
    assert inline_parameters("x > params.b", {"b": -1}) == "x > (-1.0)"
    assert inline_parameters("x > params.c", {}) == "x > params.c"


def test_a_set_in_use_keeps_its_compiled_form_while_others_come_and_go() -> None:
    rule_set = catalogue()
    first = compiled_rule_set(rule_set)
    for number in range(40):  # more sets than the cache holds, while this one stays in use
        compiled_rule_set(replace(rule_set, version=f"other-{number}"))
        assert compiled_rule_set(rule_set) is first
    assert compiled_rule_set(replace(rule_set)) is first
