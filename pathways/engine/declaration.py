"""The case, declared once (spec/pathways.md §1; reference-intervals.md for units and LOINC).

Every field of the case document with its type, unit, allowed values, label and help text, and
every lab test with its units, conversions and LOINC code. The rest derives from this module:
the vocabulary (``vocabulary.py``), the document schema and its parser (``case.py``), the
conversions to and from stored rows (``pathways/cases.py``), the case-entry form and its
labels (``pathways/forms.py``) and the model choices (``pathways/models.py``). A new lab test
is one entry in ``LAB_TESTS``; a new field is one entry in its group (plus the attribute of the
engine's dataclass and the model column that hold it, which a test checks against this list).

Pure Python with no imports from the rest of the engine, so that it can be read first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

# ---------------------------------------------------------------------------------------------
# Allowed values.


@dataclass(frozen=True)
class Choice:
    value: str
    label: str


def _choices(*values: str, **labels: str) -> tuple[Choice, ...]:
    """Choices labelled by their value in words ("multiple_myeloma" -> "multiple myeloma")."""
    return tuple(Choice(value, labels.get(value, value.replace("_", " "))) for value in values)


SEX = _choices("female", "male")
DIAGNOSIS = _choices(
    "multiple_myeloma",
    "mgus",
    "paget",
    "bone_metastases",
    "primary_bone_tumour",
    "osteomalacia",
    "hyperparathyroidism",
    "vitamin_d_deficiency",
    "osteoporosis",
    "chronic_kidney_disease",
    "liver_disease",
    "sepsis",
    "hiv_aids",
    mgus="MGUS",
    paget="Paget's disease of bone",
    vitamin_d_deficiency="vitamin D deficiency",
    hiv_aids="HIV/AIDS",
)
CANCER = _choices("breast", "prostate", "renal", "lung", "other")
BONE_SCAN = _choices("not_done", "normal", "focal_lesions", "diffuse")
FRACTURE = _choices("none", "healing", "pathological", "impending")
RESPONSE = _choices("CR", "VGPR", "PR", "SD", "PD")
AGENT = _choices(
    "alendronate", "zoledronic_acid", "pamidronate", "denosumab", "other_bisphosphonate"
)


# ---------------------------------------------------------------------------------------------
# Lab tests.


@dataclass(frozen=True)
class Unit:
    """A unit a test may be reported in: canonical value = value * multiplier / divisor."""

    code: str  # as written in the document (ASCII UCUM: "ug/L", "umol/L")
    label: str = ""  # as shown ("µg/L"); the code when blank
    multiplier: float = 1.0
    divisor: float = 1.0
    canonical: str = ""  # the unit it converts to; the test's first unit when blank
    # No built-in interval in this unit: the lab's reference_high is required (spec §1).
    requires_reference_high: bool = False
    loinc: str = ""  # when this unit is a different LOINC observation than the test's

    @property
    def shown(self) -> str:
        return self.label or self.code


@dataclass(frozen=True)
class LabTest:
    code: str
    label: str
    units: tuple[Unit, ...]  # canonical unit first
    loinc: str = ""  # reference-intervals.md "LOINC codes"; blank where the spec gives none
    help: str = ""

    @property
    def canonical_unit(self) -> str:
        return self.units[0].code


_UKAT_TO_U: Final = 60.0  # spec §1: 1 µkat/L = 60 U/L

LAB_TESTS: list[LabTest] = [
    LabTest(
        "alp",
        "ALP (total)",
        (Unit("U/L"), Unit("ukat/L", "µkat/L", multiplier=_UKAT_TO_U)),
        loinc="6768-6",
        help="total alkaline phosphatase",
    ),
    LabTest(
        "bone_alp",
        "Bone ALP",
        (
            Unit("ug/L", "µg/L"),
            # Activity cannot be converted to mass: activity results stay in U/L (spec §1).
            Unit("U/L", canonical="U/L", requires_reference_high=True, loinc="1777-2"),
            Unit(
                "ukat/L",
                "µkat/L",
                multiplier=_UKAT_TO_U,
                canonical="U/L",
                requires_reference_high=True,
                loinc="1777-2",
            ),
        ),
        loinc="17838-4",
        help="bone-specific ALP",
    ),
    LabTest("ggt", "GGT", (Unit("U/L"), Unit("ukat/L", "µkat/L", multiplier=_UKAT_TO_U)), "2324-2"),
    LabTest("alt", "ALT", (Unit("U/L"), Unit("ukat/L", "µkat/L", multiplier=_UKAT_TO_U)), "1742-6"),
    # spec §1: ng/L = pg/mL
    LabTest("ctx", "CTX", (Unit("ng/L"), Unit("pg/mL")), "41171-0"),
    LabTest(
        "creatinine",
        "Creatinine",
        # spec §1: 88.42 µmol/L = 1 mg/dL
        (Unit("mg/dL"), Unit("umol/L", "µmol/L", divisor=88.42)),
        "2160-0",
    ),
    LabTest("crcl", "CrCl", (Unit("mL/min"),), help="creatinine clearance"),
    # spec §1: 1 mmol/L = 4.008 mg/dL
    LabTest(
        "calcium",
        "Calcium",
        (Unit("mg/dL"), Unit("mmol/L", multiplier=4.008)),
        "17861-6",
        help="total calcium (corrected for albumin by the engine)",
    ),
    # spec §1: 10 g/L = 1 g/dL
    LabTest("albumin", "Albumin", (Unit("g/dL"), Unit("g/L", divisor=10.0)), "1751-7"),
    # spec §1: 1 mmol/L = 3.097 mg/dL
    LabTest("phosphate", "Phosphate", (Unit("mg/dL"), Unit("mmol/L", multiplier=3.097)), "2777-1"),
    # spec §1: ng/L = pg/mL; 1 pmol/L = 9.43 pg/mL
    LabTest(
        "pth",
        "PTH (intact)",
        (Unit("pg/mL"), Unit("ng/L"), Unit("pmol/L", multiplier=9.43)),
        "2731-8",
        help="intact parathyroid hormone",
    ),
    LabTest(
        "vitamin_d",
        "25-OH vitamin D",
        # spec §1: 2.496 nmol/L = 1 ng/mL
        (Unit("ng/mL"), Unit("nmol/L", divisor=2.496)),
        "62292-8",
    ),
    LabTest(
        "bilirubin",
        "Bilirubin",
        # spec §1: 17.1 µmol/L = 1 mg/dL
        (Unit("mg/dL"), Unit("umol/L", "µmol/L", divisor=17.1)),
        "1975-2",
    ),
]


# ---------------------------------------------------------------------------------------------
# Fields of the case document, group by group.

Kind = Literal["date", "datetime", "bool", "number", "text", "choice", "choices"]


@dataclass(frozen=True)
class CaseField:
    name: str
    kind: Kind
    label: str
    help: str = ""
    unit: str = ""  # of a number field
    choices: tuple[Choice, ...] = ()
    required: bool = False
    default: object = None  # when absent from the document
    blank: str = ""  # how a form shows "not given" for a choice
    minimum: float | None = None  # inclusive
    above: float | None = None  # exclusive minimum
    maximum: float | None = None  # inclusive
    below: float | None = None  # exclusive maximum: what the database stores (a STORED_BELOW)
    integer: bool = False  # a number that must be whole (gestational_weeks)

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(choice.value for choice in self.choices)


@dataclass(frozen=True)
class Group:
    """A part of the document (``path``) and the prefix of its columns and form fields."""

    path: str
    fields: tuple[CaseField, ...]
    prefix: str = ""
    rows: bool = False  # a list of rows (labs, therapies) rather than one object

    def __getitem__(self, name: str) -> CaseField:
        return next(item for item in self.fields if item.name == name)


# The largest numbers the database stores (its check constraints, pathways/models.py): not
# clinical limits, but the line between a number refused with its field named and a server error.
# NaN and infinity fail them too. A lab's limit holds for its value in the canonical unit as well.
WEIGHT_BELOW: Final = 1000
BASELINE_BELOW: Final = 10000
LAB_NUMBER_BELOW: Final = 1e12

PATIENT = Group(
    "patient",
    (
        CaseField("birth_date", "date", "Birth date", required=True),
        CaseField("sex", "choice", "Sex", choices=SEX, required=True, blank="—"),
        CaseField("pregnant", "bool", "Pregnant", default=False),
        CaseField(
            "gestational_weeks",
            "number",
            "Gestational weeks",
            help="completed weeks of pregnancy on the assessment date (1-42); only when pregnant",
            unit="weeks",
            minimum=1,
            maximum=42,
            integer=True,
        ),
        CaseField(
            "postmenopausal",
            "bool",
            "Postmenopausal",
            help="only for a female patient; unknown: assumed from age 51 at each result",
            default=None,
        ),
        CaseField(
            "weight_kg",
            "number",
            "Weight (kg)",
            unit="kg",
            above=0,
            below=WEIGHT_BELOW,
            help="used for Cockcroft-Gault",
        ),
    ),
)

LAB = Group(
    "labs",
    (
        CaseField("test", "choice", "Test", required=True),  # choices: LAB_TESTS
        CaseField(
            "value",
            "number",
            "Value",
            required=True,
            minimum=0,
            below=LAB_NUMBER_BELOW,
            help="finite, in `unit`",
        ),
        CaseField("unit", "choice", "Unit", required=True),  # choices: the test's units
        CaseField("collected_at", "datetime", "Collected", required=True),
        CaseField(
            "reference_high",
            "number",
            "Lab's upper limit",
            above=0,
            below=LAB_NUMBER_BELOW,
            help="the reporting lab's upper limit of normal, in `unit`",
        ),
        CaseField(
            "reference_low",
            "number",
            "Lab's lower limit",
            minimum=0,
            below=LAB_NUMBER_BELOW,
            help="the reporting lab's lower limit of normal, in `unit`; below reference_high",
        ),
    ),
    rows=True,
)

MYELOMA = Group(
    "clinical.myeloma",
    (
        CaseField("requires_therapy", "bool", "Requires therapy", default=False),
        CaseField("bone_disease", "bool", "Bone disease (lytic lesions)", default=False),
        CaseField("active_bone_disease", "bool", "Active bone disease", default=False),
        CaseField("response", "choice", "Response", choices=RESPONSE, blank="not assessed"),
        CaseField("treatment_start", "date", "Treatment start"),
        CaseField("bortezomib_start", "date", "Bortezomib start"),
        CaseField(
            "whole_body_imaging_done",
            "bool",
            "Whole-body imaging done",
            help="low-dose CT, PET-CT or whole-body MRI",
            default=False,
        ),
    ),
    prefix="mm_",
)

THERAPY = Group(
    "clinical.therapies",
    (
        CaseField("agent", "choice", "Agent", choices=AGENT, required=True),
        CaseField("start", "date", "Start", required=True),
        CaseField("end", "date", "End", help="blank: ongoing"),
    ),
    rows=True,
)

CLINICAL = Group(
    "clinical",
    (
        CaseField("diagnoses", "choices", "Diagnoses", choices=DIAGNOSIS, default=()),
        CaseField("cancer", "choice", "Known solid cancer", choices=CANCER, blank="none"),
        CaseField("cancer_treated", "bool", "Cancer treated", default=False),
        CaseField("bone_pain", "bool", "Bone pain", default=False),
        CaseField("osteolytic_pain", "bool", "Osteolytic pain", default=False),
        CaseField("bone_scan", "choice", "Bone scan", choices=BONE_SCAN, default="not_done"),
        CaseField("fracture", "choice", "Fracture", choices=FRACTURE, default="none"),
        CaseField(
            "fracture_date",
            "date",
            "Fracture date",
            help="date of the fracture (or of the finding, for impending); blank: unknown",
        ),
        CaseField("dental_exam_done", "bool", "Dental examination done", default=False),
        CaseField(
            "crcl_baseline",
            "number",
            "CrCl baseline (mL/min)",
            unit="mL/min",
            minimum=0,
            below=BASELINE_BELOW,
            help="before the current IV bisphosphonate",
        ),
        CaseField(
            "creatinine_baseline",
            "number",
            "Creatinine baseline (mg/dL)",
            unit="mg/dL",
            above=0,
            below=BASELINE_BELOW,
            help="before the current IV bisphosphonate",
        ),
    ),
)

GROUPS: Final = (PATIENT, LAB, CLINICAL, MYELOMA, THERAPY)
# The groups of one patient's single values, in document order (stored as Patient columns).
PATIENT_GROUPS: Final = (PATIENT, CLINICAL, MYELOMA)
# Every declared field's coded values by the words a rationale shows ("paget" -> "Paget's disease
# of bone"): a field added to a group brings its labels.
CHOICE_LABELS: Final = {
    choice.value: choice.label
    for group in GROUPS
    for item in group.fields
    for choice in item.choices
}


def declared_field(path: str) -> CaseField | None:
    """The declared case field at a document path ("clinical.myeloma.response"), or None."""
    group_path, _, name = path.rpartition(".")
    group = next((g for g in PATIENT_GROUPS if g.path == group_path), None)
    if group is None:
        return None
    return next((item for item in group.fields if item.name == name), None)


def lab_test(code: str) -> LabTest:
    return next(test for test in LAB_TESTS if test.code == code)


def unit_of(test: str, unit: str) -> Unit | None:
    return next((item for item in lab_test(test).units if item.code == unit), None)


def unit_shown(test: str, unit: str) -> str:
    """A unit as the screens show it ("ug/L" as "µg/L"); the code when not declared."""
    declared = unit_of(test, unit) if unit else None
    return declared.shown if declared else unit


def loinc_code(test: str, unit: str) -> str:
    """The LOINC code of a result of ``test`` reported in ``unit`` ("" when none is given)."""
    declared = unit_of(test, unit)
    return (declared.loinc if declared else "") or lab_test(test).loinc
