"""FHIR R4 resources → case document (pathways/interop/fhir_case.py): codes of spec/interop.md."""

from __future__ import annotations

import re
from datetime import UTC, date
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pathways import engine
from pathways.cds_hooks import PREFETCH
from pathways.interop.fhir_case import (
    ATC,
    ICD10CM,
    LOINC,
    UCUM,
    case_from_fhir,
    diagnoses_for_icd10cm,
)
from pathways.interop.fhir_import import read_bundle
from pathways.rules import current_rule_set
from tests import fhir_bundles as fb

TODAY = date(2026, 11, 22)
PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "identifier": [
        {
            "type": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}
                ]
            },
            "system": "urn:oid:1.2.3",
            "value": "MRN-7",
        },
        {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-99-9999"},
    ],
    "gender": "female",
    "birthDate": "1960-05-01",
}


def _observation(loinc: str, value: float, unit: str, when: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"o-{loinc}-{when.replace(':', '.').replace('+', '.')}",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
        **extra,
    }


def _condition(code: str, status: str = "active", verification: str | None = None) -> Any:
    condition: dict[str, Any] = {
        "resourceType": "Condition",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": status,
                }
            ]
        },
        "code": {"coding": [{"system": ICD10CM, "code": code}]},
        "subject": {"reference": "Patient/p1"},
    }
    if verification:
        condition["verificationStatus"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": verification,
                }
            ]
        }
    return condition


def _statement(atc: str, start: str, end: str | None = None) -> dict[str, Any]:
    period = {"start": start, **({"end": end} if end else {})}
    return {
        "resourceType": "MedicationStatement",
        "status": "active",
        "medicationCodeableConcept": {"coding": [{"system": ATC, "code": atc}]},
        "subject": {"reference": "Patient/p1"},
        "effectivePeriod": period,
    }


def test_labs_weight_and_pregnancy_become_the_case_document() -> None:
    resources = [
        PATIENT,
        _observation(
            "6768-6",
            412,
            "U/L",
            "2026-06-01T08:15:00+00:00",
            referenceRange=[{"high": {"value": 129, "unit": "U/L", "system": UCUM, "code": "U/L"}}],
        ),
        _observation("2160-0", 88.4, "umol/L", "2026-11-02"),
        _observation("29463-7", 150, "[lb_av]", "2026-11-02"),
        _observation("1742-6", 40, "U/L", "2026-11-02"),  # ALT: a test of revision 2
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "82810-3"}]},
            "effectiveDateTime": "2026-11-01",
            "valueCodeableConcept": {"coding": [{"system": LOINC, "code": "LA15173-0"}]},
        },
    ]
    mapped = case_from_fhir(resources, today=TODAY)
    assert mapped.problems == []
    assert mapped.mrns == [("urn:oid:1.2.3", "MRN-7")]
    document = mapped.document
    assert document["patient"] == {
        "birth_date": "1960-05-01",
        "sex": "female",
        "weight_kg": 68.038855,
        "pregnant": True,
    }
    assert document["labs"] == [
        {
            "test": "alp",
            "value": 412.0,
            "unit": "U/L",
            "collected_at": "2026-06-01T08:15:00",
            "reference_high": 129.0,
        },
        {"test": "alt", "value": 40.0, "unit": "U/L", "collected_at": "2026-11-02"},
        {"test": "creatinine", "value": 88.4, "unit": "umol/L", "collected_at": "2026-11-02"},
    ]
    engine.parse_case(document)  # a valid case document


def test_times_are_read_in_the_clinics_time_zone() -> None:
    late_evening_in_new_york = _observation("6768-6", 200, "U/L", "2026-11-02T23:30:00-05:00")
    mapped = case_from_fhir(
        [PATIENT, late_evening_in_new_york], today=TODAY, tz=ZoneInfo("Europe/Zurich")
    )
    assert mapped.document["labs"][0]["collected_at"] == "2026-11-03T05:30:00"


def test_what_cannot_be_read_is_named_by_its_fhirpath_and_left_out() -> None:
    resources = [
        {**PATIENT, "gender": "unknown"},
        _observation("6768-6", 5, "mmol/L", "2026-11-02"),
        _observation("6768-6", 200, "U/L", "2026-11"),
        _observation("6768-6", 200, "U/L", "2027-01-01"),
        {**_observation("6768-6", 900, "U/L", "2026-11-03"), "status": "entered-in-error"},
    ]
    mapped = case_from_fhir(resources, today=TODAY)
    paths = [problem.path for problem in mapped.problems]
    assert paths == [
        "Patient.gender",
        "Observation/o-6768-6-2026-11-02.valueQuantity.code",
        "Observation/o-6768-6-2026-11.effective",
        "Observation/o-6768-6-2027-01-01.effective",
    ]
    assert mapped.document["labs"] == []


