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
from . import (
    alp,
    bone_alp,
    context,
    flags,
    liver,
    metabolic,
    myeloma,
    patient,
    renal,
    therapies,
)
from .alp import AlpPoint, log_normal_rcv, reference_change_value
from .reference import band_label, band_uln_canonical, select_uln_band
from .renal import cockcroft_gault, select_dose_band
from .spec import FactSpec, collection_order
from .therapies import TherapyFacts

# Parameters the fact computation itself reads (spec §2, §3, reference-intervals.md) that every
# rule set must have.
ENGINE_PARAMETERS = (
    "renal_impairment_crcl",
    "rcv_cvi_pct",
    "rcv_cva_pct",
    "rcv_z",
)
_ENGINE_PARAMETER_SET = frozenset(ENGINE_PARAMETERS)
# Revision 2's engine parameters (and revision 1's that revision 2 no longer needs): a rule set
# ships them as [[parameters]] to tune them; one that lacks them (a revision-1 rule set, stored
# before they existed) is computed with these defaults, the spec's bold values, so that every
# past version still assesses as it did. The exception is `recent_lab_days`: without it every
# result is recent, as revision 1 had no recent window.
ENGINE_DEFAULTS: Final[dict[str, float]] = {
    "persistence_days": 28,
    "urgent_hypercalcaemia_mg_dl": 12.0,
    "vitamin_d_deficient_ng_ml": 20,
    "pth_not_suppressed_pg_ml": 20,
    "menopause_age_years": 51,
    "creatinine_rise_baseline_mg_dl": 1.4,
    "creatinine_rise_low_mg_dl": 0.5,
    "creatinine_rise_high_mg_dl": 1.0,
    "ckd_mbd_crcl": 45,
    "ctx_late_hour": 10,
    "ctx_time_spread_hours": 4,
    "renal_deterioration_pct": 10,  # revision 1 (renal_deterioration)
}
RECENT_LAB_DAYS = "recent_lab_days"  # spec §2: 90; absent in revision 1 (no window)
BONE_ALP_MASS_ULN = "bone_alp_mass_uln"  # revision 1: used when the rule set has no B-ALP bands
OPTIONAL_ENGINE_PARAMETERS: Final = (*ENGINE_DEFAULTS, RECENT_LAB_DAYS, BONE_ALP_MASS_ULN)

# The published entries of every group, in the order the rule editor lists them.
GROUP_SPECS: Final[tuple[tuple[FactSpec, ...], ...]] = (
    patient.SPECS,
    alp.SPECS,
    bone_alp.SPECS,
    liver.SPECS,
    context.SPECS,
    metabolic.SPECS,
    therapies.SPECS,
    renal.SPECS,
    myeloma.SPECS,
    flags.SPECS,
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
    therapies: tuple[TherapyFacts, ...]  # by start (therapies.therapies_facts)
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
    params = {**ENGINE_DEFAULTS, **params}
    recent_days = params.get(RECENT_LAB_DAYS)
    labs_by_test: dict[str, list[Lab]] = {}
    for lab in sorted(case.labs, key=collection_order):
        labs_by_test.setdefault(lab.test, []).append(lab)
    no_labs: list[Lab] = []
    as_of, bands = case.as_of, rule_set.uln_bands

    rcv = reference_change_value(params["rcv_cvi_pct"], params["rcv_cva_pct"], params["rcv_z"])
    rcv_rise, rcv_fall = log_normal_rcv(
        params["rcv_cvi_pct"], params["rcv_cva_pct"], params["rcv_z"]
    )
    points = alp.alp_series(
        labs_by_test.get("alp", no_labs),
        case.patient,
        bands,
        rcv,
        as_of=as_of,
        recent_days=recent_days,
    )
    therapy_values, therapy_facts = therapies.therapies_facts(
        case.clinical.therapies, as_of, points, case.clinical
    )
    bone_alp_values = bone_alp.bone_alp_facts(
        labs_by_test.get("bone_alp", no_labs),
        case.patient,
        bands,
        mass_uln=params.get(BONE_ALP_MASS_ULN),
        menopause_age=params["menopause_age_years"],
    )
    liver_values = liver.liver_facts(
        labs_by_test,
        case.patient,
        bands,
        as_of=as_of,
        recent_days=recent_days,
        bone_alp=bone_alp_values["bone_alp"],
    )
    values: dict[str, Any] = {
        **patient.patient_facts(
            case,
            sorted(labs_by_test),
            revision_1=recent_days is None,
            menopause_age=params["menopause_age_years"],
        ),
        **alp.alp_facts(
            points,
            rcv,
            rcv_rise=rcv_rise,
            rcv_fall=rcv_fall,
            persistence_days=params["persistence_days"],
        ),
        **bone_alp_values,
        **liver_values,
        **context.clinical_context_facts(
            case.clinical,
            as_of,
            recent_days=recent_days,
            ctx_labs=labs_by_test.get("ctx", no_labs),
            params=params,
        ),
        **metabolic.metabolic_facts(
            case.clinical,
            labs_by_test,
            case.patient,
            bands,
            as_of=as_of,
            recent_days=recent_days,
            params=params,
            liver=liver_values,
        ),
        **therapy_values,
        **renal.renal_facts(
            case,
            labs_by_test.get("crcl", no_labs),
            labs_by_test.get("creatinine", no_labs),
            iv_bisphosphonate_start=therapy_values["iv_bisphosphonate_start"],
            on_iv_bisphosphonate=therapy_values["on_iv_bisphosphonate"],
            on_zoledronic_acid=therapy_values["on_zoledronic_acid"],
            dose_bands=rule_set.za_dose_bands,
            params=params,
            recent_days=recent_days,
        ),
        **myeloma.myeloma_facts(
            case.clinical.myeloma,
            points,
            multiple_myeloma="multiple_myeloma" in case.clinical.diagnoses,
        ),
    }
    values.update(flags.flag_facts(values))

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
    "ENGINE_DEFAULTS",
    "ENGINE_PARAMETERS",
    "GROUP_SPECS",
    "OPTIONAL_ENGINE_PARAMETERS",
    "AlpPoint",
    "FactSpec",
    "Facts",
    "TherapyFacts",
    "band_label",
    "band_uln_canonical",
    "cockcroft_gault",
    "compute_facts",
    "log_normal_rcv",
    "reference_change_value",
    "select_dose_band",
    "select_uln_band",
]
