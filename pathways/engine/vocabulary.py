"""Closed vocabularies of the case document and the result (spec/pathways.md §1, §4).

The case's vocabularies are read from its one declaration (``declaration.py``)."""

from __future__ import annotations

from typing import Final

from . import declaration
from .declaration import LAB_TESTS

TESTS: Final[tuple[str, ...]] = tuple(test.code for test in LAB_TESTS)
SEXES: Final = declaration.PATIENT["sex"].values
DIAGNOSES: Final = declaration.CLINICAL["diagnoses"].values
CANCERS: Final = declaration.CLINICAL["cancer"].values
BONE_SCANS: Final = declaration.CLINICAL["bone_scan"].values
FRACTURES: Final = declaration.CLINICAL["fracture"].values
RESPONSES: Final = declaration.MYELOMA["response"].values
AGENTS: Final = declaration.THERAPY["agent"].values
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
    test.code: tuple(unit.code for unit in test.units) for test in LAB_TESTS
}

# (test, unit) -> (canonical unit, multiplier, divisor): canonical = value * multiplier / divisor.
CONVERSIONS: Final[dict[tuple[str, str], tuple[str, float, float]]] = {
    (test.code, unit.code): (unit.canonical or test.canonical_unit, unit.multiplier, unit.divisor)
    for test in LAB_TESTS
    for unit in test.units
}

# (test, unit) pairs with no built-in interval: reference_high required (spec §1, bone_alp).
REFERENCE_HIGH_REQUIRED: Final[frozenset[tuple[str, str]]] = frozenset(
    (test.code, unit.code)
    for test in LAB_TESTS
    for unit in test.units
    if unit.requires_reference_high
)


def to_canonical(test: str, unit: str, value: float) -> tuple[float, str]:
    """Convert a value to its test's canonical unit; rounding hides float noise only."""
    canonical_unit, multiplier, divisor = CONVERSIONS[(test, unit)]
    return round(value * multiplier / divisor, 6), canonical_unit


# Override reasons (spec interop.md): one local code system shared by the worklist's override
# action, the CDS Hooks cards' overrideReasons and feedback, and the rule analytics.
OVERRIDE_REASON_SYSTEM: Final = "https://alpcare.example.org/fhir/CodeSystem/override-reason"
# Spec §0: codes revision 2 retired (they stay in past rule-set versions and stored results,
# and no longer fire), each with the codes that took its place. Codes never change meaning.
RETIRED_CODES: Final[dict[str, tuple[str, ...]]] = {
    "consider-time-of-day": ("ctx-timing",),
    "sampling-time-inconsistent": ("ctx-timing",),
    "mm-iv-bisphosphonate": ("mm-bone-agent",),
    "mm-zoledronic-acid": ("za-dose",),
    "mm-renal-dose-adjust": ("za-dose", "mm-denosumab-renal"),
    "mm-za-not-recommended": ("za-not-recommended-renal",),
    "mm-renal-before-infusion": ("iv-bp-renal-before-infusion",),
    "mm-hold-bisphosphonate-renal": ("iv-bp-withhold-creatinine-rise",),
    "mm-dental-exam": ("antiresorptive-dental-exam",),
}
OVERRIDE_REASONS: Final[dict[str, str]] = {
    "not-applicable": "Not applicable to this patient",
    "patient-declined": "Patient declined",
    "done-elsewhere": "Already done elsewhere",
    "contraindicated": "Contraindicated for this patient",
    "disagree-evidence": "Disagree with the evidence",
    "other": "Other (free text required)",
}
OVERRIDE_REASON_NEEDING_TEXT: Final = "other"
