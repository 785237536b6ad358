"""Total ALP series: each result against the ULN at its own collection date, and its change
from the previous result against the reference change value (reference-intervals.md)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, time
from typing import Any, Final

from ..case import Lab, PatientInfo
from ..dates import age_in_years
from ..ruleset import UlnBand
from ..vocabulary import CONVERSIONS
from .spec import FactSpec as _F
from .spec import pct_change

SPECS: Final[tuple[_F, ...]] = (
    _F("alp_count", "int", "", "number of total ALP results", 2),
    _F("alp_measured", "bool", "", "at least one total ALP result", True),
    _F("alp_latest", "double", "U/L", "the latest total ALP", 412.0),
    _F("alp_latest_date", "date", "", "collection date of alp_latest", "2026-10-01"),
    _F(
        "alp_latest_time",
        "string",
        "",
        "time of day of alp_latest (HH:MM), null if unknown",
        "08:15",
    ),
    _F("alp_uln", "double", "U/L", "ULN for alp_latest: the lab's, else the built-in band", 129.0),
    _F("alp_uln_source", "string", "", "lab, built-in or none", "lab"),
    _F("alp_x_uln", "double", "\u00d7 ULN", "alp_latest / alp_uln", 3.19),
    _F("alp_elevated", "bool", "", "alp_latest > alp_uln (false when not measured)", True),
    _F("alp_previous", "double", "U/L", "the ALP result before the latest", 350.0),
    _F("alp_previous_date", "date", "", "collection date of alp_previous", "2026-07-01"),
    _F("alp_change_pct", "double", "%", "alp_latest vs alp_previous, % of alp_previous", 17.7),
    _F("rcv_pct", "double", "%", "reference change value √2·Z·√(CVA²+CVI²)", 16.9),
    _F("alp_significant_change", "bool", "", "|alp_change_pct| > rcv_pct", True),
    _F("alp_significant_rise", "bool", "", "alp_change_pct > rcv_pct", True),
    _F("alp_timed_count", "int", "", "ALP results whose time of day is known", 2),
    _F(
        "alp_time_spread_hours",
        "double",
        "h",
        "latest minus earliest time of day among timed ALP results",
        6.5,
    ),
)


@dataclass(frozen=True)
class AlpPoint:
    """One total ALP result as the chart shows it."""

    collected_on: date
    collected_time: time | None
    value: float  # U/L
    uln: float | None  # U/L: the lab's reference_high, else the built-in band at that date
    uln_source: str  # "lab", "built-in" or "none"
    x_uln: float | None
    elevated: bool
    change_pct: float | None  # from the previous ALP result
    significant_change: bool  # |change| > RCV


def reference_change_value(cvi_pct: float, cva_pct: float, z: float) -> float:
    """RCV = sqrt(2) * Z * sqrt(CVA^2 + CVI^2) (Fraser 2001; reference-intervals.md)."""
    return round(math.sqrt(2) * z * math.sqrt(cva_pct**2 + cvi_pct**2), 6)


def select_uln_band(
    bands: Iterable[UlnBand], test: str, sex: str, birth_date: date, on: date
) -> UlnBand | None:
    """The first band for the test, sex and age at `on` (age_to exclusive)."""
    age_days = (on - birth_date).days
    age_years = age_in_years(birth_date, on)
    for band in bands:
        if band.test != test or band.sex not in (sex, "any"):
            continue
        if (age_days if band.age_from_unit == "days" else age_years) < band.age_from:
            continue
        age_for_to = age_days if band.age_to_unit == "days" else age_years
        if band.age_to is not None and age_for_to >= band.age_to:
            continue
        return band
    return None


def band_uln_canonical(band: UlnBand) -> float:
    if (band.test, band.unit) in CONVERSIONS:
        _, multiplier, divisor = CONVERSIONS[(band.test, band.unit)]
        return round(band.uln * multiplier / divisor, 6)
    return band.uln


def alp_series(
    labs: Sequence[Lab], patient: PatientInfo, uln_bands: Iterable[UlnBand], rcv: float
) -> tuple[AlpPoint, ...]:
    """The ALP results in collection order, each with its ULN, times ULN and change."""
    sex = patient.sex
    # Scanned once per result date: keep only the bands this patient's results can fall in.
    alp_bands = [band for band in uln_bands if band.test == "alp" and band.sex in (sex, "any")]
    points: list[AlpPoint] = []
    previous_value: float | None = None
    built_in_uln: dict[date, float | None] = {}
    for lab in labs:
        if lab.canonical_reference_high is not None:
            uln: float | None = lab.canonical_reference_high
            source = "lab"
        else:
            if lab.collected_on not in built_in_uln:
                band = select_uln_band(alp_bands, "alp", sex, patient.birth_date, lab.collected_on)
                built_in_uln[lab.collected_on] = None if band is None else band_uln_canonical(band)
            uln = built_in_uln[lab.collected_on]
            source = "none" if uln is None else "built-in"
        value = lab.canonical_value
        change = None if previous_value is None else pct_change(value, previous_value)
        points.append(
            AlpPoint(
                collected_on=lab.collected_on,
                collected_time=lab.collected_time,
                value=value,
                uln=uln,
                uln_source=source,
                x_uln=None if not uln else round(value / uln, 6),
                elevated=uln is not None and value > uln,
                change_pct=change,
                significant_change=change is not None and abs(change) > rcv,
            )
        )
        previous_value = value
    return tuple(points)


def _clock(at: time | None) -> str | None:
    return None if at is None else f"{at.hour:02d}:{at.minute:02d}"


def alp_facts(points: Sequence[AlpPoint], rcv: float) -> dict[str, Any]:
    latest = points[-1] if points else None
    previous = points[-2] if len(points) >= 2 else None
    timed = [point.collected_time for point in points if point.collected_time is not None]
    spread_hours = None
    if timed:
        seconds = [t.hour * 3600 + t.minute * 60 + t.second for t in timed]
        spread_hours = round((max(seconds) - min(seconds)) / 3600, 6)
    return {
        "alp_count": len(points),
        "alp_measured": latest is not None,
        "alp_latest": latest.value if latest else None,
        "alp_latest_date": latest.collected_on if latest else None,
        "alp_latest_time": _clock(latest.collected_time) if latest else None,
        "alp_uln": latest.uln if latest else None,
        "alp_uln_source": latest.uln_source if latest else None,
        "alp_x_uln": latest.x_uln if latest else None,
        "alp_elevated": latest.elevated if latest else False,
        "alp_previous": previous.value if previous else None,
        "alp_previous_date": previous.collected_on if previous else None,
        "alp_change_pct": latest.change_pct if latest else None,
        "rcv_pct": rcv,
        "alp_significant_change": latest.significant_change if latest else False,
        "alp_significant_rise": bool(
            latest and latest.change_pct is not None and latest.change_pct > rcv
        ),
        "alp_timed_count": len(timed),
        "alp_time_spread_hours": spread_hours,
    }
