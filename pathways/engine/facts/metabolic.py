"""Calcium, vitamin D and PTH: metabolic bone disease (spec §2).

Revision 1 reads these from the diagnoses only; revision 2's calcium, albumin, phosphate, PTH
and vitamin D results add their facts here.
"""

from __future__ import annotations

from typing import Any, Final

from ..case import Clinical
from .spec import FactSpec as _F

METABOLIC_BONE_DIAGNOSES = frozenset(
    {"osteomalacia", "hyperparathyroidism", "vitamin_d_deficiency"}
)

SPECS: Final[tuple[_F, ...]] = (
    _F(
        "metabolic_bone_disease",
        "bool",
        "",
        "osteomalacia, hyperparathyroidism or vitamin_d_deficiency",
        False,
    ),
)


def metabolic_facts(clinical: Clinical) -> dict[str, Any]:
    return {
        "metabolic_bone_disease": not METABOLIC_BONE_DIAGNOSES.isdisjoint(clinical.diagnoses),
    }
