"""The case document (§1): parsing, unit conversion, every validation error and its path."""

from __future__ import annotations

import json
from datetime import date, time
from typing import Any

import pytest

from pathways.engine import (
    UNITS,
    CaseInvalid,
    FieldError,
    case_json_schema,
    case_to_document,
    parse_case,
    parse_case_json,
)
from tests.engine.clinical_cases import (
    heavy_myeloma_case,
    lab,
    man_with_unexplained_elevated_alp,
    merged,
    myeloma_on_zoledronic_acid_14_months,
    paget_with_elevated_alp_on_alendronate,
)


def errors_of(document: Any) -> list[FieldError]:
    with pytest.raises(CaseInvalid) as raised:
        parse_case(document)
    return raised.value.errors


def error_map(document: Any) -> dict[str, str]:
    return {error.field: error.message for error in errors_of(document)}


def with_labs(*labs: dict[str, Any]) -> dict[str, Any]:
    return merged(man_with_unexplained_elevated_alp(), labs=list(labs))


# --- parsing and defaults -----------------------------------------------------------------


def test_it_parses_the_spec_example() -> None:
    case = parse_case(paget_with_elevated_alp_on_alendronate())
    assert case.as_of == date(2026, 11, 22)
    assert case.patient.weight_kg == 64.0
    (alp,) = case.labs
    assert (alp.collected_on, alp.collected_time) == (date(2026, 10, 1), time(8, 15))
    assert (alp.canonical_value, alp.canonical_reference_high) == (412.0, 129.0)
    assert case.clinical.diagnoses == ("paget",)
    assert case.clinical.therapies[0].end is None


def test_absent_fields_take_the_spec_defaults() -> None:
    case = parse_case(
        {"as_of": "2026-11-22", "patient": {"birth_date": "1980-01-01", "sex": "male"}}
    )
    assert case.labs == ()
    assert case.patient.pregnant is False and case.patient.weight_kg is None
    clinical = case.clinical
    assert (clinical.bone_scan, clinical.fracture, clinical.cancer) == ("not_done", "none", None)
    assert clinical.myeloma.response is None and clinical.therapies == ()


def test_as_of_defaults_to_the_given_today() -> None:
    document = man_with_unexplained_elevated_alp()
    del document["as_of"]
    assert parse_case(document, today=date(2026, 12, 1)).as_of == date(2026, 12, 1)


def test_as_of_defaults_to_the_real_today_without_an_argument() -> None:
    document = {"patient": {"birth_date": "1980-01-01", "sex": "female"}}
    assert parse_case(document).as_of == date.today()


def test_a_bare_date_means_the_time_of_day_is_unknown() -> None:
    case = parse_case(with_labs(lab("alp", 100, "2026-11-02")))
    assert case.labs[0].collected_time is None


def test_seconds_are_accepted() -> None:
    case = parse_case(with_labs(lab("alp", 100, "2026-11-02T07:05:09")))
    assert case.labs[0].collected_time == time(7, 5, 9)


def test_parse_case_json_accepts_text_and_bytes() -> None:
    text = json.dumps(paget_with_elevated_alp_on_alendronate())
    assert parse_case_json(text) == parse_case_json(text.encode())


