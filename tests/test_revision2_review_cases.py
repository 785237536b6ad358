"""The clinical review's cases (issue 11), through `manage.py assess` on the migrated database.

Each case is one that revision 1 got wrong, written as a clinician would enter it; the expected
advice is read off revision 2 of the contract (spec/pathways.md §2, §4, §5), not off the code.
The command reads the rule set in force, so these also show that the migration installed and
published revision 2 on a fresh database.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pathways.engine.vocabulary import RETIRED_CODES
from tests.factories import run_assess_command

pytestmark = pytest.mark.django_db

AS_OF = "2026-11-22"
RETIRED = set(RETIRED_CODES)
SOURCE_KINDS = {"seed", "guideline", "label", "study", "reference", "local"}


def assess(document: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    code, out, err = run_assess_command(document, tmp_path)
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    # Whatever the case: no retired code fires, and every citation used is a described source.
    assert not RETIRED & codes(result)
    for recommendation in result["recommendations"]:
        for key in recommendation["citations"]:
            assert result["sources"][key]["kind"] in SOURCE_KINDS, key
            assert result["sources"][key]["text"]
    assert "survival" not in json.dumps(result["recommendations"]).lower()
    return result


def codes(result: dict[str, Any]) -> set[str]:
    return {r["code"] for r in result["recommendations"]}


def priority(result: dict[str, Any], code: str) -> str:
    return next(r["priority"] for r in result["recommendations"] if r["code"] == code)


def suppressed(result: dict[str, Any]) -> dict[str, str]:
    return {row["code"]: row["reason"] for row in result["suppressed"]}


def lab(test: str, value: float, unit: str, when: str, **extra: Any) -> dict[str, Any]:
    return {"test": test, "value": value, "unit": unit, "collected_at": when, **extra}


def case(
    *,
    birth_date: str = "1950-03-02",
    sex: str = "female",
    labs: list[dict[str, Any]],
    weight_kg: float | None = 64,
    **clinical: Any,
) -> dict[str, Any]:
    patient: dict[str, Any] = {"birth_date": birth_date, "sex": sex}
    if weight_kg is not None:
        patient["weight_kg"] = weight_kg
    patient.update(clinical.pop("patient", {}))
    return {"as_of": AS_OF, "patient": patient, "labs": labs, "clinical": clinical}


def myeloma_on_zoledronic_acid(creatinine_now: float) -> dict[str, Any]:
    return case(
        labs=[
            lab("alp", 110, "U/L", "2026-11-15T08:00"),
            lab("creatinine", 1.00, "mg/dL", "2026-05-25T08:00"),
            lab("creatinine", creatinine_now, "mg/dL", "2026-11-15T08:00"),
        ],
        diagnoses=["multiple_myeloma"],
        dental_exam_done=True,
        myeloma={
            "requires_therapy": True,
            "bone_disease": True,
            "response": "PR",
            "treatment_start": "2026-05-01",
        },
        therapies=[{"agent": "zoledronic_acid", "start": "2026-06-01", "end": None}],
    )


def test_a_creatinine_rise_below_the_label_threshold_does_not_withhold(tmp_path: Path) -> None:
    # 1.00 -> 1.12 mg/dL: a rise of 0.12, the label withholds at >= 0.5 from a baseline < 1.4.
    result = assess(myeloma_on_zoledronic_acid(1.12), tmp_path)
    assert "iv-bp-withhold-creatinine-rise" not in codes(result)
    assert "iv-bp-renal-before-infusion" in codes(result)
    assert "za-dose" in codes(result)  # dosed by the baseline CrCl (about 48 mL/min)
    assert "renal-before-infusion" in {f["code"] for f in result["follow_ups"]}


def test_a_rise_of_half_a_milligram_withholds_and_stands_down_the_dose(tmp_path: Path) -> None:
    result = assess(myeloma_on_zoledronic_acid(1.50), tmp_path)
    assert priority(result, "iv-bp-withhold-creatinine-rise") == "urgent"
    assert "za-dose" not in codes(result)
    assert "za-dose" in suppressed(result)


def mgus_on_alendronate(*diagnoses: str) -> dict[str, Any]:
    return case(
        labs=[lab("alp", 90, "U/L", "2026-11-01")],
        diagnoses=["mgus", *diagnoses],
        therapies=[{"agent": "alendronate", "start": "2025-01-10", "end": None}],
    )


def test_mgus_treated_for_osteoporosis_or_paget_is_not_told_bisphosphonates_are_wrong(
    tmp_path: Path,
) -> None:
    osteoporosis = assess(mgus_on_alendronate("osteoporosis"), tmp_path)
    assert osteoporosis["pathway"] == "bone"
    assert "mgus-no-bisphosphonate" not in codes(osteoporosis)
    assert "mgus-osteoporosis-bp" in codes(osteoporosis)
    paget = assess(mgus_on_alendronate("paget"), tmp_path)
    assert "mgus-no-bisphosphonate" not in codes(paget)
    # MGUS alone on a bisphosphonate: not indicated for MGUS itself (high, as it is taken).
    alone = assess(mgus_on_alendronate(), tmp_path)
    assert priority(alone, "mgus-no-bisphosphonate") == "high"
    assert not {code for code in codes(alone) if code.startswith("mm-")}


def test_a_normal_third_trimester_alp_gets_no_bone_workup(tmp_path: Path) -> None:
    document = case(
        birth_date="1996-05-01",
        labs=[lab("alp", 190, "U/L", "2026-11-15T09:00")],
        weight_kg=70,
        patient={"pregnant": True, "gestational_weeks": 32},
    )
    result = assess(document, tmp_path)
    assert "pregnant" in result["context"]
    assert result["findings"]["alp_elevated"] is False
    assert result["findings"]["alp_uln"] == 229
    assert "pregnancy-alp" in codes(result)
    assert not {"bone-scan", "isolated-alp-unclear", "check-ggt", "confirm-bone-origin"} & codes(
        result
    )


def test_a_well_toddler_with_a_very_high_alp_is_thi_not_sepsis(tmp_path: Path) -> None:
    document = case(
        birth_date="2025-06-15",  # 17 months old
        sex="male",
        labs=[lab("alp", 2400, "U/L", "2026-11-20")],
        weight_kg=11,
    )
    result = assess(document, tmp_path)
    assert {"child", "under_5"} <= set(result["context"])
    assert "thi-consider" in codes(result)
    assert "extreme-alp" not in codes(result)
    assert {"extreme-alp", "paediatric-alp"} <= set(suppressed(result))
    assert not {r["priority"] for r in result["recommendations"]} & {"urgent"}
    repeat = {f["code"]: f for f in result["follow_ups"]}["thi-repeat"]
    assert repeat["due"] == "2027-03-20"  # latest ALP + 4 months


def test_a_sick_looking_toddler_with_low_phosphate_is_not_thi(tmp_path: Path) -> None:
    document = case(
        birth_date="2025-06-15",
        sex="male",
        labs=[
            lab("alp", 2400, "U/L", "2026-11-20"),
            # The lab's own limits: a child's test has no built-in interval.
            lab("phosphate", 2.0, "mg/dL", "2026-11-20", reference_low=4.0, reference_high=6.5),
        ],
        weight_kg=11,
    )
    result = assess(document, tmp_path)
    assert "thi-consider" not in codes(result)
    assert priority(result, "paediatric-alp") == "high"  # ALP above 1000 U/L


def test_a_hypercalcaemic_patient_is_not_told_to_take_calcium(tmp_path: Path) -> None:
    document = case(
        labs=[
            lab("alp", 300, "U/L", "2026-11-15T08:00"),
            lab("calcium", 12.5, "mg/dL", "2026-11-15T08:00"),
        ],
        diagnoses=["paget"],
    )
    result = assess(document, tmp_path)
    assert "hypercalcaemia" in result["context"]
    assert priority(result, "hypercalcaemia") == "urgent"
    assert "calcium-vitamin-d" not in codes(result)
    assert "calcium-vitamin-d" in suppressed(result)


def test_no_zoledronic_acid_dose_without_a_known_renal_function(tmp_path: Path) -> None:
    document = case(
        labs=[lab("alp", 140, "U/L", "2026-11-15")],
        weight_kg=None,
        diagnoses=["multiple_myeloma"],
        myeloma={"requires_therapy": True},
    )
    result = assess(document, tmp_path)
    assert "renal_function_unknown" in result["context"]
    assert {"mm-bone-agent", "measure-renal-first"} <= codes(result)
    assert "za-dose" not in codes(result)


def test_paget_treatment_is_contraindicated_below_crcl_35(tmp_path: Path) -> None:
    document = case(
        labs=[
            lab("alp", 300, "U/L", "2026-11-15"),
            lab("crcl", 25, "mL/min", "2026-11-15"),
        ],
        diagnoses=["paget"],
    )
    result = assess(document, tmp_path)
    assert "paget-bisphosphonate" not in codes(result)
    assert "paget-bisphosphonate" in suppressed(result)
    assert priority(result, "paget-bp-renal-contraindicated") == "high"
    at_35 = assess(
        case(
            labs=[lab("alp", 300, "U/L", "2026-11-15"), lab("crcl", 35, "mL/min", "2026-11-15")],
            diagnoses=["paget"],
        ),
        tmp_path,
    )
    assert "paget-bisphosphonate" in codes(at_35)
    assert "paget-bp-renal-contraindicated" not in codes(at_35)


def test_myeloma_needing_therapy_without_lytic_lesions_gets_a_bone_agent(tmp_path: Path) -> None:
    document = case(
        labs=[lab("alp", 95, "U/L", "2026-11-15"), lab("crcl", 80, "mL/min", "2026-11-15")],
        diagnoses=["multiple_myeloma"],
        myeloma={"requires_therapy": True, "bone_disease": False},
    )
    result = assess(document, tmp_path)
    assert result["pathway"] == "myeloma"
    assert priority(result, "mm-bone-agent") == "high"
    assert {"za-dose", "mm-whole-body-imaging", "antiresorptive-dental-exam"} <= codes(result)
    za_dose = next(r for r in result["recommendations"] if r["code"] == "za-dose")
    assert "4" in za_dose["title"] + za_dose["rationale"]  # CrCl > 60: 4.0 mg


def test_below_crcl_30_no_card_offers_a_zoledronic_acid_dose(tmp_path: Path) -> None:
    document = case(
        labs=[lab("alp", 95, "U/L", "2026-11-15"), lab("crcl", 25, "mL/min", "2026-11-15")],
        diagnoses=["multiple_myeloma"],
        myeloma={"requires_therapy": True},
    )
    result = assess(document, tmp_path)
    assert priority(result, "za-not-recommended-renal") == "high"  # not on it yet
    assert "za-dose" not in codes(result)
    assert "mm-denosumab-renal" in codes(result)