def test_conditions_map_by_icd10cm_prefix_and_only_when_active() -> None:
    resources = [
        PATIENT,
        _condition("C90.01"),
        _condition("N25.81"),
        _condition("C79.51"),
        _condition("C50.911"),
        _condition("E55.9", status="resolved"),
        _condition("M88.9", verification="refuted"),
        _condition("I10"),
    ]
    clinical = case_from_fhir(resources, today=TODAY).document["clinical"]
    assert clinical["diagnoses"] == ["bone_metastases", "hyperparathyroidism", "multiple_myeloma"]
    assert clinical["cancer"] == "breast"


def test_icd10cm_codes_of_interop_md() -> None:
    assert diagnoses_for_icd10cm("D47.2") == ("mgus", None)
    assert diagnoses_for_icd10cm("M88.0") == ("paget", None)
    assert diagnoses_for_icd10cm("K74.60") == ("liver_disease", None)
    assert diagnoses_for_icd10cm("R65.21") == ("sepsis", None)
    assert diagnoses_for_icd10cm("C41.9") == ("primary_bone_tumour", None)
    assert diagnoses_for_icd10cm("C18.9") == (None, "other")
    assert diagnoses_for_icd10cm("C81.90") == (None, None)  # lymphoma: not C00-C80
    assert diagnoses_for_icd10cm("C90.10") == (None, None)  # plasma cell leukaemia: not C90.0
    # Osteoporosis maps once the case declares it (revision 2), never before.
    declared = engine.declaration.CLINICAL["diagnoses"].values
    osteoporosis = "osteoporosis" if "osteoporosis" in declared else None
    assert diagnoses_for_icd10cm("M81.0") == (osteoporosis, None)


def test_medications_by_atc_with_their_period() -> None:
    resources = [
        PATIENT,
        _statement("M05BB03", "2026-01-10", "2026-07-10"),
        _statement("M05BA06", "2025-03-01"),
        _statement("M05BX04", "2026-12-01"),  # planned: neither current nor past
        _statement("H02AB06", "2026-01-01"),  # prednisolone: not read
    ]
    therapies = case_from_fhir(resources, today=TODAY).document["clinical"]["therapies"]
    assert therapies == [
        {"agent": "alendronate", "start": "2026-01-10", "end": "2026-07-10"},
        {"agent": "other_bisphosphonate", "start": "2025-03-01", "end": None},
    ]


def test_a_course_whose_end_cannot_be_read_is_named_not_read_as_current() -> None:
    """The end was dropped, so the course read as a current therapy."""
    backwards = {**_statement("M05BA08", "2026-07-10", "2026-01-10"), "id": "za-1"}
    month_only = {**_statement("M05BA03", "2026-01-10", "2026-07"), "id": "pam-1"}
    mapped = case_from_fhir([PATIENT, backwards, month_only], today=TODAY)
    assert mapped.document["clinical"]["therapies"] == []
    assert [(problem.path, problem.message) for problem in mapped.problems] == [
        (
            "MedicationStatement/za-1.effectivePeriod.end",
            "the end is before the start: the course is left out",
        ),
        (
            "MedicationStatement/pam-1.effectivePeriod.end",
            "2026-07: a full date is required, the course is left out",
        ),
    ]


def test_a_value_with_a_comparator_is_named_not_read_as_exact() -> None:
    """ "> 1000 U/L" was read as 1000: below the spec's extreme-ALP threshold of > 1000."""
    above = _observation("6768-6", 1000, "U/L", "2026-11-02")
    above["valueQuantity"]["comparator"] = ">"
    mapped = case_from_fhir([PATIENT, above], today=TODAY)
    assert mapped.document["labs"] == []
    assert [(problem.path, problem.message) for problem in mapped.problems] == [
        (f"Observation/{above['id']}.valueQuantity.comparator", ">: not an exact value, left out")
    ]


def test_a_resource_with_many_validation_problems_names_five_and_counts_the_rest() -> None:
    observation = _observation("6768-6", 200, "U/L", "2026-11-02")
    observation.update(
        {name: 3 for name in ("status", "issued", "language", "implicitRules", "comment")},
        effectiveDateTime="yesterday",
        valueQuantity={"value": 200, "unit": 3, "code": 3, "system": 3},
    )
    problems = case_from_fhir([PATIENT, observation], today=TODAY).problems
    resource = f"Observation/{observation['id']}"
    assert len(problems) == 6
    assert all(problem.path.startswith(resource) for problem in problems)
    assert re.fullmatch(r"and \d+ more problems", problems[-1].message), problems[-1]
    assert problems[-1].path == resource


