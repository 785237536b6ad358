"""Revision 2's facts (spec §2) and reference values (§3, reference-intervals.md), each at its
boundaries, computed from case documents as the API and the form produce them."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from pathways.engine import compute_facts, parse_case
from pathways.engine.facts import log_normal_rcv
from pathways.engine.facts.liver import ALP_SOURCES, alp_source
from tests.engine.clinical_cases import (
    lab,
    revision_1_facts_rule_set,
    revision_2_facts_rule_set,
)

AS_OF = "2026-11-22"


def case(
    *labs: dict[str, Any],
    birth_date: str = "1960-05-10",
    sex: str = "male",
    as_of: str = AS_OF,
    **patient: Any,
) -> dict[str, Any]:
    return {
        "as_of": as_of,
        "patient": {"birth_date": birth_date, "sex": sex, **patient},
        "labs": list(labs),
    }


def facts(document: dict[str, Any], **params: float) -> dict[str, Any]:
    rule_set = revision_2_facts_rule_set()
    if params:
        rule_set = replace(
            rule_set,
            parameters=tuple(
                replace(p, value=params[p.name]) if p.name in params else p
                for p in rule_set.parameters
            ),
        )
    return compute_facts(parse_case(document), rule_set).values


def with_clinical(document: dict[str, Any], **clinical: Any) -> dict[str, Any]:
    return {**document, "clinical": {**document.get("clinical", {}), **clinical}}


# --- recent window: 90 days is recent, 91 is not ---------------------------------------------


@pytest.mark.parametrize(("collected", "recent"), [("2026-08-24", True), ("2026-08-23", False)])
def test_an_alp_90_days_old_is_recent_and_91_days_is_not(collected: str, recent: bool) -> None:
    values = facts(case(lab("alp", 250, collected)))
    assert values["alp_recent"] is recent
    assert values["alp_elevated"] is recent
    assert values["alp_above_uln"] is True  # the old one is still reported, with its date
    assert values["alp_not_recent"] is not recent
    assert ("alp_not_recent" in values["context"]) is not recent
    assert values["alp_normal"] is False


def test_an_old_normal_alp_is_neither_elevated_nor_normal() -> None:
    values = facts(case(lab("alp", 80, "2026-01-02")))
    assert (values["alp_elevated"], values["alp_normal"], values["alp_above_uln"]) == (
        False,
        False,
        False,
    )
    assert facts(case(lab("alp", 80, "2026-11-02")))["alp_normal"] is True


@pytest.mark.parametrize(
    ("test", "value", "state_fact", "recent_state", "old_state"),
    [
        ("ggt", 100, "ggt", "elevated", "unknown"),
        ("alt", 100, "alt", "elevated", "unknown"),
        ("bilirubin", 2.0, "bilirubin_elevated", True, False),
        ("vitamin_d", 10, "vitamin_d_deficient", True, False),
        ("phosphate", 1.5, "phosphate_low", True, False),
        ("pth", 100, "pth_elevated", True, False),
        ("calcium", 11.0, "hypercalcaemia", True, False),
        ("crcl", 25, "renal_function_unknown", False, True),
    ],
)
def test_only_the_latest_recent_result_is_a_current_state(
    test: str, value: float, state_fact: str, recent_state: Any, old_state: Any
) -> None:
    assert facts(case(lab(test, value, "2026-08-24")))[state_fact] == recent_state
    assert facts(case(lab(test, value, "2026-08-23")))[state_fact] == old_state


def test_a_rule_set_without_the_recent_window_keeps_revision_1s_meaning() -> None:
    document = case(lab("alp", 250, "2025-01-02"))
    old = compute_facts(parse_case(document), revision_1_facts_rule_set()).values
    assert old["alp_elevated"] is True and old["alp_not_recent"] is False
    mgus = {**case(), "clinical": {"diagnoses": ["mgus"]}}
    assert (
        compute_facts(parse_case(mgus), revision_1_facts_rule_set()).values["pathway"] == "myeloma"
    )
    assert facts(mgus)["pathway"] == "bone"
    myeloma = {**case(), "clinical": {"diagnoses": ["mgus", "multiple_myeloma"]}}
    assert facts(myeloma)["pathway"] == "myeloma"


# --- persistence: 28 days ---------------------------------------------------------------------


@pytest.mark.parametrize(("earlier", "persistent"), [("2026-10-04", True), ("2026-10-05", False)])
def test_persistently_elevated_needs_an_elevated_alp_28_days_before_the_latest(
    earlier: str, persistent: bool
) -> None:
    document = case(lab("alp", 200, earlier), lab("alp", 210, "2026-11-01"))
    assert facts(document)["alp_persistently_elevated"] is persistent


def test_persistence_needs_the_earlier_one_elevated_and_the_latest_elevated() -> None:
    assert not facts(case(lab("alp", 100, "2026-09-01"), lab("alp", 210, "2026-11-01")))[
        "alp_persistently_elevated"
    ]
    assert not facts(case(lab("alp", 200, "2026-09-01"), lab("alp", 100, "2026-11-01")))[
        "alp_persistently_elevated"
    ]
    assert (
        facts(
            case(lab("alp", 200, "2026-10-04"), lab("alp", 210, "2026-11-01")), persistence_days=29
        )["alp_persistently_elevated"]
        is False
    )


# --- log-normal RCV ---------------------------------------------------------------------------


def test_the_log_normal_rcv_with_the_spec_defaults() -> None:
    rise, fall = log_normal_rcv(5.3, 3.0, 1.96)
    assert round(rise, 1) == 18.4 and round(fall, 1) == 15.5
    values = facts(case(lab("alp", 100, "2026-10-01")))
    assert (round(values["rcv_rise_pct"], 1), round(values["rcv_fall_pct"], 1)) == (18.4, 15.5)
    assert values["rcv_pct"] == pytest.approx(16.9, abs=0.05)  # revision 1's symmetric value


@pytest.mark.parametrize(
    ("latest", "rise", "fall"),
    [(118.4, True, False), (118.3, False, False), (84.4, False, True), (84.6, False, False)],
)
def test_a_rise_beyond_18_4_and_a_fall_beyond_15_5_percent(
    latest: float, rise: bool, fall: bool
) -> None:
    values = facts(case(lab("alp", 100, "2026-10-01"), lab("alp", latest, "2026-11-01")))
    assert (values["alp_rise_beyond_rcv"], values["alp_fall_beyond_rcv"]) == (rise, fall)


# --- calcium: limits by age, albumin correction, 12.0 mg/dL ----------------------------------


@pytest.mark.parametrize(
    ("birth_date", "calcium", "hyper", "hypo"),
    [
        ("1967-11-23", 10.1, True, False),  # 58 at collection (18-59: 8.6-10.0)
        ("1966-11-01", 10.1, True, False),  # 59 at collection
        ("1966-10-31", 10.1, False, False),  # 60 on the day of collection (≥ 60: 8.8-10.2)
        ("1966-11-01", 8.7, False, False),
        ("1966-10-31", 8.7, False, True),
    ],
)
def test_calcium_limits_change_at_60_years(
    birth_date: str, calcium: float, hyper: bool, hypo: bool
) -> None:
    values = facts(case(lab("calcium", calcium, "2026-10-31"), birth_date=birth_date))
    assert (values["hypercalcaemia"], values["hypocalcaemia"]) == (hyper, hypo)


def test_calcium_is_corrected_with_the_closest_albumin_within_7_days() -> None:
    document = case(
        lab("calcium", 10.0, "2026-11-10T08:00"),
        lab("albumin", 3.0, "2026-11-03T08:00"),  # 7 days before
        lab("albumin", 2.5, "2026-11-12T08:00"),  # 2 days after: the closest
    )
    values = facts(document)
    assert values["calcium_albumin"] == 2.5
    assert values["calcium_corrected"] == pytest.approx(10.0 + 0.8 * 1.5)
    assert values["hypercalcaemia"] is True
    seven = facts(case(lab("calcium", 10.0, "2026-11-10"), lab("albumin", 3.0, "2026-11-03")))
    assert seven["calcium_corrected"] == pytest.approx(10.8)
    eight = facts(case(lab("calcium", 10.0, "2026-11-10"), lab("albumin", 3.0, "2026-11-02")))
    assert (eight["calcium_albumin"], eight["calcium_corrected"]) == (None, 10.0)
    high_albumin = facts(
        case(lab("calcium", 10.0, "2026-11-10"), lab("albumin", 45, "2026-11-10", unit="g/L"))
    )
    assert high_albumin["calcium_corrected"] == pytest.approx(9.6)  # lowered


@pytest.mark.parametrize(("calcium", "urgent"), [(12.0, True), (11.99, False)])
def test_hypercalcaemia_is_urgent_from_12_mg_dl(calcium: float, urgent: bool) -> None:
    values = facts(case(lab("calcium", calcium, "2026-11-01")))
    assert values["hypercalcaemia"] is True
    assert values["hypercalcaemia_urgent"] is urgent
    assert "hypercalcaemia" in values["context"]


def test_calcium_in_mmol_l_and_the_labs_own_limits() -> None:
    values = facts(case(lab("calcium", 2.75, "2026-11-01", unit="mmol/L")))
    assert values["calcium_latest"] == pytest.approx(11.022)
    child = case(lab("calcium", 11.5, "2026-11-01"), birth_date="2016-01-01")
    assert facts(child)["hypercalcaemia"] is False  # a child: no built-in interval
    child["labs"][0].update(reference_high=10.7, reference_low=8.8)
    assert facts(child)["hypercalcaemia"] is True


# --- vitamin D, phosphate, PTH ----------------------------------------------------------------


@pytest.mark.parametrize(("value", "deficient"), [(19.9, True), (20, False)])
def test_vitamin_d_deficient_below_20_ng_ml_for_adults_and_children(
    value: float, deficient: bool
) -> None:
    for birth in ("1960-05-10", "2020-01-01"):
        values = facts(case(lab("vitamin_d", value, "2026-11-01"), birth_date=birth))
        assert values["vitamin_d_deficient"] is deficient
    nmol = facts(case(lab("vitamin_d", 49.9, "2026-11-01", unit="nmol/L")))
    assert nmol["vitamin_d_deficient"] is True  # 49.9 / 2.496 = 19.99 ng/mL


@pytest.mark.parametrize(("value", "not_suppressed"), [(19.9, False), (20, True)])
def test_pth_not_suppressed_from_20_pg_ml_also_in_children(
    value: float, not_suppressed: bool
) -> None:
    for birth in ("1960-05-10", "2015-01-01"):
        values = facts(case(lab("pth", value, "2026-11-01"), birth_date=birth))
        assert values["pth_not_suppressed"] is not_suppressed
        assert values["pth_elevated"] is False


def test_pth_and_phosphate_against_their_limits_and_units() -> None:
    values = facts(case(lab("pth", 7.0, "2026-11-01", unit="pmol/L")))
    assert values["pth_latest"] == pytest.approx(66.01)
    assert values["pth_elevated"] is True  # > 65 pg/mL
    assert facts(case(lab("pth", 65, "2026-11-01", unit="ng/L")))["pth_elevated"] is False
    low = facts(case(lab("phosphate", 0.8, "2026-11-01", unit="mmol/L")))
    assert low["phosphate_latest"] == pytest.approx(2.4776)
    assert low["phosphate_low"] is True
    assert facts(case(lab("phosphate", 2.5, "2026-11-01")))["phosphate_low"] is False


# --- pregnancy: the trimester's ULN only raises the usual one --------------------------------


def pregnant(weeks: int | None, *labs: dict[str, Any]) -> dict[str, Any]:
    patient: dict[str, Any] = {"pregnant": True}
    if weeks is not None:
        patient["gestational_weeks"] = weeks
    return case(*labs, birth_date="1994-02-01", sex="female", **patient)


@pytest.mark.parametrize(
    ("weeks", "uln", "source"),
    [
        (13, 104, "built-in: female ≥ 17 y"),  # first trimester 88 never lowers 104
        (14, 126, "built-in: pregnancy, second trimester"),
        (27, 126, "built-in: pregnancy, second trimester"),
        (28, 229, "built-in: pregnancy, third trimester"),
        (None, 229, "weeks unknown: third-trimester range"),
    ],
)
def test_the_alp_uln_by_trimester(weeks: int | None, uln: float, source: str) -> None:
    values = facts(pregnant(weeks, lab("alp", 190, AS_OF)))
    assert (values["alp_uln"], values["alp_uln_source"]) == (uln, source)
    assert values["alp_elevated"] is (uln < 190)
    assert values["alp_pregnancy_result"] is True
    assert "pregnant" in values["context"]


def test_the_gestational_week_is_the_one_at_collection() -> None:
    # 30 weeks at as_of; a result 3 whole weeks earlier was drawn at week 27.
    values = facts(pregnant(30, lab("alp", 120, "2026-11-01")))
    assert values["alp_gestational_week"] == 27
    assert values["alp_uln"] == 126
    assert values["pregnancy_trimester"] == 3
    # Drawn before week 1: not a pregnancy result.
    before = facts(pregnant(5, lab("alp", 120, "2026-10-01")))
    assert (before["alp_pregnancy_result"], before["alp_uln"]) == (False, 104)


def test_weeks_unknown_cover_the_last_40_weeks_and_the_labs_higher_limit_wins() -> None:
    within = facts(pregnant(None, lab("alp", 150, "2026-02-16")))  # 39 whole weeks before
    assert within["alp_uln"] == 229
    outside = facts(pregnant(None, lab("alp", 150, "2026-02-15")))  # 40 whole weeks before
    assert (outside["alp_uln"], outside["alp_pregnancy_result"]) == (104, False)
    lab_limit = facts(pregnant(30, lab("alp", 240, AS_OF, reference_high=250)))
    assert (lab_limit["alp_uln"], lab_limit["alp_uln_source"]) == (250, "lab")
    raised = facts(pregnant(30, lab("alp", 200, AS_OF, reference_high=120)))
    assert (raised["alp_uln"], raised["alp_elevated"]) == (229, False)


# --- bone ALP: by age, sex and menopause ------------------------------------------------------


@pytest.mark.parametrize(
    ("birth_date", "postmenopausal", "value", "state", "uln"),
    [
        ("1976-11-02", None, 15, "elevated", 14),  # 50 at collection: premenopausal assumed
        ("1975-11-01", None, 15, "normal", 22),  # 51: postmenopausal assumed
        ("1970-01-01", False, 15, "elevated", 14),  # 56, but said premenopausal
        ("1985-01-01", True, 20, "normal", 22),  # 41, said postmenopausal
        ("2025-06-01", None, 180, "normal", 187),  # under 2
    ],
)
def test_bone_alp_uln_by_age_sex_and_menopause(
    birth_date: str, postmenopausal: bool | None, value: float, state: str, uln: float
) -> None:
    patient: dict[str, Any] = {} if postmenopausal is None else {"postmenopausal": postmenopausal}
    document = case(
        lab("bone_alp", value, "2026-11-01"), birth_date=birth_date, sex="female", **patient
    )
    values = facts(document)
    assert (values["bone_alp"], values["bone_alp_uln"]) == (state, uln)
    assert values["bone_alp_uln_source"].startswith("built-in: female")


def test_bone_alp_for_men_and_from_the_lab() -> None:
    assert facts(case(lab("bone_alp", 21, "2026-11-01")))["bone_alp"] == "elevated"
    assert facts(case(lab("bone_alp", 20, "2026-11-01")))["bone_alp"] == "normal"
    activity = facts(case(lab("bone_alp", 30, "2026-11-01", unit="U/L", reference_high=25)))
    assert (activity["bone_alp"], activity["bone_alp_uln_source"]) == ("elevated", "lab")
    # The whole history counts for bone ALP: an old result still decides.
    assert facts(case(lab("bone_alp", 30, "2025-01-01")))["bone_alp"] == "elevated"


# --- GGT, ALT and the ALP source --------------------------------------------------------------


@pytest.mark.parametrize(
    ("ggt", "alt", "bone", "source"),
    [
        ("elevated", "unknown", "unknown", "hepatic"),
        ("elevated", "normal", "normal", "hepatic"),
        ("unknown", "elevated", "unknown", "hepatic"),
        ("unknown", "elevated", "normal", "hepatic"),
        ("elevated", "unknown", "elevated", "mixed"),
        ("normal", "elevated", "elevated", "bone"),
        ("unknown", "elevated", "elevated", "bone"),
        ("normal", "unknown", "unknown", "likely_bone"),
        ("normal", "elevated", "unknown", "likely_bone"),
        ("normal", "unknown", "normal", "not_bone"),
        ("unknown", "normal", "normal", "not_bone"),
        ("unknown", "unknown", "unknown", "unknown"),
        ("unknown", "normal", "unknown", "unknown"),
    ],
)
def test_the_alp_source_table(ggt: str, alt: str, bone: str, source: str) -> None:
    assert alp_source(ggt, alt, bone) == source
    labs = [lab("alp", 300, "2026-11-01")]
    values_by_state = {"elevated": 100, "normal": 20}
    if ggt != "unknown":
        labs.append(lab("ggt", values_by_state[ggt], "2026-11-01"))
    if alt != "unknown":
        labs.append(lab("alt", values_by_state[alt], "2026-11-01"))
    if bone != "unknown":
        labs.append(lab("bone_alp", {"elevated": 40, "normal": 10}[bone], "2026-11-01"))
    values = facts(case(*labs))
    assert (values["ggt"], values["alt"], values["bone_alp"]) == (ggt, alt, bone)
    assert values["alp_source"] == source
    assert source in ALP_SOURCES


@pytest.mark.parametrize(
    ("sex", "test", "value", "state"),
    [
        ("male", "ggt", 61, "normal"),
        ("male", "ggt", 62, "elevated"),
        ("female", "ggt", 36, "normal"),
        ("female", "ggt", 37, "elevated"),
        ("male", "alt", 55, "normal"),
        ("male", "alt", 56, "elevated"),
        ("female", "alt", 46, "elevated"),
    ],
)
def test_ggt_and_alt_uln_by_sex(sex: str, test: str, value: float, state: str) -> None:
    assert facts(case(lab(test, value, "2026-11-01"), sex=sex))[test] == state


def test_a_childs_liver_tests_need_the_labs_limit() -> None:
    child = case(
        lab("ggt", 100, "2026-11-01"),
        lab("alt", 1.5, "2026-11-01", unit="ukat/L"),
        birth_date="2015-01-01",
    )
    values = facts(child)
    assert (values["ggt"], values["alt"], values["alp_source"]) == ("unknown", "unknown", "unknown")
    assert values["alt_latest"] == 90  # 1.5 µkat/L
    child["labs"][0]["reference_high"] = 50
    assert facts(child)["ggt"] == "elevated"
    assert facts(child)["ggt_x_uln"] == 2.0


def test_bilirubin_against_1_2_mg_dl_and_in_umol_l() -> None:
    assert facts(case(lab("bilirubin", 1.2, "2026-11-01")))["bilirubin_elevated"] is False
    assert facts(case(lab("bilirubin", 21, "2026-11-01", unit="umol/L")))["bilirubin_elevated"]


def test_bone_or_liver_tests_abnormal_counts_no_test_not_done() -> None:
    toddler = case(lab("alp", 2400, "2026-11-01"), birth_date="2025-06-01")
    assert facts(toddler)["bone_liver_tests_abnormal"] is False
    assert facts(toddler)["under_5"] is True and facts(toddler)["child"] is True
    toddler["labs"].append(lab("vitamin_d", 12, "2026-11-01"))
    assert facts(toddler)["bone_liver_tests_abnormal"] is True


# --- renal: CrCl current, method, dosing CrCl, creatinine rise, CKD-MBD ----------------------


def renal(*labs: dict[str, Any], **clinical: Any) -> dict[str, Any]:
    document = case(*labs, weight_kg=80)
    document["clinical"] = clinical
    return document


def test_crcl_method_measured_cockcroft_gault_or_unknown() -> None:
    measured = facts(renal(lab("crcl", 52, "2026-11-01"), lab("creatinine", 1.0, "2026-11-10")))
    assert (measured["crcl_current"], measured["crcl_method"]) == (52, "measured")
    computed = facts(renal(lab("creatinine", 1.0, "2026-11-10")))
    assert computed["crcl_method"] == "cockcroft-gault"
    assert computed["crcl_current"] == pytest.approx((140 - 66) * 80 / 72)
    assert (computed["crcl_creatinine"], computed["crcl_weight_kg"]) == (1.0, 80)
    unknown = facts(renal(lab("creatinine", 1.0, "2026-08-01")))  # not recent
    assert (unknown["crcl_method"], unknown["renal_function_unknown"]) == ("unknown", True)
    assert "renal_function_unknown" in unknown["context"]
    child = case(lab("creatinine", 0.5, "2026-11-01"), birth_date="2010-01-01", weight_kg=50)
    assert facts(child)["crcl_current"] is None  # Cockcroft-Gault is not valid under 18


@pytest.mark.parametrize(
    ("crcl", "dose", "impairment", "ckd_mbd"),
    [
        (29.9, "not recommended", True, True),
        (30, "3.0 mg", True, True),
        (34.9, "3.0 mg", True, True),
        (35, "3.0 mg", True, True),
        (39.5, "3.0 mg", True, True),
        (44.9, "3.3 mg", True, True),
        (45, "3.3 mg", True, False),
        (49.5, "3.3 mg", True, False),
        (60, "3.5 mg", False, False),
        (60.5, "4.0 mg", False, False),
    ],
)
def test_dosing_crcl_bands_renal_impairment_and_ckd_mbd(
    crcl: float, dose: str, impairment: bool, ckd_mbd: bool
) -> None:
    values = facts(renal(lab("crcl", crcl, "2026-11-01")))
    assert values["za_dosing_crcl"] == crcl
    assert values["za_dosing_dose"] == dose
    assert (values["renal_impairment"], values["ckd_mbd_possible"]) == (impairment, ckd_mbd)


def test_ckd_counts_for_renal_impairment_only_while_crcl_is_unknown() -> None:
    ckd = {"diagnoses": ["chronic_kidney_disease"]}
    assert facts(renal(**ckd))["renal_impairment"] is True
    known = facts(renal(lab("crcl", 75, "2026-11-01"), **ckd))
    assert known["renal_impairment"] is False
    assert known["ckd_mbd_possible"] is True


def test_on_zoledronic_acid_the_dose_follows_the_baseline() -> None:
    therapy = [{"agent": "zoledronic_acid", "start": "2026-03-01", "end": None}]
    document = renal(
        lab("crcl", 65, "2026-02-20"), lab("crcl", 42, "2026-11-01"), therapies=therapy
    )
    values = facts(document)
    assert (values["crcl_baseline"], values["za_dosing_crcl"]) == (65, 65)
    assert values["za_dosing_dose"] == "4.0 mg"
    assert values["za_dose"] == "3.3 mg"  # revision 1's fact: the current CrCl
    off = facts(renal(lab("crcl", 65, "2026-02-20"), lab("crcl", 42, "2026-11-01")))
    assert off["za_dosing_crcl"] == 42


@pytest.mark.parametrize(
    ("baseline", "latest", "rise"),
    [
        (1.0, 1.5, True),
        (1.0, 1.49, False),
        (1.39, 1.89, True),
        (1.4, 1.9, False),
        (1.4, 2.39, False),
        (1.4, 2.4, True),
    ],
)
def test_creatinine_rise_as_the_zoledronic_acid_label_defines_it(
    baseline: float, latest: float, rise: bool
) -> None:
    therapy = [{"agent": "zoledronic_acid", "start": "2026-03-01", "end": None}]
    measured = renal(
        lab("creatinine", baseline, "2026-02-25"),
        lab("creatinine", latest, "2026-11-01"),
        therapies=therapy,
    )
    values = facts(measured)
    assert (values["creatinine_baseline"], values["creatinine_baseline_source"]) == (
        baseline,
        "measured",
    )
    assert values["creatinine_rise"] is rise
    given = renal(
        lab("creatinine", latest, "2026-11-01"), therapies=therapy, creatinine_baseline=baseline
    )
    assert facts(given)["creatinine_rise"] is rise


def test_no_creatinine_rise_without_both_values_or_off_iv_bisphosphonate() -> None:
    therapy = [{"agent": "pamidronate", "start": "2026-03-01", "end": None}]
    assert (
        facts(renal(lab("creatinine", 2.0, "2026-11-01"), therapies=therapy))["creatinine_rise"]
        is False
    )
    off = renal(lab("creatinine", 2.0, "2026-11-01"), creatinine_baseline=1.0)
    assert facts(off)["creatinine_rise"] is False
    assert (
        facts(
            renal(lab("creatinine", 1.0, "2026-11-01"), creatinine_baseline=1.0, therapies=therapy)
        )["creatinine_rise"]
        is False
    )


# --- therapies --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("therapies", "stopped"),
    [
        ([("denosumab", "2024-01-01", "2026-05-01")], True),
        (
            [
                ("denosumab", "2024-01-01", "2026-05-01"),
                ("zoledronic_acid", "2026-11-01", "2026-11-01"),
            ],
            False,
        ),
        ([("denosumab", "2024-01-01", "2026-05-01"), ("alendronate", "2026-12-01", None)], True),
        ([("denosumab", "2024-01-01", "2026-05-01"), ("alendronate", "2026-04-01", None)], True),
        ([("denosumab", "2024-01-01", AS_OF)], False),  # its end is today: still current
        ([("denosumab", "2024-01-01", None)], False),
    ],
)
def test_denosumab_stopped_without_follow_on(
    therapies: list[tuple[str, str, str | None]], stopped: bool
) -> None:
    document = with_clinical(
        case(),
        therapies=[{"agent": a, "start": s, "end": e} for a, s, e in therapies],
    )
    values = facts(document)
    assert values["denosumab_stopped_without_follow_on"] is stopped
    assert values["denosumab_started"] is True


def test_oncology_iv_bisphosphonate_and_the_bisphosphonate_course_end() -> None:
    therapy = [{"agent": "zoledronic_acid", "start": "2026-03-01", "end": None}]
    plain = with_clinical(case(), therapies=therapy, diagnoses=["paget"])
    assert facts(plain)["oncology_iv_bisphosphonate"] is False
    assert facts(plain)["bisphosphonate_course_end"] == "2026-09-01"
    for clinical in ({"diagnoses": ["bone_metastases"]}, {"cancer": "breast"}):
        assert facts(with_clinical(case(), therapies=therapy, **clinical))[
            "oncology_iv_bisphosphonate"
        ]


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 2, 0)])
def test_the_therapy_facts_do_not_depend_on_the_order_courses_are_listed_in(
    order: tuple[int, ...],
) -> None:
    """Of two courses started the same day the most recent is the one ending last (spec §2
    leaves the tie open; an ongoing one ends last), and the summaries list courses by start:
    the same facts whatever the order, so a stored patient and its document agree."""
    courses: list[dict[str, Any]] = [
        {"agent": "zoledronic_acid", "start": "2026-03-01", "end": None},
        {"agent": "alendronate", "start": "2026-03-01", "end": "2026-04-01"},
        {"agent": "denosumab", "start": "2025-01-01", "end": None},
    ]
    document = with_clinical(case(), therapies=[courses[i] for i in order], diagnoses=["paget"])
    values = facts(document)
    assert values["bisphosphonate_course_end"] == "2026-09-01"  # the ongoing one: start + 6 m
    assert (
        values["therapies_summary"].index("denosumab")
        < values["therapies_summary"].index("alendronate")
        < values["therapies_summary"].index("zoledronic acid")
    )
    alendronate = [{**courses[1], "end": end} for end in ("2026-04-01", "2026-05-01")]
    for pair in (alendronate, alendronate[::-1]):
        assert facts(with_clinical(case(), therapies=pair))["alendronate_course_end"] == (
            "2026-05-01"
        )


# --- fracture, CTX timing, bortezomib window --------------------------------------------------


@pytest.mark.parametrize(
    ("fracture", "fracture_date", "current"),
    [
        ("pathological", None, True),
        ("pathological", "2026-08-24", True),
        ("impending", "2026-08-23", False),
        ("healing", "2026-11-01", False),
    ],
)
def test_fracture_current(fracture: str, fracture_date: str | None, current: bool) -> None:
    document = with_clinical(case(), fracture=fracture, fracture_date=fracture_date)
    assert facts(document)["fracture_current"] is current


@pytest.mark.parametrize(
    ("times", "timing"),
    [
        (["09:59"], False),
        (["10:00"], True),  # the latest CTX at 10:00 or later
        ([None], False),  # time of day unknown
        (["07:00", "11:00"], True),
        (["11:00", "07:00"], False),  # exactly 4 h apart, the latest early
        (["11:01", "07:00"], True),  # more than 4 h apart
        (["11:30", None], False),  # an untimed latest; one timed result only
    ],
)
def test_ctx_timing(times: list[str | None], timing: bool) -> None:
    labs = [
        lab("ctx", 300, f"2026-10-{index + 1:02d}" + (f"T{at}" if at else ""))
        for index, at in enumerate(times)
    ]
    assert facts(case(*labs))["ctx_timing"] is timing


def test_in_the_bortezomib_window() -> None:
    document = case(lab("alp", 100, "2026-09-01"), lab("alp", 140, "2026-10-13"))
    document["clinical"] = {
        "diagnoses": ["multiple_myeloma"],
        "myeloma": {"bortezomib_start": "2026-09-01"},
    }
    assert facts(document)["in_bortezomib_window"] is True  # day 42
    document["labs"][1]["collected_at"] = "2026-10-14"
    assert facts(document)["in_bortezomib_window"] is False  # day 43


def test_context_flags_in_the_specs_order() -> None:
    calcium = lab("calcium", 11, "2026-11-01", reference_high=10.4)  # a child: the lab's limit
    document = pregnant(None, lab("alp", 300, "2026-01-01"), calcium)
    document["patient"]["birth_date"] = "2010-01-01"
    assert facts(document)["context"] == [
        "pregnant",
        "child",
        "renal_function_unknown",
        "hypercalcaemia",
        "alp_not_recent",
    ]
