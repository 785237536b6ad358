"""Clinical context: the diagnoses, symptoms and imaging as entered, and whether they explain
an elevated ALP (spec §2)."""

from __future__ import annotations

from operator import attrgetter
from typing import Any, Final

from ..case import Clinical
from .metabolic import METABOLIC_BONE_DIAGNOSES
from .spec import FactSpec as _F

# spec §2: diagnoses (or a fracture) that explain an elevated ALP.
ETIOLOGY_DIAGNOSES = frozenset(
    {
        "paget",
        "bone_metastases",
        "primary_bone_tumour",
        *METABOLIC_BONE_DIAGNOSES,
        "liver_disease",
        "sepsis",
        "hiv_aids",
    }
)

# Facts that are the clinical field of the same name, as entered.
_AS_ENTERED_SPECS = (
    _F("cancer", "string", "", "known solid cancer or null", "breast"),
    _F("cancer_treated", "bool", "", "the cancer has been treated", False),
    _F("bone_pain", "bool", "", "bone pain", False),
    _F("osteolytic_pain", "bool", "", "pain due to osteolytic disease", False),
    _F("bone_scan", "string", "", "not_done, normal, focal_lesions or diffuse", "not_done"),
    _F("fracture", "string", "", "none, healing, pathological or impending", "none"),
    _F("dental_exam_done", "bool", "", "dental examination done", False),
)
_AS_ENTERED = tuple(spec.name for spec in _AS_ENTERED_SPECS)
_read_as_entered = attrgetter(*_AS_ENTERED)

SPECS: Final[tuple[_F, ...]] = (
    _F("diagnoses", "list<string>", "", "clinical.diagnoses", ["paget"]),
    *_AS_ENTERED_SPECS,
    _F(
        "etiology_established",
        "bool",
        "",
        "an explaining diagnosis (paget, bone_metastases, …) or a fracture",
        True,
    ),
)


def clinical_context_facts(clinical: Clinical) -> dict[str, Any]:
    diagnoses = clinical.diagnoses
    values: dict[str, Any] = {"diagnoses": list(diagnoses)}
    values.update(zip(_AS_ENTERED, _read_as_entered(clinical), strict=True))
    values["etiology_established"] = (
        clinical.fracture != "none" or not ETIOLOGY_DIAGNOSES.isdisjoint(diagnoses)
    )
    return values
