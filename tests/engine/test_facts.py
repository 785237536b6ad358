"""Derived facts (§2): ULN bands, Cockcroft-Gault, RCV, months, dose bands, baselines."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from pathways.engine import FACTS, compute_facts, parse_case
from pathways.engine.dates import add_months, age_in_years, whole_months_between
from pathways.engine.facts import (
    ENGINE_DEFAULTS,
    GROUP_SPECS,
    alp,
    bone_alp,
    cockcroft_gault,
    context,
    flags,
    liver,
    metabolic,
    myeloma,
    patient,
    reference_change_value,
    renal,
    select_dose_band,
    select_uln_band,
    therapies,
)
from pathways.engine.facts.spec import collection_order
from tests.engine.clinical_cases import (
    catalogue,
    heavy_myeloma_case,
    lab,
    man_with_unexplained_elevated_alp,
    merged,
    myeloma_on_zoledronic_acid_14_months,
    myeloma_starting_bortezomib,
    paget_with_elevated_alp_on_alendronate,
)


def facts_of(document: dict[str, Any]) -> dict[str, Any]:
    return compute_facts(parse_case(document), catalogue()).values


# --- calendar arithmetic ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (date(2026, 3, 1), 3, date(2026, 6, 1)),
        (date(2026, 1, 31), 1, date(2026, 2, 28)),
        (date(2028, 1, 31), 1, date(2028, 2, 29)),
        (date(2026, 1, 31), 2, date(2026, 3, 31)),  # from the start, never chained via 28 Feb
        (date(2025, 11, 30), 3, date(2026, 2, 28)),
        (date(2024, 2, 29), 12, date(2025, 2, 28)),
        (date(2026, 5, 15), -5, date(2025, 12, 15)),
    ],
)
def test_add_months_is_calendar_months(start: date, months: int, expected: date) -> None:
    assert add_months(start, months) == expected


@pytest.mark.parametrize(
    ("start", "end", "months"),
    [
        (date(2026, 1, 31), date(2026, 2, 28), 1),
        (date(2026, 1, 31), date(2026, 2, 27), 0),
        (date(2025, 11, 22), date(2026, 11, 22), 12),
        (date(2025, 11, 23), date(2026, 11, 22), 11),
        (date(2024, 11, 22), date(2026, 11, 22), 24),
        (date(2026, 3, 31), date(2026, 4, 30), 1),
        (date(2026, 5, 1), date(2026, 5, 1), 0),
    ],
)
def test_whole_calendar_months_is_the_largest_n_with_start_plus_n_not_after_end(
    start: date, end: date, months: int
) -> None:
    assert whole_months_between(start, end) == months
    assert add_months(start, months) <= end < add_months(start, months + 1)


def test_age_in_whole_years() -> None:
    assert age_in_years(date(2009, 11, 22), date(2026, 11, 21)) == 16
    assert age_in_years(date(2009, 11, 22), date(2026, 11, 22)) == 17
    assert age_in_years(date(2008, 2, 29), date(2026, 2, 28)) == 18


# --- ULN of total ALP by age and sex at each result's date -------------------------------------


@pytest.mark.parametrize(
    ("sex", "birth", "on", "uln"),
    [
        ("male", date(2026, 11, 1), date(2026, 11, 15), 248),  # 14 days
        ("male", date(2026, 11, 1), date(2026, 11, 16), 469),  # 15 days
        ("female", date(2025, 11, 22), date(2026, 11, 21), 469),  # 364 days
        ("female", date(2025, 11, 22), date(2026, 11, 22), 335),  # 1 year
        ("male", date(2016, 11, 22), date(2026, 11, 21), 335),  # 9 years
        ("male", date(2016, 11, 22), date(2026, 11, 22), 417),  # 10 years
        ("female", date(2013, 11, 22), date(2026, 11, 22), 254),  # 13 years
        ("male", date(2013, 11, 22), date(2026, 11, 22), 468),
        ("female", date(2011, 11, 22), date(2026, 11, 22), 117),  # 15 years
        ("male", date(2011, 11, 22), date(2026, 11, 22), 331),
        ("female", date(2009, 11, 22), date(2026, 11, 21), 117),  # 16 years
        ("female", date(2009, 11, 22), date(2026, 11, 22), 104),  # 17 years
        ("male", date(2009, 11, 22), date(2026, 11, 22), 149),  # 17 years
        ("male", date(2007, 11, 22), date(2026, 11, 21), 149),  # 18 years
        ("male", date(2007, 11, 22), date(2026, 11, 22), 129),  # 19 years
        ("female", date(1950, 3, 2), date(2026, 11, 22), 104),
    ],
)
def test_uln_band_edges(sex: str, birth: date, on: date, uln: float) -> None:
    band = select_uln_band(catalogue().uln_bands, "alp", sex, birth, on)
    assert band is not None and band.uln == uln


def test_each_alp_uses_the_uln_at_its_own_collection_date() -> None:
    document = {
        "as_of": "2026-11-22",
        "patient": {"birth_date": "2009-11-22", "sex": "female"},
        "labs": [lab("alp", 110, "2026-11-21T08:00"), lab("alp", 110, "2026-11-22T08:00")],
    }
    points = compute_facts(parse_case(document), catalogue()).alp_points
    assert [(p.uln, p.uln_source, p.elevated) for p in points] == [
        (117, "built-in: female 15 \u2013 < 17 y", False),
        (104, "built-in: female ≥ 17 y", True),
    ]


def test_the_labs_own_reference_high_wins() -> None:
    document = merged(
        man_with_unexplained_elevated_alp(),
        labs=[lab("alp", 250, "2026-11-02", reference_high=300)],
    )
    values = facts_of(document)
    assert (values["alp_uln"], values["alp_uln_source"], values["alp_elevated"]) == (
        300,
        "lab",
        False,
    )


def test_latest_alp_facts_and_x_uln() -> None:
    values = facts_of(paget_with_elevated_alp_on_alendronate())
    assert values["alp_latest"] == 412
    assert values["alp_latest_date"] == "2026-10-01"
    assert values["alp_latest_time"] == "08:15"
    assert values["alp_x_uln"] == pytest.approx(3.1938, abs=1e-4)
    assert values["alp_elevated"] is True


def test_no_alp_means_not_elevated_and_null_values() -> None:
    values = facts_of(merged(man_with_unexplained_elevated_alp(), labs=[]))
    assert values["alp_measured"] is False and values["alp_elevated"] is False
    assert values["alp_latest"] is None and values["alp_x_uln"] is None


# --- serial change: RCV -------------------------------------------------------------------------


def test_rcv_with_the_default_parameters_is_about_16_9_percent() -> None:
    assert reference_change_value(5.3, 3.0, 1.96) == pytest.approx(16.88, abs=0.01)
    values = facts_of(man_with_unexplained_elevated_alp())
    assert values["rcv_pct"] == pytest.approx(16.88, abs=0.01)


def test_change_from_the_previous_alp_and_its_significance_per_point() -> None:
    document = merged(
        man_with_unexplained_elevated_alp(),
        labs=[
            lab("alp", 100, "2026-06-01"),
            lab("alp", 117, "2026-08-01"),
            lab("alp", 100, "2026-11-01"),
        ],
    )
    facts = compute_facts(parse_case(document), catalogue())
    changes = [(p.change_pct, p.significant_change) for p in facts.alp_points]
    assert changes[0] == (None, False)
    assert changes[1] == (pytest.approx(17.0), True)
    assert changes[2][0] == pytest.approx(-14.53, abs=0.01) and changes[2][1] is False
    assert facts.values["alp_significant_rise"] is False
    assert facts.rcv_pct == facts.values["rcv_pct"]


def test_alp_series_is_sorted_by_collection_time() -> None:
    document = merged(
        man_with_unexplained_elevated_alp(),
        labs=[lab("alp", 300, "2026-11-02T15:00"), lab("alp", 100, "2026-11-02T07:00")],
    )
    values = facts_of(document)
    assert (values["alp_previous"], values["alp_latest"]) == (100, 300)


# --- sampling time ------------------------------------------------------------------------------


def test_sampling_time_spread_counts_only_timed_samples() -> None:
    document = merged(
        man_with_unexplained_elevated_alp(),
        labs=[
            lab("alp", 100, "2026-06-01T08:00"),
            lab("alp", 100, "2026-07-01"),
            lab("alp", 100, "2026-08-01T14:30"),
        ],
    )
    values = facts_of(document)
    assert values["alp_timed_count"] == 2
    assert values["alp_time_spread_hours"] == 6.5


# --- bone ALP -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bone_alp", "status"),
    [
        (None, "unknown"),
        (lab("bone_alp", 20, "2026-11-02"), "normal"),
        (lab("bone_alp", 20.1, "2026-11-02"), "elevated"),
        (lab("bone_alp", 25, "2026-11-02", reference_high=30), "normal"),
        (lab("bone_alp", 0.6, "2026-11-02", unit="ukat/L", reference_high=0.5), "elevated"),
    ],
)
def test_bone_alp_status(bone_alp: dict[str, Any] | None, status: str) -> None:
    document = man_with_unexplained_elevated_alp()
    if bone_alp:
        document["labs"].append(bone_alp)
    assert facts_of(document)["bone_alp"] == status


def test_the_latest_bone_alp_decides() -> None:
    document = man_with_unexplained_elevated_alp()
    document["labs"] += [lab("bone_alp", 40, "2026-09-01"), lab("bone_alp", 12, "2026-11-01")]
    assert facts_of(document)["bone_alp"] == "normal"


# --- pathway, etiology, metabolic bone disease -------------------------------------------------


@pytest.mark.parametrize(
    ("diagnoses", "fracture", "pathway", "etiology", "metabolic"),
    [
        ([], "none", "bone", False, False),
        (["mgus"], "none", "bone", False, False),  # MGUS alone: the bone pathway (revision 2)
        (["multiple_myeloma"], "none", "myeloma", False, False),
        (["chronic_kidney_disease"], "none", "bone", False, False),
        ([], "healing", "bone", True, False),
        (["osteomalacia"], "none", "bone", True, True),
        (["hiv_aids"], "none", "bone", True, False),
        (["vitamin_d_deficiency"], "none", "bone", True, True),
    ],
)
def test_pathway_etiology_and_metabolic_bone_disease(
    diagnoses: list[str], fracture: str, pathway: str, etiology: bool, metabolic: bool
) -> None:
    document = merged(
        man_with_unexplained_elevated_alp(), clinical={"diagnoses": diagnoses, "fracture": fracture}
    )
    values = facts_of(document)
    assert (
        values["pathway"],
        values["etiology_established"],
        values["metabolic_bone_disease"],
    ) == (
        pathway,
        etiology,
        metabolic,
    )


# --- therapies ----------------------------------------------------------------------------------


def test_current_therapy_flags_and_months_on_iv_bisphosphonate() -> None:
    values = facts_of(myeloma_on_zoledronic_acid_14_months())
    assert values["on_iv_bisphosphonate"] and values["on_zoledronic_acid"]
    assert values["on_bisphosphonate"] and values["on_bone_targeted_agent"]
    assert not values["on_denosumab"] and not values["on_pamidronate"]
    assert values["months_on_iv_bisphosphonate"] == 14
    assert values["iv_bisphosphonate_start"] == "2025-09-15"
    assert values["iv_bisphosphonate_next_anniversary"] == "2026-12-15"


def test_a_therapy_ending_on_as_of_is_current_and_starting_after_it_is_not() -> None:
    document = merged(
        man_with_unexplained_elevated_alp(),
        clinical={
            "therapies": [
                {"agent": "denosumab", "start": "2026-01-01", "end": "2026-11-22"},
                {"agent": "alendronate", "start": "2026-11-23"},
            ]
        },
    )
    values = facts_of(document)
    assert values["on_denosumab"] is True
    assert values["on_alendronate"] is False
    assert values["bisphosphonate_ever"] is False
    assert [t["current"] for t in values["therapies"]] == [True, False]
    assert [t["agent"] for t in values["current_therapies"]] == ["denosumab"]


def test_per_therapy_alp_landmarks() -> None:
    document = merged(
        paget_with_elevated_alp_on_alendronate(),
        labs=[
            lab("alp", 412, "2025-10-20", reference_high=129),
            lab("alp", 100, "2026-05-01", reference_high=129),
            lab("alp", 126, "2026-11-10", reference_high=129),
        ],
        clinical={
            "therapies": [{"agent": "alendronate", "start": "2025-11-01", "end": "2026-05-01"}]
        },
    )
    (therapy,) = facts_of(document)["therapies"]
    assert therapy["months_since_end"] == 6
    assert therapy["alp_baseline"] == 412 and therapy["alp_baseline_elevated"] is True
    assert therapy["alp_lowest_since_start"] == 100
    assert therapy["alp_latest_after_end"] == 126
    assert therapy["alp_rise_after_end_pct"] == 26.0
    assert therapy["alp_fall_from_baseline_pct"] == pytest.approx(69.417, abs=0.001)
    assert "alendronate 2025-11-01 to 2026-05-01" in therapy["summary"]


def test_alendronate_course_end_defaults_to_start_plus_six_months() -> None:
    values = facts_of(paget_with_elevated_alp_on_alendronate())
    assert values["alendronate_course_end"] == "2026-07-10"


# --- renal function -----------------------------------------------------------------------------


def test_cockcroft_gault_with_the_female_factor() -> None:
    assert cockcroft_gault(71, 78, 1.5, "male") == pytest.approx(49.833, abs=0.001)
    assert cockcroft_gault(71, 78, 1.5, "female") == pytest.approx(49.833 * 0.85, abs=0.001)


def test_crcl_current_prefers_a_measured_crcl() -> None:
    document = myeloma_on_zoledronic_acid_14_months()
    document["labs"].append(lab("creatinine", 2.0, "2026-11-10"))
    values = facts_of(document)
    assert (values["crcl_current"], values["crcl_current_source"]) == (75, "measured")


def test_crcl_current_from_the_latest_creatinine_uses_age_at_as_of() -> None:
    document = myeloma_on_zoledronic_acid_14_months()
    document["labs"] = [
        lab("creatinine", 3.0, "2026-01-01"),
        lab("creatinine", 132.63, "2026-11-02", unit="umol/L"),
    ]
    values = facts_of(document)  # man born 1955-06-01: 71 at as_of, 78 kg, 1.5 mg/dL
    assert values["crcl_current"] == pytest.approx(49.833, abs=0.001)
    assert values["crcl_current_source"] == "cockcroft_gault"
    assert values["renal_impairment"] is True


def test_no_weight_means_no_cockcroft_gault() -> None:
    document = myeloma_on_zoledronic_acid_14_months()
    del document["patient"]["weight_kg"]
    document["labs"] = [lab("creatinine", 1.5, "2026-11-02")]
    assert facts_of(document)["crcl_current"] is None


def test_crcl_baseline_from_a_creatinine_before_the_start_uses_age_at_its_date() -> None:
    document = myeloma_on_zoledronic_acid_14_months()
    document["labs"] = [lab("creatinine", 1.0, "2025-05-31"), lab("crcl", 70, "2026-11-02")]
    values = facts_of(document)  # born 1955-06-01: 69 on 2025-05-31
    assert values["crcl_baseline"] == pytest.approx((140 - 69) * 78 / 72, abs=0.001)
    assert values["crcl_baseline_source"] == "cockcroft_gault"
    assert values["crcl_baseline_date"] == "2025-05-31"


def test_crcl_baseline_prefers_the_clinical_value() -> None:
    document = merged(myeloma_on_zoledronic_acid_14_months(), clinical={"crcl_baseline": 90})
    document["labs"].append(lab("crcl", 80, "2025-09-01"))
    values = facts_of(document)
    assert (values["crcl_baseline"], values["crcl_baseline_source"]) == (90, "clinical")


@pytest.mark.parametrize(
    ("baseline", "current", "deteriorated"),
    [(80, 72, False), (80, 71.9, True), (70, 63, False), (70, 62.9, True), (100, 90, False)],
)
def test_renal_deterioration_is_strictly_more_than_ten_percent(
    baseline: float, current: float, deteriorated: bool
) -> None:
    document = merged(myeloma_on_zoledronic_acid_14_months(), clinical={"crcl_baseline": baseline})
    document["labs"] = [lab("crcl", current, "2026-11-02")]
    assert facts_of(document)["renal_deterioration"] is deteriorated


def test_renal_deterioration_needs_an_iv_bisphosphonate() -> None:
    document = merged(
        myeloma_on_zoledronic_acid_14_months(), clinical={"crcl_baseline": 80, "therapies": []}
    )
    document["labs"] = [lab("crcl", 50, "2026-11-02")]
    assert facts_of(document)["renal_deterioration"] is False


@pytest.mark.parametrize(
    ("crcl", "dose"),
    [
        (10, None),
        (29.9, None),
        (30, 3.0),
        (39, 3.0),
        (39.5, 3.0),
        (40, 3.3),
        (49.5, 3.3),
        (50, 3.5),
        (60, 3.5),
        (60.1, 4.0),
        (120, 4.0),
    ],
)
def test_zoledronic_acid_dose_band(crcl: float, dose: float | None) -> None:
    band = select_dose_band(catalogue().za_dose_bands, crcl)
    assert band is not None and band.dose_mg == dose


def test_za_dose_text_follows_crcl_current() -> None:
    document = myeloma_on_zoledronic_acid_14_months()
    document["labs"] = [lab("crcl", 45, "2026-11-02")]
    values = facts_of(document)
    assert (values["za_dose_mg"], values["za_dose"]) == (3.3, "3.3 mg")
    document["labs"] = [lab("crcl", 25, "2026-11-02")]
    assert facts_of(document)["za_dose"] == "not recommended"


# --- myeloma: ALP around bortezomib ------------------------------------------------------------


@pytest.mark.parametrize(
    ("later_labs", "rise"),
    [
        ([lab("alp", 100, "2026-10-13")], 25.0),  # day 42
        ([lab("alp", 100, "2026-10-14")], None),  # day 43: outside
        ([lab("alp", 90, "2026-09-01")], None),  # on the start day: that is the baseline
        ([lab("alp", 90, "2026-09-02"), lab("alp", 120, "2026-10-01")], 50.0),
    ],
)
def test_alp_rise_by_day_42(later_labs: list[dict[str, Any]], rise: float | None) -> None:
    document = myeloma_starting_bortezomib()
    document["labs"] += later_labs
    facts = compute_facts(parse_case(document), catalogue())
    assert facts.values["mm_alp_rise_day42_pct"] == rise
    assert facts.bortezomib_baseline_date is not None


# --- the vocabulary rule editors see -----------------------------------------------------------

_CEL_TYPES: dict[str, tuple[type, ...]] = {
    "bool": (bool,),
    "int": (int,),
    "double": (float, int),
    "string": (str,),
    "date": (str,),
    "list<string>": (list,),
    "list<therapy>": (list,),
}


def test_facts_match_the_published_vocabulary_names_and_types() -> None:
    values = facts_of(heavy_myeloma_case())
    assert set(values) == {spec.name for spec in FACTS}
    for spec in FACTS:
        value = values[spec.name]
        assert value is None or isinstance(value, _CEL_TYPES[spec.type]), spec.name
        assert isinstance(spec.example, _CEL_TYPES[spec.type]), spec.name
        if spec.type == "bool":
            assert isinstance(value, bool), f"{spec.name} must never be null"
    therapy_fields = {
        field.name for field in next(s for s in FACTS if s.name == "therapies").fields
    }
    for therapy in values["therapies"]:
        assert set(therapy) == therapy_fields


def test_dates_are_iso_strings_for_cel_and_dates_for_python() -> None:
    facts = compute_facts(parse_case(myeloma_starting_bortezomib()), catalogue())
    assert facts.values["mm_bortezomib_start"] == "2026-09-01"
    assert facts.dates["mm_bortezomib_start"] == date(2026, 9, 1)
    assert facts.alp_points[0].collected_time is None
    assert isinstance(facts.alp_points[0].collected_on, date)


def test_each_fact_group_computes_exactly_its_published_entries_in_their_order() -> None:
    case = parse_case(heavy_myeloma_case())
    rule_set = catalogue()
    params = rule_set.parameter_values()
    labs = sorted(case.labs, key=collection_order)

    def results(test: str) -> list[Any]:
        return [lab for lab in labs if lab.test == test]

    params = {**ENGINE_DEFAULTS, **params}
    points = alp.alp_series(results("alp"), case.patient, rule_set.uln_bands, 16.9)
    therapy_values, _ = therapies.therapies_facts(case.clinical.therapies, case.as_of, points)
    bone = bone_alp.bone_alp_facts(
        results("bone_alp"),
        case.patient,
        rule_set.uln_bands,
        mass_uln=params["bone_alp_mass_uln"],
        menopause_age=51,
    )
    by_test = {test: results(test) for test in ("ggt", "alt", "bilirubin")}
    liver_values = liver.liver_facts(
        by_test,
        case.patient,
        rule_set.uln_bands,
        as_of=case.as_of,
        recent_days=90,
        bone_alp=bone["bone_alp"],
    )
    computed = {
        patient: patient.patient_facts(case, ["alp"]),
        alp: alp.alp_facts(points, 16.9, rcv_rise=18.4, rcv_fall=15.5, persistence_days=28),
        bone_alp: bone,
        liver: liver_values,
        context: context.clinical_context_facts(case.clinical, case.as_of, params=params),
        metabolic: metabolic.metabolic_facts(case.clinical, params=params),
        therapies: therapy_values,
        renal: renal.renal_facts(
            case,
            results("crcl"),
            results("creatinine"),
            iv_bisphosphonate_start=therapy_values["iv_bisphosphonate_start"],
            on_iv_bisphosphonate=therapy_values["on_iv_bisphosphonate"],
            dose_bands=rule_set.za_dose_bands,
            params=params,
        ),
        myeloma: myeloma.myeloma_facts(case.clinical.myeloma, points),
        flags: flags.flag_facts({}),
    }
    assert tuple(group.SPECS for group in computed) == GROUP_SPECS
    for group, values in computed.items():
        assert list(values) == [spec.name for spec in group.SPECS], group.__name__