# --- unit conversion --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("test", "value", "unit", "canonical", "canonical_unit"),
    [
        ("alp", 6.87, "ukat/L", 412.2, "U/L"),  # 1 µkat/L = 60 U/L
        ("ggt", 0.5, "ukat/L", 30.0, "U/L"),
        ("bone_alp", 0.5, "ukat/L", 30.0, "U/L"),  # activity stays activity
        ("bone_alp", 35, "ug/L", 35.0, "ug/L"),
        ("creatinine", 88.42, "umol/L", 1.0, "mg/dL"),  # 88.42 µmol/L = 1 mg/dL
        ("creatinine", 132.63, "umol/L", 1.5, "mg/dL"),
        ("calcium", 2.5, "mmol/L", 10.02, "mg/dL"),  # 1 mmol/L = 4.008 mg/dL
        ("vitamin_d", 49.92, "nmol/L", 20.0, "ng/mL"),  # 2.496 nmol/L = 1 ng/mL
        ("ctx", 450, "pg/mL", 450.0, "ng/L"),  # ng/L = pg/mL
        ("bilirubin", 17.1, "umol/L", 1.0, "mg/dL"),  # 17.1 µmol/L = 1 mg/dL
        ("crcl", 55, "mL/min", 55.0, "mL/min"),
    ],
)
def test_units_convert_to_the_canonical_unit(
    test: str, value: float, unit: str, canonical: float, canonical_unit: str
) -> None:
    extra = {"reference_high": 0.6} if test == "bone_alp" and unit != "ug/L" else {}
    (converted,) = parse_case(with_labs(lab(test, value, "2026-11-02", unit=unit, **extra))).labs
    assert converted.canonical_value == pytest.approx(canonical)
    assert converted.canonical_unit == canonical_unit
    assert (converted.value, converted.unit) == (value, unit)  # kept as entered


def test_reference_high_is_converted_too() -> None:
    (alp,) = parse_case(with_labs(lab("alp", 4.2, "2026-11-02", "ukat/L", 2.15))).labs
    assert alp.canonical_reference_high == pytest.approx(129.0)
    assert alp.reference_high == 2.15


def test_canonical_units_are_listed_first() -> None:
    assert UNITS["alp"][0] == "U/L" and UNITS["creatinine"][0] == "mg/dL"


def test_a_unit_the_test_does_not_accept_names_the_lab_and_the_allowed_units() -> None:
    assert error_map(with_labs(lab("alp", 4, "2026-11-02", unit="mmol/L"))) == {
        "labs[0].unit": '"mmol/L" is not a unit for alp; use one of U/L, ukat/L'
    }
    assert error_map(with_labs(lab("crcl", 4, "2026-11-02", unit="mL/s"))) == {
        "labs[0].unit": '"mL/s" is not a unit for crcl; use one of mL/min'
    }


# --- every validation error with its path -----------------------------------------------------


def test_a_lab_after_as_of_is_rejected() -> None:
    document = with_labs(lab("alp", 1, "2026-11-02"), lab("ggt", 1, "2026-11-02"))
    document["labs"].append(lab("alp", 100, "2026-11-23"))
    assert error_map(document) == {"labs[2].collected_at": "after as_of"}


def test_a_lab_on_as_of_is_accepted() -> None:
    assert parse_case(with_labs(lab("alp", 100, "2026-11-22T23:59")))


def test_an_unknown_key_is_rejected_with_its_path() -> None:
    document = man_with_unexplained_elevated_alp()
    document["patient"]["birth_dat"] = "1960-05-10"
    assert error_map(document) == {"patient.birth_dat": "unknown field"}


def test_unknown_keys_are_rejected_at_every_level() -> None:
    document = myeloma_on_zoledronic_acid_14_months()
    document["extra"] = 1
    document["labs"][1]["flag"] = "H"
    document["clinical"]["myeloma"]["stage"] = 3
    document["clinical"]["therapies"][0]["dose"] = 4
    document["clinical"]["notes"] = ""
    assert error_map(document) == {
        "extra": "unknown field",
        "labs[1].flag": "unknown field",
        "clinical.notes": "unknown field",
        "clinical.myeloma.stage": "unknown field",
        "clinical.therapies[0].dose": "unknown field",
    }


def test_missing_required_fields_say_required() -> None:
    assert error_map({"as_of": "2026-11-22"}) == {"patient": "required"}
    assert error_map({"as_of": "2026-11-22", "patient": {"sex": "male"}}) == {
        "patient.birth_date": "required"
    }
    document = with_labs({"test": "alp", "unit": "U/L"})
    assert error_map(document) == {"labs[0].value": "required", "labs[0].collected_at": "required"}
    document = merged(
        man_with_unexplained_elevated_alp(), clinical={"therapies": [{"start": "2026-01-01"}]}
    )
    assert error_map(document) == {"clinical.therapies[0].agent": "required"}


