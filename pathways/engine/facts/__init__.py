"""Derived facts (spec/pathways.md §2), computed once per assessment in Python.

Rules never do arithmetic on raw labs: they read these facts (and `params`) from CEL.
Dates are exposed to CEL as ISO strings; date arithmetic stays here.

One module per group of facts, each with its published entries (`SPECS`, the vocabulary rule
editors see: fact_specs.FACTS) beside the function computing them: patient, alp, bone_alp,
context, metabolic (calcium, vitamin D, PTH), therapies, renal, myeloma.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Final

from ..case import Case, Lab
from ..dates import iso_date
from ..ruleset import RuleSet
from . import alp, bone_alp, context, metabolic, myeloma, patient, renal, therapies
from .alp import AlpPoint, band_uln_canonical, reference_change_value, select_uln_band
from .renal import cockcroft_gault, select_dose_band
from .spec import FactSpec, collection_order
from .therapies import TherapyFacts

# Parameters the fact computation itself reads (spec §2, §3, reference-intervals.md).
ENGINE_PARAMETERS = (
    "renal_impairment_crcl",
    "renal_deterioration_pct",
    "rcv_cvi_pct",
    "rcv_cva_pct",
    "rcv_z",
    "bone_alp_mass_uln",
)
_ENGINE_PARAMETER_SET = frozenset(ENGINE_PARAMETERS)

# The published entries of every group, in the order the rule editor lists them.
GROUP_SPECS: Final[tuple[tuple[FactSpec, ...], ...]] = (
    patient.SPECS,
    alp.SPECS,
    bone_alp.SPECS,
    context.SPECS,
    metabolic.SPECS,
    therapies.SPECS,
    renal.SPECS,
    myeloma.SPECS,
)
_DATE_FACTS: Final = tuple(
    spec.name for specs in GROUP_SPECS for spec in specs if spec.type == "date"
)


@dataclass(frozen=True)
class Facts:
    values: dict[str, Any]  # the CEL variables (besides params and fired)
    dates: dict[str, date | None]  # every date fact as a date (follow-up anchors)
    alp_points: tuple[AlpPoint, ...]
    rcv_pct: float
    therapies: tuple[TherapyFacts, ...]  # same order as case.clinical.therapies
    bortezomib_baseline_date: date | None
    crcl_current_date: date | None
    crcl_baseline_date: date | None

    def __getitem__(self, name: str) -> Any:
        return self.values[name]


def compute_facts(
    case: Case, rule_set: RuleSet, *, params: dict[str, float] | None = None
) -> Facts:
    """Every §2 fact of the case under this rule set's parameters and reference tables."""
    if params is None:
        params = rule_set.parameter_values()
    if not params.keys() >= _ENGINE_PARAMETER_SET:
        missing = [name for name in ENGINE_PARAMETERS if name not in params]
        raise KeyError(f"rule set {rule_set.version!r} lacks parameter(s): {', '.join(missing)}")
    labs_by_test: dict[str, list[Lab]] = {}
    for lab in sorted(case.labs, key=collection_order):
        labs_by_test.setdefault(lab.test, []).append(lab)
    no_labs: list[Lab] = []

    rcv = reference_change_value(params["rcv_cvi_pct"], params["rcv_cva_pct"], params["rcv_z"])
    points = alp.alp_series(labs_by_test.get("alp", no_labs), case.patient, rule_set.uln_bands, rcv)
    therapy_values, therapy_facts = therapies.therapies_facts(
        case.clinical.therapies, case.as_of, points
    )
    values: dict[str, Any] = {
        **patient.patient_facts(case, sorted(labs_by_test)),
        **alp.alp_facts(points, rcv),
        **bone_alp.bone_alp_facts(
            labs_by_test.get("bone_alp", no_labs), params["bone_alp_mass_uln"]
        ),
        **context.clinical_context_facts(case.clinical),
        **metabolic.metabolic_facts(case.clinical),
        **therapy_values,
        **renal.renal_facts(
            case,
            labs_by_test.get("crcl", no_labs),
            labs_by_test.get("creatinine", no_labs),
            iv_bisphosphonate_start=therapy_values["iv_bisphosphonate_start"],
            on_iv_bisphosphonate=therapy_values["on_iv_bisphosphonate"],
            dose_bands=rule_set.za_dose_bands,
            params=params,
        ),
        **myeloma.myeloma_facts(case.clinical.myeloma, points),
    }

    dates: dict[str, date | None] = {name: values[name] for name in _DATE_FACTS}
    for name, day in dates.items():
        values[name] = iso_date(day)
    return Facts(
        values=values,
        dates=dates,
        alp_points=points,
        rcv_pct=rcv,
        therapies=therapy_facts,
        bortezomib_baseline_date=dates["mm_baseline_alp_date"],
        crcl_current_date=dates["crcl_current_date"],
        crcl_baseline_date=dates["crcl_baseline_date"],
    )


__all__ = [
    "ENGINE_PARAMETERS",
    "GROUP_SPECS",
    "AlpPoint",
    "FactSpec",
    "Facts",
    "TherapyFacts",
    "band_uln_canonical",
    "cockcroft_gault",
    "compute_facts",
    "reference_change_value",
    "select_dose_band",
    "select_uln_band",
]