def test_a_lab_limit_is_read_only_from_the_one_range_for_everyone_in_the_results_unit() -> None:
    def high(value: float, unit: str = "U/L") -> dict[str, Any]:
        return {"high": {"value": value, "unit": unit, "system": UCUM, "code": unit}}

    def applies_to(sex: str) -> dict[str, Any]:
        gender = "http://hl7.org/fhir/administrative-gender"
        return {"appliesTo": [{"coding": [{"system": gender, "code": sex}]}]}

    by_sex = _observation(
        "6768-6", 412, "U/L", "2026-06-01",
        referenceRange=[high(129) | applies_to("male"), high(104) | applies_to("female")],
    )  # fmt: skip
    other_unit = _observation(
        "6768-6", 390, "U/L", "2026-06-02", referenceRange=[high(2.2, "ukat/L")]
    )
    mapped = case_from_fhir([PATIENT, by_sex, other_unit], today=TODAY)
    assert [lab.get("reference_high") for lab in mapped.document["labs"]] == [None, None]
    problems = {problem.path: problem.message for problem in mapped.problems}
    assert problems[f"Observation/{by_sex['id']}.referenceRange"].startswith(
        "2 reference ranges and not exactly one of them normal for every patient"
    )
    assert problems[f"Observation/{other_unit['id']}.referenceRange[0].high"] == (
        "'ukat/L': the limit is not in the result's unit 'U/L', so not used"
    )


def test_two_values_at_one_time_keep_the_correction_or_are_named() -> None:
    """The value listed last was kept, whichever corrected the other."""

    def alp(value: float, day: str, status: str = "final") -> dict[str, Any]:
        return {**_observation("6768-6", value, "U/L", day), "id": f"alp-{value}", "status": status}

    resources = [
        PATIENT,
        alp(300, "2026-11-01"), alp(310, "2026-11-01", "corrected"),  # the correction wins
        alp(420, "2026-11-02", "amended"), alp(400, "2026-11-02"),  # listed first, still wins
        alp(250, "2026-11-03"), alp(250, "2026-11-03"),  # the same value twice: one result
        alp(500, "2026-11-04"), alp(900, "2026-11-04"),  # neither corrects the other
    ]  # fmt: skip
    mapped = case_from_fhir(resources, today=TODAY)
    assert [(lab["collected_at"], lab["value"]) for lab in mapped.document["labs"]] == [
        ("2026-11-01", 310),
        ("2026-11-02", 420),
        ("2026-11-03", 250),
    ]
    assert [(problem.path, problem.message) for problem in mapped.problems] == [
        (
            "Observation/alp-900.valueQuantity",
            "a second alp result collected at 2026-11-04 with another value (500 U/L, 900 U/L): "
            "both left out",
        )
    ]


def _pregnancy_status(answer: str, when: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"preg-{answer}",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "82810-3"}]},
        "effectiveDateTime": when,
        "valueCodeableConcept": {"coding": [{"system": LOINC, "code": answer}]},
    }


def test_two_weights_or_pregnancy_statuses_at_the_latest_time_are_named_not_picked() -> None:
    """The larger weight (or "pregnant") won a tie in silence: the weight feeds the
    Cockcroft-Gault clearance, so the EHR's list order could change a dose."""
    heavy = _observation("29463-7", 72, "kg", "2026-11-02T08:00:00+00:00")
    light = _observation("29463-7", 70, "kg", "2026-11-02T08:00:00+00:00", id="o-weight-2")
    older = _observation("29463-7", 90, "kg", "2026-10-01")
    pregnant = _pregnancy_status("LA15173-0", "2026-11-01")
    not_pregnant = _pregnancy_status("LA26683-5", "2026-11-01")
    for order in ([heavy, light], [light, heavy]):
        mapped = case_from_fhir([PATIENT, older, *order, pregnant, not_pregnant], today=TODAY)
        assert "weight_kg" not in mapped.document["patient"]
        assert "pregnant" not in mapped.document["patient"]
        messages = [problem.message for problem in mapped.problems]
        weights = "70 kg, 72 kg" if order[0] is light else "72 kg, 70 kg"
        assert messages == [
            f"body weight at 2026-11-02T08:00:00 given 2 ways ({weights}): left out",
            "pregnancy status at 2026-11-01 given 2 ways (pregnant, not pregnant): left out",
        ]
    # The same weight twice is one reading; a later one settles an earlier disagreement.
    again = _observation("29463-7", 72, "kg", "2026-11-02T08:00:00+00:00", id="o-weight-3")
    later = _observation("29463-7", 71, "kg", "2026-11-03")
    mapped = case_from_fhir([PATIENT, heavy, again], today=TODAY)
    assert (mapped.document["patient"]["weight_kg"], mapped.problems) == (72, [])
    mapped = case_from_fhir([PATIENT, heavy, light, later], today=TODAY)
    assert (mapped.document["patient"]["weight_kg"], mapped.problems) == (71, [])


