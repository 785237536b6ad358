"""Revision 2 of the rules (spec §0, §4, §5, §6, §8): stood-down rules, sources, conditional
priorities at their boundaries, the review's cases, and the nine retired codes."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest

from pathways.engine import (
    CATALOGUE_R1_PATH,
    Result,
    Rule,
    Suppression,
    assess,
    load_catalogue,
    parse_case,
    result_to_document,
    validate_rule_set,
)
from pathways.engine.templates import format_number
from pathways.engine.vocabulary import RETIRED_CODES
from tests.engine.clinical_cases import (
    assess_document,
    catalogue,
    codes,
    heavy_myeloma_case,
    lab,
    merged,
    myeloma_on_zoledronic_acid_14_months,
    newly_diagnosed_myeloma_with_lytic_lesions,
)

RETIRED = tuple(RETIRED_CODES)


def man(*labs: dict[str, Any], **clinical: Any) -> dict[str, Any]:
    return {
        "as_of": "2026-11-22",
        "patient": {"birth_date": "1960-05-10", "sex": "male", "weight_kg": 80},
        "labs": list(labs),
        "clinical": clinical,
    }


def suppressed(result: Result) -> dict[str, str]:
    found = {item.code: item.reason for item in result.suppressed}
    assert len(found) == len(result.suppressed), "a stood-down rule is listed once"
    return found


def priority(result: Result, code: str) -> str:
    found = [r.priority for r in result.recommendations if r.code == code]
    assert found, f"{code} did not fire: {codes(result)}"
    return found[0]


# --- stood-down rules -----------------------------------------------------------------------


def test_a_stood_down_rule_is_listed_once_with_its_reason_and_not_recommended() -> None:
    # Pregnant with bone pain and a likely bone source: bone-scan's condition holds.
    document = {
        "as_of": "2026-11-22",
        "patient": {
            "birth_date": "1995-01-01",
            "sex": "female",
            "pregnant": True,
            "gestational_weeks": 30,
        },
        "labs": [lab("alp", 300, "2026-11-22"), lab("ggt", 20, "2026-11-22")],
        "clinical": {"bone_pain": True, "cancer": "breast"},
    }
    result = assess_document(document)
    assert "bone-scan" not in codes(result)
    assert suppressed(result)["bone-scan"] == "radionuclide scan avoided in pregnancy"
    # A rule requiring it (`"bone-scan" in fired`) does not fire and is not listed.
    assert "bone-scan-known-malignancy" not in codes(result)
    assert "bone-scan-known-malignancy" not in suppressed(result)
    document_json = result_to_document(result)
    assert {"code": "bone-scan", "reason": "radionuclide scan avoided in pregnancy"} in (
        document_json["suppressed"]
    )


def test_the_first_suppression_that_holds_gives_the_reason() -> None:
    # bone-scan lists pregnant, child, mgus in that order; a pregnant girl of 16 matches two.
    document = {
        "as_of": "2026-11-22",
        "patient": {"birth_date": "2010-01-01", "sex": "female", "pregnant": True},
        "labs": [lab("alp", 400, "2026-11-20"), lab("ggt", 20, "2026-11-20", reference_high=40)],
        "clinical": {"bone_pain": True},
    }
    result = assess_document(document)
    assert suppressed(result).get("bone-scan") == "radionuclide scan avoided in pregnancy"


def test_a_stood_down_rule_creates_no_follow_up() -> None:
    # thi-consider fires for a well toddler: paediatric-alp is stood down; isolated-alp-unclear
    # (which would create alp-confirm) is stood down for a child.
    toddler = {
        "as_of": "2026-11-22",
        "patient": {"birth_date": "2025-06-22", "sex": "male"},
        "labs": [lab("alp", 2400, "2026-11-15")],
        "clinical": {},
    }
    result = assess_document(toddler)
    assert "thi-consider" in codes(result)
    assert suppressed(result)["paediatric-alp"] == (
        "transient hyperphosphatasaemia first: repeat in 4 months"
    )
    assert suppressed(result)["extreme-alp"].startswith("adult inpatient causes")
    follow_up_codes = {f.code for f in result.follow_ups}
    assert "thi-repeat" in follow_up_codes
    assert "alp-confirm" not in follow_up_codes
    assert next(f for f in result.follow_ups if f.code == "thi-repeat").due.isoformat() == (
        "2027-03-15"
    )


def test_in_suppressed_lets_a_rule_fire_when_another_is_stood_down_for_crcl() -> None:
    paget = man(
        lab("alp", 412, "2026-10-01", reference_high=129),
        lab("crcl", 25, "2026-11-10"),
        diagnoses=["paget"],
    )
    result = assess_document(paget)
    assert suppressed(result)["paget-bisphosphonate"].startswith("CrCl below 35")
    assert priority(result, "paget-bp-renal-contraindicated") == "high"
    assert "paget-bisphosphonate" not in codes(result)


def test_nothing_offers_a_zoledronic_acid_dose_when_it_is_not_recommended() -> None:
    for crcl in (10, 25, 29.9):
        document = merged(
            myeloma_on_zoledronic_acid_14_months(),
            labs=[lab("alp", 90, "2026-11-02"), lab("crcl", crcl, "2026-11-02")],
            clinical={"crcl_baseline": 70},
        )
        result = assess_document(document)
        assert priority(result, "za-not-recommended-renal") == "urgent"  # on zoledronic acid
        assert "za-dose" not in codes(result)
        assert suppressed(result)["za-dose"] == "CrCl below 30 now: not recommended"
        for recommendation in result.recommendations:
            assert not re.search(r"zoledronic acid \d", recommendation.rationale.lower())


def test_stop_and_continue_advice_stands_down_while_an_infusion_is_withheld() -> None:
    document = merged(
        myeloma_on_zoledronic_acid_14_months(),
        labs=[
            *myeloma_on_zoledronic_acid_14_months()["labs"],
            lab("creatinine", 1.6, "2026-11-10"),
        ],
        clinical={"creatinine_baseline": 1.0, "myeloma": {"response": "PR"}},
    )
    result = assess_document(document)
    assert priority(result, "iv-bp-withhold-creatinine-rise") == "urgent"
    assert suppressed(result)["mm-bp-continue-1y"] == "withheld for a creatinine rise"
    assert suppressed(result)["za-dose"] == "withheld for a creatinine rise"


def test_a_suppression_reading_a_later_rule_is_ordered_after_it() -> None:
    rule_set = catalogue()
    za_dose = next(r for r in rule_set.rules if r.code == "za-dose")
    moved = replace(
        rule_set, version="moved", rules=(za_dose, *(r for r in rule_set.rules if r is not za_dose))
    )
    document = merged(
        myeloma_on_zoledronic_acid_14_months(),
        labs=[lab("alp", 90, "2026-11-02"), lab("crcl", 25, "2026-11-02")],
        clinical={"crcl_baseline": 70},
    )
    assert suppressed(assess(parse_case(document), moved))["za-dose"].startswith("CrCl below 30")


def test_suppressions_are_validated_like_conditions() -> None:
    rule_set = catalogue()
    broken = replace(
        rule_set,
        version="broken",
        rules=tuple(
            replace(
                r,
                suppressions=(
                    Suppression(condition="no_such_fact", reason="x"),
                    Suppression(condition='"no-such-rule" in suppressed', reason=""),
                ),
            )
            if r.code == "check-ctx"
            else r
            for r in rule_set.rules
        ),
    )
    messages = [str(e) for e in validate_rule_set(broken)]
    assert any('suppression 1: unknown fact "no_such_fact"' in m for m in messages)
    assert any("suppression 2: a reason is required" in m for m in messages)
    assert any('unknown rule code "no-such-rule" in suppressed' in m for m in messages)


def test_a_cycle_through_suppressions_is_refused() -> None:
    rule_set = catalogue()
    cyclic = replace(
        rule_set,
        version="cyclic",
        rules=tuple(
            replace(r, suppressions=(Suppression('"check-ggt" in suppressed', "loop"),))
            if r.code == "thi-consider"
            else r
            for r in rule_set.rules
        ),
    )
    assert any("cycle" in str(e) for e in validate_rule_set(cyclic))


# --- the clinical review's cases (issue 11) ---------------------------------------------------


def test_a_small_creatinine_rise_on_zoledronic_acid_does_not_withhold_it() -> None:
    document = merged(
        myeloma_on_zoledronic_acid_14_months(),
        labs=[
            *myeloma_on_zoledronic_acid_14_months()["labs"],
            lab("creatinine", 1.12, "2026-11-10"),
        ],
        clinical={"creatinine_baseline": 1.0},
    )
    result = assess_document(document)
    assert "iv-bp-withhold-creatinine-rise" not in codes(result)
    assert "za-dose" in codes(result)


@pytest.mark.parametrize("diagnosis", ["osteoporosis", "paget"])
def test_mgus_treated_for_a_bone_indication_is_not_told_bisphosphonates_are_wrong(
    diagnosis: str,
) -> None:
    document = man(
        lab("alp", 80, "2026-11-02"),
        diagnoses=["mgus", diagnosis],
        therapies=[{"agent": "alendronate", "start": "2026-01-10"}],
    )
    result = assess_document(document)
    assert result.pathway == "bone"
    assert "mgus-no-bisphosphonate" not in codes(result)
    assert all(r.priority != "urgent" for r in result.recommendations)


def test_a_normal_third_trimester_alp_gets_no_scan_and_no_warning() -> None:
    document = {
        "as_of": "2026-11-22",
        "patient": {"birth_date": "1995-01-01", "sex": "female", "pregnant": True},
        "labs": [lab("alp", 190, "2026-11-20")],
        "clinical": {},
    }
    result = assess_document(document)
    assert codes(result) == ["pregnancy-alp"]
    assert "pregnant" in result.context


def test_a_well_toddler_with_thi_gets_no_urgent_sepsis_warning() -> None:
    toddler = {
        "as_of": "2026-11-22",
        "patient": {"birth_date": "2025-06-22", "sex": "female"},
        "labs": [lab("alp", 2400, "2026-11-15")],
        "clinical": {},
    }
    result = assess_document(toddler)
    assert "extreme-alp" not in codes(result)
    assert all(r.priority != "urgent" for r in result.recommendations)
    assert "thi-consider" in codes(result)


def test_a_hypercalcaemic_patient_is_not_told_to_take_calcium() -> None:
    document = man(
        lab("alp", 412, "2026-10-01", reference_high=129),
        lab("calcium", 12.5, "2026-11-10"),
        diagnoses=["paget"],
    )
    result = assess_document(document)
    assert priority(result, "hypercalcaemia") == "urgent"
    assert "calcium-vitamin-d" not in codes(result)
    assert suppressed(result)["calcium-vitamin-d"] == "calcium is high: no calcium supplement"


def test_no_zoledronic_acid_without_a_known_renal_function() -> None:
    document = merged(
        newly_diagnosed_myeloma_with_lytic_lesions(), labs=[lab("alp", 90, "2026-11-02")]
    )
    result = assess_document(document)
    assert "za-dose" not in codes(result)
    assert priority(result, "measure-renal-first") == "high"
    assert "renal_function_unknown" in result.context


def test_myeloma_needing_therapy_without_lytic_lesions_gets_a_bone_agent() -> None:
    document = merged(
        newly_diagnosed_myeloma_with_lytic_lesions(),
        clinical={"myeloma": {"requires_therapy": True, "bone_disease": False}},
    )
    assert priority(assess_document(document), "mm-bone-agent") == "high"


def test_no_survival_claim_for_zoledronic_acid() -> None:
    for rule in catalogue().rules:
        assert "survival" not in (rule.title + rule.rationale).lower(), rule.code


# --- conditional priorities at their boundaries ---------------------------------------------


@pytest.mark.parametrize(("calcium", "expected"), [(12.0, "urgent"), (11.9, "high")])
def test_hypercalcaemia_is_urgent_from_12_mg_dl(calcium: float, expected: str) -> None:
    document = man(lab("alp", 80, "2026-11-02"), lab("calcium", calcium, "2026-11-10"))
    assert priority(assess_document(document), "hypercalcaemia") == expected


@pytest.mark.parametrize(
    ("diagnoses", "expected"),
    [([], "urgent"), (["paget"], "high"), (["liver_disease"], "high"), (["sepsis"], "urgent")],
)
def test_extreme_alp_is_high_when_a_bone_or_liver_cause_is_known(
    diagnoses: list[str], expected: str
) -> None:
    document = man(lab("alp", 1500, "2026-11-02"), diagnoses=diagnoses)
    assert priority(assess_document(document), "extreme-alp") == expected


def test_za_not_recommended_is_high_when_not_on_zoledronic_acid() -> None:
    document = merged(
        newly_diagnosed_myeloma_with_lytic_lesions(),
        labs=[lab("alp", 90, "2026-11-02"), lab("crcl", 25, "2026-11-02")],
    )
    result = assess_document(document)
    assert priority(result, "za-not-recommended-renal") == "high"
    assert "za-dose" not in codes(result)


@pytest.mark.parametrize(("latest", "expected"), [(150, "high"), (125, "info")])
def test_alp_significant_rise_is_high_only_when_the_latest_alp_is_elevated(
    latest: float, expected: str
) -> None:
    document = man(lab("alp", 100, "2026-10-01"), lab("alp", latest, "2026-11-02"))
    assert priority(assess_document(document), "alp-significant-rise") == expected


@pytest.mark.parametrize(("alp", "expected"), [(1000.1, "high"), (1000, "routine")])
def test_paediatric_alp_is_high_above_the_thi_threshold(alp: float, expected: str) -> None:
    child = {
        "as_of": "2026-11-22",
        "patient": {"birth_date": "2016-01-01", "sex": "female"},
        "labs": [lab("alp", alp, "2026-11-15")],
        "clinical": {},
    }
    assert priority(assess_document(child), "paediatric-alp") == expected


@pytest.mark.parametrize(
    ("earlier", "expected"), [("2026-10-05", "high"), ("2026-10-06", "routine")]
)
def test_isolated_alp_is_high_when_persistently_elevated_28_days(
    earlier: str, expected: str
) -> None:
    document = man(
        lab("alp", 200, earlier), lab("alp", 250, "2026-11-02"), lab("ggt", 30, "2026-11-02")
    )
    result = assess_document(document)
    assert priority(result, "isolated-alp-unclear") == expected
    assert ("alp-confirm" in {f.code for f in result.follow_ups}) == (expected == "routine")


# --- follow-ups of revision 2 ---------------------------------------------------------------


def test_bisphosphonate_after_denosumab_six_months_or_28_days_with_cancer() -> None:
    stopped = {
        "as_of": "2026-11-22",
        "patient": {"birth_date": "1955-01-01", "sex": "female", "weight_kg": 60},
        "labs": [lab("crcl", 70, "2026-11-10")],
        "clinical": {
            "diagnoses": ["osteoporosis"],
            "therapies": [{"agent": "denosumab", "start": "2024-05-01", "end": "2026-05-01"}],
        },
    }
    follow_up = {f.code: f for f in assess_document(stopped).follow_ups}[
        "bisphosphonate-after-denosumab"
    ]
    assert (follow_up.due.isoformat(), follow_up.status, follow_up.rule) == (
        "2026-11-01",
        "overdue",
        "denosumab-no-abrupt-stop",
    )
    oncology = merged(stopped, clinical={"cancer": "breast"})
    follow_up = {f.code: f for f in assess_document(oncology).follow_ups}[
        "bisphosphonate-after-denosumab"
    ]
    assert follow_up.due.isoformat() == "2026-05-29"


def test_alp_repeat_is_due_today_for_a_stale_high_alp() -> None:
    result = assess_document(man(lab("alp", 250, "2026-08-01")))
    assert codes(result) == ["alp-repeat-stale"]
    follow_up = {f.code: f for f in result.follow_ups}["alp-repeat"]
    assert (follow_up.due.isoformat(), follow_up.status) == ("2026-11-22", "upcoming")
    assert "alp_not_recent" in result.context


def test_renal_checks_before_infusion_only_for_oncology_doses() -> None:
    paget_infusion = man(
        lab("alp", 300, "2026-11-02", reference_high=129),
        lab("crcl", 70, "2026-11-02"),
        diagnoses=["paget"],
        therapies=[{"agent": "zoledronic_acid", "start": "2026-11-22", "end": "2026-11-22"}],
    )
    result = assess_document(paget_infusion)
    assert "iv-bp-renal-before-infusion" in codes(result)
    assert not {"renal-before-infusion", "bp-review-1y", "dental-exam"} & {
        f.code for f in result.follow_ups
    }
    assert "antiresorptive-dental-exam" not in codes(result)


# --- sources and evidence notes (§8, §6) --------------------------------------------------------


def test_sources_hold_every_cited_key_with_its_kind() -> None:
    result = assess_document(heavy_myeloma_case())
    cited = {key for r in result.recommendations for key in r.citations}
    assert set(result.sources) == cited
    document = result_to_document(result)
    assert set(document["sources"]) == cited
    kinds = {citation.key: citation.kind for citation in catalogue().citations}
    for key, source in document["sources"].items():
        assert source["kind"] == kinds[key]
        assert source["text"]
        assert "grade" not in source  # §8 gives no grade: none is shown


def test_evidence_notes_travel_with_their_recommendations() -> None:
    document = merged(
        newly_diagnosed_myeloma_with_lytic_lesions(), labs=[lab("crcl", 75, "2026-11-02")]
    )
    result = result_to_document(assess_document(document))
    notes = {r["code"]: r["evidence_note"] for r in result["recommendations"]}
    assert notes["mm-bone-agent"].startswith("The seed restricts")
    assert notes["za-dose"] is None


def test_a_revision_1_client_still_reads_the_document() -> None:
    document = result_to_document(assess_document(heavy_myeloma_case()))
    revision_1_keys = {"as_of", "rule_set", "pathway", "findings", "recommendations", "follow_ups"}
    assert revision_1_keys <= set(document)
    assert {
        "alp_latest",
        "alp_uln",
        "alp_x_uln",
        "alp_elevated",
        "bone_alp",
        "crcl_current",
        "crcl_baseline",
    } <= set(document["findings"])
    for item in document["recommendations"]:
        assert {"code", "priority", "title", "rationale", "citations"} <= set(item)


def test_findings_show_the_working() -> None:
    document = man(
        lab("alp", 250, "2026-11-02"), lab("ggt", 30, "2026-11-02"), lab("crcl", 75, "2026-11-02")
    )
    findings = result_to_document(assess_document(document))["findings"]
    assert findings["alp_uln_source"] == "built-in: male ≥ 19 y"
    assert findings["alp_source"] == "likely_bone"
    assert findings["ggt"] == "normal"
    assert findings["crcl_method"] == "measured"
    assert (findings["rcv_rise_pct"], findings["rcv_fall_pct"]) == (18.4, 15.5)


# --- the retired codes --------------------------------------------------------------------------


def test_the_retired_codes_never_fire_again() -> None:
    rule_set = catalogue()
    assert not set(RETIRED) & {rule.code for rule in rule_set.rules}
    cases = [example.case for rule in rule_set.rules for example in rule.examples]
    cases.append(heavy_myeloma_case())
    for case in cases:
        assert not set(RETIRED) & set(codes(assess(parse_case(case), rule_set)))


def test_the_retired_codes_still_evaluate_in_revision_1() -> None:
    revision_1 = load_catalogue(CATALOGUE_R1_PATH, version="2026-11-22.1")
    result = assess(parse_case(heavy_myeloma_case()), revision_1)
    assert set(RETIRED) & set(codes(result))
    assert result.rule_set == "2026-11-22.1"


def test_a_rule_without_suppressions_behaves_as_before() -> None:
    rule = Rule(
        code="always",
        pathway="both",
        priority="info",
        title="t",
        rationale="r",
        condition="true",
        citations=("LOCAL",),
    )
    rule_set = replace(catalogue(), version="plus", rules=(*catalogue().rules, rule))
    result = assess(parse_case(man(lab("alp", 80, "2026-11-02"))), rule_set)
    assert "always" in codes(result) and "always" not in suppressed(result)


# --- rationales name the facts that fired them (spec §4) -------------------------------------


def _rationale(result: Result, code: str) -> str:
    found = [r.rationale for r in result.recommendations if r.code == code]
    assert found, f"{code} did not fire: {codes(result)}"
    return found[0]


@pytest.mark.parametrize(
    "patient, clinical",
    [
        ({"birth_date": "1960-05-10", "sex": "male"}, {"diagnoses": ["paget"]}),  # no weight
        (  # a child: Cockcroft-Gault is not valid
            {"birth_date": "2012-01-01", "sex": "male", "weight_kg": 40},
            {"diagnoses": ["bone_metastases"], "cancer": "other", "dental_exam_done": True},
        ),
    ],
)
def test_measure_renal_first_names_the_creatinine_it_could_not_use(
    patient: dict[str, Any], clinical: dict[str, Any]
) -> None:
    """Renal function is unknown with a recent creatinine when Cockcroft-Gault cannot be used
    (spec §2: weight and age ≥ 18): the card names that creatinine, not "no creatinine"."""
    document = man(
        lab("alp", 300, "2026-11-02"), lab("ggt", 20, "2026-11-02"),
        lab("creatinine", 1.0, "2026-11-02"), **clinical,
    )  # fmt: skip
    document["patient"] = patient
    rationale = _rationale(assess_document(document), "measure-renal-first")
    assert "latest creatinine 1 mg/dL on 2026-11-02" in rationale
    assert "weight and an age of 18 or over" in rationale
    no_creatinine = man(lab("alp", 300, "2026-11-02"), lab("ggt", 20, "2026-11-02"))
    no_creatinine["clinical"] = {"diagnoses": ["paget"]}
    assert "latest creatinine" not in _rationale(
        assess_document(no_creatinine), "measure-renal-first"
    )


def test_persistent_elevation_does_not_claim_an_alp_before_treatment_it_does_not_have() -> None:
    """alp-persistently-elevated fires with no ALP on or before the therapy's start (spec
    §4.2's first branch): the card says either branch may hold and its therapy summary shows
    which, never "not below the ALP before treatment" as if one had been compared."""
    therapy = [{"agent": "alendronate", "start": "2026-01-01", "end": None}]
    alone = man(
        lab("alp", 300, "2026-11-02"), lab("ggt", 20, "2026-11-02"), lab("crcl", 70, "2026-11-02"),
        diagnoses=["paget"], therapies=therapy,
    )  # fmt: skip
    rationale = _rationale(assess_document(alone), "alp-persistently-elevated")
    assert "either no ALP on or before its start" in rationale
    assert "ALP before start" not in rationale
    compared = merged(alone, labs=[*alone["labs"], lab("alp", 310, "2025-12-01")])
    rationale = _rationale(assess_document(compared), "alp-persistently-elevated")
    assert "ALP before start 310 U/L" in rationale


def test_hepatic_source_says_both_sources_only_as_the_mixed_case() -> None:
    """A hepatic (not mixed) source: the card does not state that bone ALP is also raised."""
    document = man(lab("alp", 300, "2026-11-02"), lab("ggt", 200, "2026-11-02"))
    result = assess_document(document)
    assert result.findings.alp_source == "hepatic"
    rationale = _rationale(result, "hepatic-source")
    assert "Mixed: bone ALP is also raised" not in rationale
    assert "When the source is mixed (bone ALP also raised), both sources are possible" in rationale


# --- rationale numbers at round thresholds -------------------------------------------------


@pytest.mark.parametrize(
    ("crcl", "code", "shown"),
    [
        (59.96, "mm-denosumab-renal", "CrCl 59.96 mL/min"),
        (29.96, "za-not-recommended-renal", "CrCl 29.96 mL/min"),
    ],
)
def test_a_rationale_does_not_round_a_value_onto_the_threshold_it_is_below(
    crcl: float, code: str, shown: str
) -> None:
    """CrCl 59.96 read "CrCl 60 mL/min; renal impairment: yes" (impairment is CrCl < 60), and
    29.96 "CrCl 30 mL/min ... is below 30 mL/min" (§4: the rationale names the facts that fired
    it). Found by an audit."""
    document = newly_diagnosed_myeloma_with_lytic_lesions()
    document["labs"] = [lab("alp", 90, "2026-11-02T09:00"), lab("crcl", crcl, "2026-11-02")]
    rationale = next(
        r.rationale for r in assess_document(document).recommendations if r.code == code
    )
    assert shown in rationale


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (412.2, "412.2"),
        (45.26, "45.3"),
        (3.194, "3.19"),
        (59.96, "59.96"),
        (60.04, "60.04"),
        (0.499, "0.499"),
        (12.0, "12"),
        (412.20000001, "412.2"),
        (1.9999999, "2"),
    ],
)
def test_rationale_numbers_keep_the_decimals_that_tell_them_from_a_rounder_number(
    value: float, text: str
) -> None:
    assert format_number(value) == text
