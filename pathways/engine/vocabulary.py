"""Closed vocabularies of the case document and the result (spec/pathways.md §1, §4)."""

from __future__ import annotations

from typing import Final, Literal, get_args

Test = Literal[
    "alp", "bone_alp", "ggt", "ctx", "creatinine", "crcl", "calcium", "vitamin_d", "bilirubin"
]
Sex = Literal["female", "male"]
Diagnosis = Literal[
    "multiple_myeloma",
    "mgus",
    "paget",
    "bone_metastases",
    "primary_bone_tumour",
    "osteomalacia",
    "hyperparathyroidism",
    "vitamin_d_deficiency",
    "chronic_kidney_disease",
    "liver_disease",
    "sepsis",
    "hiv_aids",
]
Cancer = Literal["breast", "prostate", "renal", "lung", "other"]
BoneScan = Literal["not_done", "normal", "focal_lesions", "diffuse"]
Fracture = Literal["none", "healing", "pathological", "impending"]
Response = Literal["CR", "VGPR", "PR", "SD", "PD"]
Agent = Literal[
    "alendronate", "zoledronic_acid", "pamidronate", "denosumab", "other_bisphosphonate"
]

TESTS: Final[tuple[str, ...]] = get_args(Test)
SEXES: Final[tuple[str, ...]] = get_args(Sex)
DIAGNOSES: Final[tuple[str, ...]] = get_args(Diagnosis)
CANCERS: Final[tuple[str, ...]] = get_args(Cancer)
BONE_SCANS: Final[tuple[str, ...]] = get_args(BoneScan)
FRACTURES: Final[tuple[str, ...]] = get_args(Fracture)
RESPONSES: Final[tuple[str, ...]] = get_args(Response)
AGENTS: Final[tuple[str, ...]] = get_args(Agent)
BISPHOSPHONATES: Final = ("alendronate", "zoledronic_acid", "pamidronate", "other_bisphosphonate")
IV_BISPHOSPHONATES: Final = ("zoledronic_acid", "pamidronate")
BONE_TARGETED_AGENTS: Final = (*BISPHOSPHONATES, "denosumab")
BORTEZOMIB_WINDOW_DAYS: Final = 42  # spec §2: ALP rise by day 42 of bortezomib
PRIORITIES: Final = ("urgent", "high", "routine", "info")
PRIORITY_RANK: Final = {priority: rank for rank, priority in enumerate(PRIORITIES)}  # 0 = urgent
PATHWAYS: Final = ("bone", "myeloma")
# Where a rule applies: one pathway, or both (spec §4, "apply in both pathways").
RULE_PATHWAYS: Final = ("bone", "myeloma", "both")
PATHWAY_LABELS: Final = {"bone": "bone workup", "myeloma": "multiple myeloma", "both": "both"}
FOLLOW_UP_STATUSES: Final = ("done", "overdue", "upcoming")

# Accepted units per test, canonical unit first (spec §1).
UNITS: Final[dict[str, tuple[str, ...]]] = {
    "alp": ("U/L", "ukat/L"),
    "bone_alp": ("ug/L", "U/L", "ukat/L"),
    "ggt": ("U/L", "ukat/L"),
    "ctx": ("ng/L", "pg/mL"),
    "creatinine": ("mg/dL", "umol/L"),
    "crcl": ("mL/min",),
    "calcium": ("mg/dL", "mmol/L"),
    "vitamin_d": ("ng/mL", "nmol/L"),
    "bilirubin": ("mg/dL", "umol/L"),
}

# (test, unit) -> (canonical unit, multiplier, divisor): canonical = value * multiplier / divisor.
_UKAT_TO_U: Final = 60.0  # spec §1: 1 µkat/L = 60 U/L
CONVERSIONS: Final[dict[tuple[str, str], tuple[str, float, float]]] = {
    ("alp", "U/L"): ("U/L", 1.0, 1.0),
    ("alp", "ukat/L"): ("U/L", _UKAT_TO_U, 1.0),
    ("ggt", "U/L"): ("U/L", 1.0, 1.0),
    ("ggt", "ukat/L"): ("U/L", _UKAT_TO_U, 1.0),
    ("bone_alp", "ug/L"): ("ug/L", 1.0, 1.0),
    # Activity cannot be converted to mass: activity results stay in U/L (spec §1, bone_alp).
    ("bone_alp", "U/L"): ("U/L", 1.0, 1.0),
    ("bone_alp", "ukat/L"): ("U/L", _UKAT_TO_U, 1.0),
    ("ctx", "ng/L"): ("ng/L", 1.0, 1.0),
    ("ctx", "pg/mL"): ("ng/L", 1.0, 1.0),  # spec §1: ng/L = pg/mL
    ("creatinine", "mg/dL"): ("mg/dL", 1.0, 1.0),
    ("creatinine", "umol/L"): ("mg/dL", 1.0, 88.42),  # spec §1: 88.42 µmol/L = 1 mg/dL
    ("crcl", "mL/min"): ("mL/min", 1.0, 1.0),
    ("calcium", "mg/dL"): ("mg/dL", 1.0, 1.0),
    ("calcium", "mmol/L"): ("mg/dL", 4.008, 1.0),  # spec §1: 1 mmol/L = 4.008 mg/dL
    ("vitamin_d", "ng/mL"): ("ng/mL", 1.0, 1.0),
    ("vitamin_d", "nmol/L"): ("ng/mL", 1.0, 2.496),  # spec §1: 2.496 nmol/L = 1 ng/mL
    ("bilirubin", "mg/dL"): ("mg/dL", 1.0, 1.0),
    ("bilirubin", "umol/L"): ("mg/dL", 1.0, 17.1),  # spec §1: 17.1 µmol/L = 1 mg/dL
}

# bone_alp units measuring activity: no built-in interval, reference_high required (spec §1).
BONE_ALP_ACTIVITY_UNITS: Final = ("U/L", "ukat/L")


def to_canonical(test: str, unit: str, value: float) -> tuple[float, str]:
    """Convert a value to its test's canonical unit; rounding hides float noise only."""
    canonical_unit, multiplier, divisor = CONVERSIONS[(test, unit)]
    return round(value * multiplier / divisor, 6), canonical_unit


# Override reasons (spec interop.md): one local code system shared by the worklist's override
# action, the CDS Hooks cards' overrideReasons and feedback, and the rule analytics.
OVERRIDE_REASON_SYSTEM: Final = "https://alpcare.example.org/fhir/CodeSystem/override-reason"
OVERRIDE_REASONS: Final[dict[str, str]] = {
    "not-applicable": "Not applicable to this patient",
    "patient-declined": "Patient declined",
    "done-elsewhere": "Already done elsewhere",
    "contraindicated": "Contraindicated for this patient",
    "disagree-evidence": "Disagree with the evidence",
    "other": "Other (free text required)",
}
OVERRIDE_REASON_NEEDING_TEXT: Final = "other"