def test_birth_date_after_as_of() -> None:
    document = merged(man_with_unexplained_elevated_alp(), labs=[])
    document["patient"]["birth_date"] = "2026-11-23"
    assert error_map(document) == {"patient.birth_date": "after as_of"}


def test_a_lab_collected_before_birth() -> None:
    document = with_labs(lab("alp", 100, "1960-05-09"))
    assert error_map(document) == {"labs[0].collected_at": "before patient.birth_date"}


def test_therapy_end_before_start() -> None:
    document = merged(
        man_with_unexplained_elevated_alp(),
        clinical={
            "therapies": [{"agent": "alendronate", "start": "2026-05-01", "end": "2026-04-30"}]
        },
    )
    assert error_map(document) == {"clinical.therapies[0].end": "before start"}


def test_a_one_day_therapy_is_accepted() -> None:
    therapy = {"agent": "zoledronic_acid", "start": "2026-05-01", "end": "2026-05-01"}
    assert parse_case(
        merged(man_with_unexplained_elevated_alp(), clinical={"therapies": [therapy]})
    )


def test_pregnant_male() -> None:
    document = man_with_unexplained_elevated_alp()
    document["patient"]["pregnant"] = True
    assert error_map(document) == {"patient.pregnant": "true for a male patient"}


def test_two_labs_with_the_same_test_and_time_name_both_indexes() -> None:
    document = with_labs(
        lab("alp", 100, "2026-11-02T08:00"),
        lab("alp", 110, "2026-11-02T09:00"),
        lab("alp", 120, "2026-11-02T08:00"),
    )
    ((field, message),) = error_map(document).items()
    assert field == "labs[2]"
    assert message.startswith("conflicts with labs[0]: ")


def test_same_time_for_different_tests_is_fine() -> None:
    assert parse_case(with_labs(lab("alp", 100, "2026-11-02"), lab("ggt", 40, "2026-11-02")))


def test_bone_alp_activity_needs_a_reference_high() -> None:
    for unit in ("U/L", "ukat/L"):
        message = error_map(with_labs(lab("bone_alp", 30, "2026-11-02", unit=unit)))
        assert list(message) == ["labs[0].reference_high"]
        assert unit in message["labs[0].reference_high"]
    assert parse_case(with_labs(lab("bone_alp", 30, "2026-11-02", unit="ug/L")))


def test_weight_must_be_positive() -> None:
    for weight in (0, -1.5):
        document = man_with_unexplained_elevated_alp()
        document["patient"]["weight_kg"] = weight
        assert error_map(document) == {"patient.weight_kg": "must be greater than 0"}


def test_crcl_baseline_must_not_be_negative() -> None:
    document = merged(man_with_unexplained_elevated_alp(), clinical={"crcl_baseline": -1})
    assert error_map(document) == {"clinical.crcl_baseline": "must not be negative"}
    assert parse_case(merged(man_with_unexplained_elevated_alp(), clinical={"crcl_baseline": 0}))


def test_lab_values_must_not_be_negative_and_reference_high_must_be_positive() -> None:
    assert error_map(with_labs(lab("alp", -1, "2026-11-02"))) == {
        "labs[0].value": "must not be negative"
    }
    assert error_map(with_labs(lab("alp", 1, "2026-11-02", reference_high=0))) == {
        "labs[0].reference_high": "must be greater than 0"
    }