# ---------------------------------------------------------------------------------------------
# reference-intervals.md "LOINC codes" and interop.md "Other observations", as the CDS Hooks
# mapping reads them (the FHIR import and the HL7 feed read the same declaration).


@pytest.mark.parametrize(
    ("loinc", "unit", "test"),
    [
        ("1742-6", "U/L", "alt"),
        ("1751-7", "g/dL", "albumin"),
        ("2777-1", "mg/dL", "phosphate"),
        ("2731-8", "pg/mL", "pth"),
    ],
)
def test_every_lab_code_of_the_table_is_read(loinc: str, unit: str, test: str) -> None:
    """ALT, albumin, phosphate and PTH were fetched and then dropped as "not read by revision
    1": an ALT of 200 with a raised ALP gave no hepatic source on the EHR's cards."""
    mapped = case_from_fhir([PATIENT, _observation(loinc, 50, unit, "2026-11-20")], today=TODAY)
    assert [lab["test"] for lab in mapped.document["labs"]] == [test]
    assert f"{LOINC}|{loinc}" in PREFETCH["observations"]


def test_an_alt_read_from_the_ehr_names_the_hepatic_source() -> None:
    alp = _observation("6768-6", 300, "U/L", "2026-11-20")
    alt = _observation("1742-6", 200, "U/L", "2026-11-20")
    case = engine.parse_case(case_from_fhir([PATIENT, alp, alt], today=TODAY).document)
    values = engine.compute_facts(case, engine.load_catalogue()).values
    assert (values["alt"], values["alp_source"]) == ("elevated", "hepatic")


def test_a_bone_alp_code_is_read_only_in_its_own_units() -> None:
    """1777-2 is bone ALP activity: a ug/L value under it was read as a mass result."""
    mapped = case_from_fhir(
        [PATIENT, _observation("1777-2", 30, "ug/L", "2026-11-20")], today=TODAY
    )
    assert mapped.document["labs"] == []
    assert [(problem.path, problem.message) for problem in mapped.problems] == [
        ("Observation/o-1777-2-2026-11-20.valueQuantity.code",
         "'ug/L' is not a unit for bone_alp (1777-2); use one of U/L, ukat/L"),
    ]  # fmt: skip


