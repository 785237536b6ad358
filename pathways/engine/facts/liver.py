"""Liver tests and the source of an elevated ALP (spec §2): GGT, ALT and bilirubin read the latest
recent result against the lab's limit, else the adult band by sex (children: the lab's limit
only, else unknown); the ALP source combines GGT, ALT and bone ALP."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any, Final

from ..case import Lab, PatientInfo
from ..ruleset import UlnBand
from .reference import lab_limits
from .spec import FactSpec as _F
from .spec import in_spec_order, latest_recent

ALP_SOURCES: Final = ("hepatic", "mixed", "bone", "likely_bone", "not_bone", "unknown")

SPECS: Final[tuple[_F, ...]] = (
    _F(
        "ggt",
        "string",
        "",
        "elevated, normal or unknown: the latest recent GGT vs its ULN",
        "normal",
    ),
    _F("ggt_latest", "double", "U/L", "the latest recent GGT", 22.0),
    _F("ggt_uln", "double", "U/L", "ULN for ggt_latest (lab, else adult band by sex)", 36.0),
    _F("ggt_x_uln", "double", "\u00d7 ULN", "ggt_latest / ggt_uln", 0.61),
    _F(
        "alt",
        "string",
        "",
        "elevated, normal or unknown: the latest recent ALT vs its ULN",
        "normal",
    ),
    _F("alt_latest", "double", "U/L", "the latest recent ALT", 30.0),
    _F("alt_uln", "double", "U/L", "ULN for alt_latest (lab, else adult band by sex)", 45.0),
    _F(
        "alp_source",
        "string",
        "",
        "hepatic, mixed, bone, likely_bone, not_bone or unknown (spec §2, first match)",
        "likely_bone",
    ),
    _F("bilirubin_latest", "double", "mg/dL", "the latest recent total bilirubin", 0.8),
    _F("bilirubin_uln", "double", "mg/dL", "ULN for bilirubin_latest", 1.2),
    _F("bilirubin_elevated", "bool", "", "bilirubin_latest > bilirubin_uln", False),
)


def _state(lab: Lab | None, uln: float | None) -> str:
    if lab is None or uln is None:
        return "unknown"
    return "elevated" if lab.canonical_value > uln else "normal"


def alp_source(ggt: str, alt: str, bone_alp: str) -> str:
    """spec §2: the first that matches, in this order."""
    if (ggt == "elevated" or (ggt == "unknown" and alt == "elevated")) and bone_alp != "elevated":
        return "hepatic"
    if ggt == "elevated" and bone_alp == "elevated":
        return "mixed"
    if bone_alp == "elevated" and ggt != "elevated":
        return "bone"
    if ggt == "normal" and bone_alp == "unknown":
        return "likely_bone"
    if bone_alp == "normal" and ggt != "elevated":
        return "not_bone"
    return "unknown"


def liver_facts(
    labs_by_test: dict[str, list[Lab]],
    patient: PatientInfo,
    bands: Sequence[UlnBand],
    *,
    as_of: date,
    recent_days: float | None,
    bone_alp: str,
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    states: dict[str, str] = {}
    for test in ("ggt", "alt", "bilirubin"):
        lab = latest_recent(labs_by_test.get(test, []), as_of, recent_days)
        uln = None if lab is None else lab_limits(lab, bands, patient).uln
        states[test] = _state(lab, uln)
        values[f"{test}_latest"] = None if lab is None else lab.canonical_value
        values[f"{test}_uln"] = uln
    ggt_latest, ggt_uln = values["ggt_latest"], values["ggt_uln"]
    values["ggt"] = states["ggt"]
    values["ggt_x_uln"] = (
        None if ggt_latest is None or not ggt_uln else round(ggt_latest / ggt_uln, 6)
    )
    values["alt"] = states["alt"]
    values["bilirubin_elevated"] = states["bilirubin"] == "elevated"
    values["alp_source"] = alp_source(states["ggt"], states["alt"], bone_alp)
    return in_spec_order(SPECS, values)