@pytest.mark.parametrize(
    ("section", "key", "value", "allowed"),
    [
        ("patient", "sex", "other", "female, male"),
        ("clinical", "cancer", "colon", "breast, prostate, renal, lung, other"),
        ("clinical", "bone_scan", "done", "not_done, normal, focal_lesions, diffuse"),
        ("clinical", "fracture", "old", "none, healing, pathological, impending"),
    ],
)
def test_unknown_enum_values_list_the_allowed_ones(
    section: str, key: str, value: str, allowed: str
) -> None:
    document = merged(man_with_unexplained_elevated_alp(), **{section: {key: value}})
    assert error_map(document) == {f"{section}.{key}": f'"{value}" is not one of: {allowed}'}


def test_unknown_enum_values_in_lists_and_nested_objects() -> None:
    document = merged(
        man_with_unexplained_elevated_alp(),
        clinical={
            "diagnoses": ["paget", "pagets"],
            "myeloma": {"response": "MR"},
            "therapies": [{"agent": "risedronate", "start": "2026-01-01"}],
        },
    )
    document["labs"][0]["test"] = "alkphos"
    errors = error_map(document)
    assert set(errors) == {
        "labs[0].test",
        "clinical.diagnoses[1]",
        "clinical.myeloma.response",
        "clinical.therapies[0].agent",
    }
    assert errors["clinical.myeloma.response"] == '"MR" is not one of: CR, VGPR, PR, SD, PD'
    assert errors["labs[0].test"].startswith('"alkphos" is not one of: alp, bone_alp')


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("412", "must be a number"),
        (True, "must be a number"),
        (None, "must not be null"),
        (float("nan"), "must be a finite number"),
        (float("inf"), "must be a finite number"),
    ],
)
def test_lab_values_must_be_json_numbers(value: Any, message: str) -> None:
    assert error_map(with_labs(lab("alp", value, "2026-11-02"))) == {"labs[0].value": message}


@pytest.mark.parametrize("value", ["true", 1, 0, None])
def test_booleans_must_be_json_booleans(value: Any) -> None:
    document = merged(man_with_unexplained_elevated_alp(), clinical={"bone_pain": value})
    assert list(error_map(document)) == ["clinical.bone_pain"]


@pytest.mark.parametrize(
    "collected_at",
    [
        "2026-02-30",
        "2026-11-02 08:00",
        "2026-11-02T8:00",
        "2026-11-02T08:00Z",
        "2026-11-02T08:00+01:00",
        "2026-11-02T24:00",
        "02/11/2026",
        "",
        "2026-11-02T08",
    ],
)
def test_bad_datetimes_are_rejected(collected_at: str) -> None:
    errors = error_map(with_labs(lab("alp", 100, collected_at)))
    assert list(errors) == ["labs[0].collected_at"]
    assert "YYYY-MM-DD" in errors["labs[0].collected_at"]


@pytest.mark.parametrize(
    "text", ["2026-11-22T08:00", "22.11.2026", "2026-1-2", "\uff12\uff10\uff12\uff16-11-22"]
)
def test_dates_are_strictly_yyyy_mm_dd(text: str) -> None:
    assert list(error_map(merged(man_with_unexplained_elevated_alp(), as_of=text))) == ["as_of"]
    document = merged(
        man_with_unexplained_elevated_alp(),
        clinical={"therapies": [{"agent": "alendronate", "start": text}]},
    )
    assert list(error_map(document)) == ["clinical.therapies[0].start"]


def test_a_top_level_non_object_is_an_error_on_the_document() -> None:
    documents: list[Any] = [[], "case", 3, None]
    for document in documents:
        assert error_map(document) == {"(document)": "must be a JSON object"}


def test_invalid_json_text_is_an_error_on_the_document() -> None:
    for text in ("{", b"\xff\xfe", '{"as_of": "2026-11-22", "as_of": "2026-11-21"}'):
        with pytest.raises(CaseInvalid) as raised:
            parse_case_json(text)
        assert [error.field for error in raised.value.errors] == ["(document)"]


