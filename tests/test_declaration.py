"""The case is declared once (engine/declaration.py): everything else is derived from it or
checked against it here."""

from __future__ import annotations

import dataclasses
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.db import models

from pathways import engine
from pathways.case_post import as_browser_json, form_data
from pathways.cases import patient_to_case
from pathways.demo import synthetic_case
from pathways.engine import declaration
from pathways.forms import LabForm, PatientCaseForm, TherapyForm, case_draft
from pathways.models import LabResult, Patient, Therapy
from tests.factories import (
    TODAY,
    myeloma_on_zoledronic_acid_14_months_document,
    paget_on_alendronate_document,
    pregnant_third_trimester_document,
    revision_2_inputs_document,
    stored_patient,
)
from tests.spec import spec_required

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT.parent / "shared/spec/reference-intervals.md"


def _dataclass_fields(cls: type, *skip: str) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.name not in skip]


def test_the_engines_dataclasses_hold_exactly_the_declared_fields() -> None:
    names = {group.path: [item.name for item in group.fields] for group in declaration.GROUPS}
    assert _dataclass_fields(engine.PatientInfo) == names["patient"]
    assert _dataclass_fields(engine.Clinical, "myeloma", "therapies") == names["clinical"]
    assert _dataclass_fields(engine.Myeloma) == names["clinical.myeloma"]
    assert _dataclass_fields(engine.Therapy) == names["clinical.therapies"]


def test_every_declared_field_has_its_model_column_with_the_declared_choices() -> None:
    for group in declaration.PATIENT_GROUPS:
        for item in group.fields:
            column = Patient._meta.get_field(group.prefix + item.name)
            assert isinstance(column, models.Field)
            if item.kind == "choice":
                assert [value for value, _ in column.choices or []] == list(item.values)
    agent = Therapy._meta.get_field("agent")
    assert [value for value, _ in agent.choices or []] == list(declaration.THERAPY["agent"].values)
    test = LabResult._meta.get_field("test")
    assert [value for value, _ in test.choices or []] == list(engine.TESTS)
    unit = LabResult._meta.get_field("unit")
    declared_units = {unit.code for test in declaration.LAB_TESTS for unit in test.units}
    assert {value for value, _ in unit.choices or []} == declared_units


def test_the_forms_fields_and_labels_are_the_declared_ones() -> None:
    form = PatientCaseForm()
    for group in declaration.PATIENT_GROUPS:
        for item in group.fields:
            assert form.fields[group.prefix + item.name].label == item.label
    assert [name for name in TherapyForm().fields] == ["agent", "start", "end"]
    assert dict(LabForm().fields["test"].choices) == {  # type: ignore[attr-defined]
        test.code: test.label for test in declaration.LAB_TESTS
    }


def test_the_loinc_codes_are_the_specs() -> None:
    if not SPEC.exists():  # as every spec-reading test: fails in CI, skips in a lone clone
        if spec_required():
            pytest.fail(f"{SPEC} is missing: the spec-reading tests need ../shared/spec")
        pytest.skip(f"spec not found at {SPEC}")
    table = SPEC.read_text().split("## LOINC codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([^|]+?) \| (\d+-\d) \| `([^`]+)` \|$", table, re.MULTILINE)
    spec = {(name, unit): code for name, code, unit in rows}
    assert spec["total ALP", "U/L"] == engine.loinc_code("alp", "U/L")
    assert spec["bone ALP, activity", "U/L"] == engine.loinc_code("bone_alp", "U/L")
    assert spec["bone ALP, mass", "ug/L"] == engine.loinc_code("bone_alp", "ug/L")
    assert spec["GGT", "U/L"] == engine.loinc_code("ggt", "U/L")
    assert spec["CTX", "ng/L"] == engine.loinc_code("ctx", "ng/L")
    assert spec["creatinine", "mg/dL"] == engine.loinc_code("creatinine", "mg/dL")
    assert spec["calcium", "mg/dL"] == engine.loinc_code("calcium", "mg/dL")
    assert spec["25-OH vitamin D", "ng/mL"] == engine.loinc_code("vitamin_d", "ng/mL")
    assert spec["bilirubin, total", "mg/dL"] == engine.loinc_code("bilirubin", "mg/dL")
    assert engine.loinc_code("crcl", "mL/min") == ""  # the spec gives none: none invented


def test_a_made_up_lab_test_is_one_entry_in_the_declaration(tmp_path: Path) -> None:
    """Copy the code, add one LabTest to the declaration and run the proof script in the copy
    (tests/scripts/new_lab_test_proof.py): document, schema, API, form and model all accept it
    with no other edit."""
    for part in ("alpcare", "pathways", "templates", "tests"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    source = tmp_path / "pathways/engine/declaration.py"
    text = source.read_text()
    anchor = "LAB_TESTS: list[LabTest] = [\n"
    entry = (
        '    LabTest("made_up", "Made-up marker", (Unit("mmol/L"), Unit("mg/dL", divisor=2.0))),\n'
    )
    assert text.count(anchor) == 1
    source.write_text(text.replace(anchor, anchor + entry))
    run = subprocess.run(
        [sys.executable, str(tmp_path / "tests/scripts/new_lab_test_proof.py")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "DJANGO_DEBUG": "1", "HOME": str(tmp_path)},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "went through with one edit" in run.stdout


def _cases() -> list[dict[str, Any]]:
    rng = random.Random(7)
    synthetic = [synthetic_case(rng, TODAY, results=12) for _ in range(20)]
    return [
        paget_on_alendronate_document(),
        myeloma_on_zoledronic_acid_14_months_document(),
        pregnant_third_trimester_document(),
        pregnant_third_trimester_document(gestational_weeks=None),
        revision_2_inputs_document(),
        *synthetic,
    ]


def _in_stored_order(case: engine.Case) -> engine.Case:
    """Stored rows come back in time order (an untimed result first on its day)."""
    labs = sorted(
        case.labs,
        key=lambda lab: (
            lab.collected_on,
            lab.collected_time is not None,
            str(lab.collected_time),
            lab.test,
        ),
    )
    therapies = sorted(case.clinical.therapies, key=lambda t: (t.start, t.agent))
    clinical = dataclasses.replace(case.clinical, therapies=tuple(therapies))
    return dataclasses.replace(case, labs=tuple(labs), clinical=clinical)


def test_the_form_and_the_stored_rows_give_the_engine_the_same_case_as_the_document(
    alice: Any, north_clinic: Any, db: None
) -> None:
    """One conversion per direction: document -> form POST -> case_draft, and document ->
    stored rows -> patient_to_case, both land on the case the engine parses from the document;
    engine.case_to_document gives the document back."""
    for number, document in enumerate(_cases()):
        case = engine.parse_case(document)
        draft = case_draft(as_browser_json(form_data(document)))
        assert engine.parse_case(draft.document, today=case.as_of) == case
        patient = stored_patient(north_clinic, alice, document, mrn=f"RT-{number}")
        assert patient_to_case(patient, as_of=case.as_of) == _in_stored_order(case)
        assert engine.parse_case(engine.case_to_document(case)) == case
