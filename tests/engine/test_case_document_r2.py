"""Revision 2's inputs in the case document (spec §1): the new tests and their units, the lab's
lower limit, pregnancy weeks, menopause, the creatinine baseline, the fracture date, whole-body
imaging, osteoporosis, and duplicate results."""

from __future__ import annotations

from typing import Any

import pytest

from pathways.engine import CaseInvalid, case_json_schema, case_to_document, parse_case
from pathways.engine.declaration import lab_test, loinc_code
from tests.engine.clinical_cases import lab

AS_OF = "2026-11-22"


def document(*labs: dict[str, Any], **patient: Any) -> dict[str, Any]:
    return {
        "as_of": AS_OF,
        "patient": {"birth_date": "1970-01-01", "sex": "female", **patient},
        "labs": list(labs),
    }


def errors(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(CaseInvalid) as raised:
        parse_case(data)
    return {error.field: error.message for error in raised.value.errors}


# --- the new tests and their units ------------------------------------------------------------


@pytest.mark.parametrize(
    ("test", "value", "unit", "canonical", "canonical_unit"),
    [
        ("alt", 1.0, "ukat/L", 60, "U/L"),
        ("alt", 45, "U/L", 45, "U/L"),
        ("albumin", 35, "g/L", 3.5, "g/dL"),
        ("phosphate", 1.0, "mmol/L", 3.097, "mg/dL"),
        ("pth", 1.0, "pmol/L", 9.43, "pg/mL"),
        ("pth", 40, "ng/L", 40, "pg/mL"),
        ("ggt", 0.5, "ukat/L", 30, "U/L"),
        ("creatinine", 88.42, "umol/L", 1.0, "mg/dL"),
        ("calcium", 2.5, "mmol/L", 10.02, "mg/dL"),
        ("vitamin_d", 49.92, "nmol/L", 20.0, "ng/mL"),
        ("bilirubin", 17.1, "umol/L", 1.0, "mg/dL"),
        ("ctx", 300, "pg/mL", 300, "ng/L"),
        ("alp", 2.0, "ukat/L", 120, "U/L"),
    ],
)
def test_units_convert_as_the_spec_says(
    test: str, value: float, unit: str, canonical: float, canonical_unit: str
) -> None:
    (parsed,) = parse_case(document(lab(test, value, "2026-11-01", unit=unit))).labs
    assert parsed.canonical_value == pytest.approx(canonical)
    assert parsed.canonical_unit == canonical_unit


def test_a_wrong_unit_for_a_new_test_names_the_accepted_ones() -> None:
    assert errors(document(lab("pth", 5, "2026-11-01", unit="mg/dL"))) == {
        "labs[0].unit": '"mg/dL" is not a unit for pth; use one of pg/mL, ng/L, pmol/L'
    }


def test_the_new_tests_carry_their_loinc_codes() -> None:
    assert {code: loinc_code(code, lab_test(code).canonical_unit) for code in (
        "alt", "albumin", "phosphate", "pth")} == {
        "alt": "1742-6",
        "albumin": "1751-7",
        "phosphate": "2777-1",
        "pth": "2731-8",
    }  # fmt: skip


# --- reference_low ----------------------------------------------------------------------------


def test_reference_low_converts_and_must_be_below_reference_high() -> None:
    entry = lab("calcium", 2.4, "2026-11-01", unit="mmol/L", reference_high=2.6)
    entry["reference_low"] = 2.2
    (parsed,) = parse_case(document(entry)).labs
    assert parsed.canonical_reference_low == pytest.approx(8.8176)
    entry["reference_low"] = 2.6
    assert errors(document(entry)) == {"labs[0].reference_low": "must be below reference_high"}
    entry["reference_low"] = -1
    assert errors(document(entry)) == {"labs[0].reference_low": "must not be negative"}


# --- patient: pregnancy weeks and menopause ---------------------------------------------------


@pytest.mark.parametrize(("weeks", "ok"), [(1, True), (42, True), (0, False), (43, False)])
def test_gestational_weeks_from_1_to_42(weeks: int, ok: bool) -> None:
    data = document(pregnant=True, gestational_weeks=weeks)
    if ok:
        assert parse_case(data).patient.gestational_weeks == weeks
    else:
        assert list(errors(data)) == ["patient.gestational_weeks"]


def test_gestational_weeks_must_be_whole_and_only_in_pregnancy() -> None:
    assert errors(document(pregnant=True, gestational_weeks=20.5)) == {
        "patient.gestational_weeks": "must be a whole number"
    }
    assert errors(document(gestational_weeks=20)) == {
        "patient.gestational_weeks": "given for a patient who is not pregnant"
    }
    assert parse_case(document(pregnant=True)).patient.gestational_weeks is None


def test_postmenopausal_only_for_a_female_patient() -> None:
    assert parse_case(document(postmenopausal=True)).patient.postmenopausal is True
    assert parse_case(document(postmenopausal=None)).patient.postmenopausal is None
    male = document(postmenopausal=False)
    male["patient"]["sex"] = "male"
    assert errors(male) == {"patient.postmenopausal": "given for a male patient"}


# --- clinical: creatinine baseline, fracture date, imaging, osteoporosis ----------------------


def test_the_new_clinical_fields() -> None:
    data = document()
    data["clinical"] = {
        "diagnoses": ["mgus", "osteoporosis"],
        "fracture": "pathological",
        "fracture_date": "2026-11-22",
        "creatinine_baseline": 1.1,
        "myeloma": {"whole_body_imaging_done": True},
    }
    clinical = parse_case(data).clinical
    assert clinical.diagnoses == ("mgus", "osteoporosis")
    assert (clinical.creatinine_baseline, str(clinical.fracture_date)) == (1.1, "2026-11-22")
    assert clinical.myeloma.whole_body_imaging_done is True
    data["clinical"]["fracture_date"] = "2026-11-23"
    data["clinical"]["creatinine_baseline"] = 0
    assert errors(data) == {
        "clinical.fracture_date": "after as_of",
        "clinical.creatinine_baseline": "must be greater than 0",
    }


def test_the_document_round_trips_with_every_new_key() -> None:
    entry = lab("pth", 5.1, "2026-11-01T08:15", unit="pmol/L", reference_high=6.9)
    entry["reference_low"] = 1.6
    data = document(entry, pregnant=True, gestational_weeks=30, postmenopausal=False)
    data["clinical"] = {"fracture_date": "2026-10-01", "creatinine_baseline": 0.9}
    case = parse_case(data)
    canonical = case_to_document(case)
    assert parse_case(canonical) == case
    assert canonical["labs"][0]["reference_low"] == 1.6
    assert canonical["patient"]["gestational_weeks"] == 30
    assert canonical["clinical"]["myeloma"]["whole_body_imaging_done"] is False


def test_the_json_schema_has_the_new_fields() -> None:
    schema = case_json_schema()
    definitions = schema["$defs"]
    weeks = definitions["PatientDocument"]["properties"]["gestational_weeks"]
    assert {"type": "integer"} in weeks["anyOf"]
    assert "reference_low" in definitions["LabDocument"]["properties"]
    assert "fracture_date" in definitions["ClinicalDocument"]["properties"]
    assert "whole_body_imaging_done" in definitions["MyelomaDocument"]["properties"]


# --- duplicate results ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "agree"),
    [
        ((100, "U/L"), (100.5, "U/L"), True),  # 0.4975 % of the larger
        ((100, "U/L"), (100.51, "U/L"), False),
        ((6.0, "ukat/L"), (360, "U/L"), True),  # the same after conversion
        ((0, "U/L"), (0, "U/L"), True),
    ],
)
def test_duplicates_within_half_a_percent_are_one_result(
    first: tuple[float, str], second: tuple[float, str], agree: bool
) -> None:
    data = document(
        lab("alp", first[0], "2026-11-01T08:15", unit=first[1]),
        lab("ggt", 20, "2026-11-01T08:15"),
        lab("alp", second[0], "2026-11-01T08:15:00", unit=second[1]),
    )
    if agree:
        labs = parse_case(data).labs
        assert [(item.test, item.value) for item in labs] == [("alp", first[0]), ("ggt", 20)]
    else:
        ((field, message),) = errors(data).items()
        assert field == "labs[2]"
        assert message.startswith("conflicts with labs[0]: alp at 2026-11-01T08:15 is ")


def test_a_bare_date_is_not_the_same_instant_as_midnight() -> None:
    data = document(lab("alp", 100, "2026-11-01"), lab("alp", 300, "2026-11-01T00:00"))
    assert len(parse_case(data).labs) == 2


def test_a_conflict_names_both_indexes_and_other_errors_are_still_found() -> None:
    data = document(
        lab("alp", 100, "2026-11-01"),
        lab("alp", -1, "2026-11-02"),
        lab("ctx", 1, "2026-11-03"),
        lab("alp", 200, "2026-11-01"),
    )
    found = errors(data)
    assert found["labs[1].value"] == "must not be negative"
    assert found["labs[3]"].startswith("conflicts with labs[0]: ")