def test_gestational_age_is_read_for_a_pregnancy_and_advanced_to_today() -> None:
    """The pregnancy's weeks were never read (nor fetched): a woman at 20 weeks with an ALP of
    150 was judged against the weeks-unknown third-trimester 229, so her raised ALP read
    normal. Weeks observed on 2026-11-08 are 22 completed weeks on 2026-11-22 (spec §1)."""
    pregnant = _pregnancy_status("LA15173-0", "2026-11-01")
    weeks = _observation("49051-6", 20, "wk", "2026-11-08")
    alp = _observation("6768-6", 150, "U/L", "2026-11-22")
    mapped = case_from_fhir([PATIENT, pregnant, weeks, alp], today=TODAY)
    assert mapped.document["patient"]["gestational_weeks"] == 22
    values = engine.compute_facts(engine.parse_case(mapped.document), engine.load_catalogue())
    assert (values.values["alp_uln"], values.values["alp_elevated"]) == (126, True)
    assert f"{LOINC}|49051-6" in PREFETCH["observations"]
    # Not pregnant: no weeks. Weeks that would be past 42 today: named and left out.
    assert (
        "gestational_weeks" not in case_from_fhir([PATIENT, weeks], today=TODAY).document["patient"]
    )
    stale = _observation("49051-6", 40, "wk", "2026-10-01")
    mapped = case_from_fhir([PATIENT, pregnant, stale], today=TODAY)
    assert "gestational_weeks" not in mapped.document["patient"]
    assert [(problem.path, problem.message) for problem in mapped.problems] == [
        ("Observation/o-49051-6-2026-10-01.valueQuantity.value",
         "40 weeks on 2026-10-01 is 47 weeks today: not a whole number of weeks from 1 to 42, "
         "left out"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("code", "cancer"),
    [
        ("C4A.9", "other"),
        ("C7A.00", "other"),
        ("C7B.02", "other"),
        ("C80.1", "other"),
        ("C81.90", None),
        ("C8A", None),
    ],
)
def test_the_lettered_categories_inside_c00_c80_are_other_cancers(
    code: str, cancer: str | None
) -> None:
    """interop.md: "any other C00-C80 -> other". The tabular list holds C4A (Merkel cell
    carcinoma) and C7A/C7B (neuroendocrine tumours) inside that range; they were unmapped,
    so the FHIR import refused the Bundle and CDS Hooks dropped the cancer."""
    assert diagnoses_for_icd10cm(code) == (None, cancer)


@pytest.mark.django_db
def test_the_labs_lower_limit_is_read_as_the_import_reads_it() -> None:
    """Calcium 8.5 mg/dL with the lab's range 8.0-10.4 is not low by the lab's limits (spec §1,
    reference-intervals.md: a lab's own limits win). CDS Hooks read only the high end, so the
    built-in 8.6 applied and a high "correct-before-antiresorptive" card fired for a woman on
    denosumab that the import, the API and the patient page never show. Found by an audit."""
    resources = [
        fb.patient(birthDate="1981-01-15"),
        fb.lab("17861-6", 8.5, "mg/dL", "2026-11-17T08:00:00Z", low=8.0, high=10.4),
        fb.statement("M05BX04", "2026-08-14"),
    ]
    imported = read_bundle(fb.bundle(*resources, kind="collection"), today=TODAY, tz=UTC)
    assert imported.labs[0].limits == {"reference_high": 10.4, "reference_low": 8.0}
    mapped = case_from_fhir(resources, today=TODAY, tz=UTC)
    [calcium] = mapped.document["labs"]
    assert (calcium["reference_low"], calcium["reference_high"]) == (8.0, 10.4)
    result = engine.assess(engine.parse_case(mapped.document, today=TODAY), current_rule_set())
    assert "correct-before-antiresorptive" not in {r.code for r in result.recommendations}


def test_a_weight_in_pounds_is_the_same_kilograms_as_on_import() -> None:
    """154 lb was 69.853225 kg imported (6 decimals, as the engine converts) and 69.853 kg in
    CDS Hooks: two weights for one record's Cockcroft-Gault. Found by an audit."""
    resources = [fb.patient(), fb.weight(154, "2026-11-20T08:00:00Z", unit="[lb_av]")]
    imported = read_bundle(fb.bundle(*resources, kind="collection"), today=TODAY, tz=UTC)
    mapped = case_from_fhir(resources, today=TODAY, tz=UTC)
    assert mapped.document["patient"]["weight_kg"] == imported.fields["patient.weight_kg"][0]
    assert mapped.document["patient"]["weight_kg"] == 69.853225


def test_a_medication_given_as_a_contained_medication_is_read_and_another_reference_named() -> None:
    """Medications are read by ATC (interop.md), anything else named, never guessed: a course
    whose ATC code sat on a contained Medication was silently not read, so the advice did not
    know the patient was on zoledronic acid. Found by an audit."""
    contained = _statement("M05BA08", "2026-01-10")
    contained["contained"] = [
        {"resourceType": "Medication", "id": "za", "code": contained["medicationCodeableConcept"]}
    ]
    del contained["medicationCodeableConcept"]
    contained["medicationReference"] = {"reference": "#za"}
    elsewhere = _statement("M05BX04", "2026-02-01")
    del elsewhere["medicationCodeableConcept"]
    elsewhere["medicationReference"] = {"reference": "Medication/denosumab-60"}
    mapped = case_from_fhir([PATIENT, contained, elsewhere], today=TODAY)
    therapies = mapped.document["clinical"]["therapies"]
    assert therapies == [{"agent": "zoledronic_acid", "start": "2026-01-10", "end": None}]
    assert [problem.message for problem in mapped.problems] == [
        "Medication/denosumab-60: not read (alpcare reads an ATC code in medicationCodeableConcept "
        "or in a contained Medication); left out"
    ]


def test_a_contained_resource_of_no_known_type_is_named_not_a_crash() -> None:
    """fhir.resources raises a KeyError for a contained resource of an unknown type (not a
    ValidationError): the CDS Hooks prefetch holding one was a server error. It is named."""
    statement = _statement("M05BA08", "2026-01-10")
    statement["contained"] = [{"resourceType": "Foo", "id": "za"}]
    del statement["medicationCodeableConcept"]
    statement["medicationReference"] = {"reference": "#za"}
    mapped = case_from_fhir([PATIENT, statement], today=TODAY)
    assert mapped.document["clinical"]["therapies"] == []
    assert len(mapped.problems) == 1
    assert "not a FHIR R4 resource fhir.resources can read" in mapped.problems[0].message