def test_wrong_container_types_are_reported() -> None:
    assert error_map(merged(man_with_unexplained_elevated_alp(), labs={})) == {
        "labs": "must be a list"
    }
    assert error_map(merged(man_with_unexplained_elevated_alp(), clinical=[])) == {
        "clinical": "must be an object"
    }
    document = merged(man_with_unexplained_elevated_alp(), clinical={"therapies": "alendronate"})
    assert error_map(document) == {"clinical.therapies": "must be a list"}


def test_all_errors_are_collected_not_only_the_first() -> None:
    document = heavy_myeloma_case()
    document["patient"]["birth_dat"] = "x"
    document["patient"]["sex"] = "male"  # pregnant stays false: no error from that
    document["labs"][0]["unit"] = "IU"
    document["labs"][3]["collected_at"] = "2027-01-01"
    document["clinical"]["crcl_baseline"] = -3
    document["clinical"]["therapies"][1]["end"] = "2022-01-01"
    document["clinical"]["diagnoses"].append("gout")
    fields = [error.field for error in errors_of(document)]
    assert fields == [
        "patient.birth_dat",
        "labs[0].unit",
        "labs[3].collected_at",
        "clinical.diagnoses[2]",
        "clinical.crcl_baseline",
        "clinical.therapies[1].end",
    ]


def test_semantic_errors_are_still_found_next_to_structural_ones() -> None:
    document = man_with_unexplained_elevated_alp()
    document["patient"]["weight"] = 80  # a typo: unknown field
    document["patient"]["sex"] = "male"
    document["patient"]["pregnant"] = True
    errors = error_map(document)
    assert errors == {
        "patient.weight": "unknown field",
        "patient.pregnant": "true for a male patient",
    }


def test_case_invalid_lists_every_error_in_its_message() -> None:
    document = with_labs(lab("alp", -1, "2026-11-02", unit="IU"))
    with pytest.raises(CaseInvalid) as raised:
        parse_case(document)
    assert str(raised.value).splitlines() == [
        "labs[0].value: must not be negative",
        'labs[0].unit: "IU" is not a unit for alp; use one of U/L, ukat/L',
    ]


# --- back to a document ----------------------------------------------------------------------


def test_case_to_document_round_trips_with_every_key() -> None:
    case = parse_case(heavy_myeloma_case())
    document = case_to_document(case)
    assert parse_case(document) == case
    assert list(document) == ["as_of", "patient", "labs", "clinical"]
    assert list(document["patient"]) == [
        "birth_date",
        "sex",
        "pregnant",
        "gestational_weeks",
        "postmenopausal",
        "weight_kg",
    ]
    assert list(document["labs"][0]) == [
        "test",
        "value",
        "unit",
        "collected_at",
        "reference_high",
        "reference_low",
    ]
    assert document["clinical"]["myeloma"]["treatment_start"] == "2026-09-01"
    assert json.loads(json.dumps(document)) == document


def test_case_to_document_keeps_units_as_entered_and_omits_an_unknown_time() -> None:
    document = case_to_document(
        parse_case(
            with_labs(
                lab("alp", 6.87, "2026-11-02", "ukat/L"), lab("ggt", 1, "2026-11-02T08:05:07")
            )
        )
    )
    assert document["labs"][0] == {
        "test": "alp",
        "value": 6.87,
        "unit": "ukat/L",
        "collected_at": "2026-11-02",
        "reference_high": None,
        "reference_low": None,
    }
    assert document["labs"][1]["collected_at"] == "2026-11-02T08:05:07"


def test_case_to_document_includes_as_of_even_when_it_was_defaulted() -> None:
    document = man_with_unexplained_elevated_alp()
    del document["as_of"]
    case = parse_case(document, today=date(2026, 12, 24))
    assert case_to_document(case)["as_of"] == "2026-12-24"


def test_the_json_schema_describes_the_document() -> None:
    schema = case_json_schema()
    assert schema["required"] == ["patient"]
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {"as_of", "patient", "labs", "clinical"}
    assert json.dumps(schema)
