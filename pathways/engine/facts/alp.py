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
from .reference import band_label, band_uln_canonical, pregnancy_band, select_uln_band
from .spec import FactSpec as _F
from .spec import in_spec_order, is_recent, pct_change

__all__ = ["AlpPoint", "alp_facts", "alp_series", "band_uln_canonical", "select_uln_band"]

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
    _F(
        "alp_uln",
        "double",
        "U/L",
        "ULN for alp_latest: the lab's, else the built-in band; in pregnancy the higher of that "
        "and the trimester's",
        129.0,
    ),
    _F(
        "alp_uln_source",
        "string",
        "",
        'lab, "built-in: <band>" (e.g. "built-in: female ≥ 17 y", "built-in: pregnancy, third '
        'trimester"), "weeks unknown: third-trimester range", or none',
        "built-in: female ≥ 17 y",
    ),
    _F("alp_x_uln", "double", "\u00d7 ULN", "alp_latest / alp_uln", 3.19),
    _F(
        "alp_elevated",
        "bool",
        "",
        "alp_latest > alp_uln and alp_latest is recent (false when not measured)",
        True,
    ),
    _F("alp_recent", "bool", "", "alp_latest collected within params.recent_lab_days", True),
    _F(
        "alp_not_recent",
        "bool",
        "",
        "an ALP was measured but the latest is older than params.recent_lab_days",
        False,
    ),
    _F("alp_above_uln", "bool", "", "alp_latest > alp_uln, recent or not", True),
    _F("alp_normal", "bool", "", "alp_latest recent, its ULN known, and not above it", False),
    _F(
        "alp_persistently_elevated",
        "bool",
        "",
        "alp_elevated and an earlier ALP above its ULN at least params.persistence_days before it",
        True,
    ),
    _F(
        "alp_pregnancy_result",
        "bool",
        "",
        "alp_latest was collected during the pregnancy (gestational week ≥ 1 at collection)",
        False,
    ),
    _F(
        "alp_gestational_week",
        "int",
        "weeks",
        "gestational week at alp_latest's collection (null when weeks are unknown)",
        30,
    ),
    _F("alp_previous", "double", "U/L", "the ALP result before the latest", 350.0),
    _F("alp_previous_date", "date", "", "collection date of alp_previous", "2026-07-01"),
    _F("alp_change_pct", "double", "%", "alp_latest vs alp_previous, % of alp_previous", 17.7),
    _F("rcv_pct", "double", "%", "revision 1: symmetric RCV √2·Z·√(CVA²+CVI²)", 16.9),
    _F("rcv_rise_pct", "double", "%", "log-normal RCV for a rise: e^(Z·√2·sigma) - 1", 18.4),
    _F("rcv_fall_pct", "double", "%", "log-normal RCV for a fall: 1 - e^(-Z·√2·sigma)", 15.5),
    _F("alp_rise_beyond_rcv", "bool", "", "alp_change_pct > rcv_rise_pct", False),
    _F("alp_fall_beyond_rcv", "bool", "", "-alp_change_pct > rcv_fall_pct", False),
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
    uln_source: str  # "lab", "built-in: <band>", "weeks unknown: …" or "none"
    x_uln: float | None
    elevated: bool  # above its ULN (whatever its age: the history of a series)
    change_pct: float | None  # from the previous ALP result
    significant_change: bool  # |change| > the revision-1 symmetric RCV
    recent: bool = True  # within the recent window at as_of (spec §2)
    gestational_week: int | None = None  # at collection, for a pregnancy result
    pregnancy_result: bool = False


def reference_change_value(cvi_pct: float, cva_pct: float, z: float) -> float:
    """Revision 1: RCV = sqrt(2) * Z * sqrt(CVA^2 + CVI^2) (Fraser 2001), symmetric."""
    return round(math.sqrt(2) * z * math.sqrt(cva_pct**2 + cvi_pct**2), 6)


def log_normal_rcv(cvi_pct: float, cva_pct: float, z: float) -> tuple[float, float]:
    """(RCV↑, RCV↓) in % (reference-intervals.md; Fokkema 2006, Fraser 2012):
    sigma = √(ln(1 + CVA²) + ln(1 + CVI²));
    RCV↑ = e^(Z·√2·sigma) - 1; RCV↓ = 1 - e^(-Z·√2·sigma)."""
    sigma = math.sqrt(math.log(1 + (cva_pct / 100) ** 2) + math.log(1 + (cvi_pct / 100) ** 2))
    spread = z * math.sqrt(2) * sigma
    return round((math.exp(spread) - 1) * 100, 6), round((1 - math.exp(-spread)) * 100, 6)


@dataclass(frozen=True)
class Pregnancy:
    """What the ALP series needs to know of a pregnancy (reference-intervals.md)."""

    weeks: int | None  # patient.gestational_weeks at as_of; None: unknown
    as_of: date

    def week_at(self, on: date) -> tuple[bool, int | None]:
        """(a pregnancy result?, gestational week at `on`): weeks at as_of minus the whole weeks
        between; before week 1 it is not a pregnancy result. Weeks unknown: the last 40 weeks."""
        whole_weeks = (self.as_of - on).days // 7
        if self.weeks is None:
            return whole_weeks < 40, None
        week = self.weeks - whole_weeks
        return (True, week) if week >= 1 else (False, None)


def alp_series(
    labs: Sequence[Lab],
    patient: PatientInfo,
    uln_bands: Iterable[UlnBand],
    rcv: float,
    *,
    as_of: date | None = None,
    recent_days: float | None = None,
) -> tuple[AlpPoint, ...]:
    """The ALP results in collection order, each with its ULN, times ULN and change."""
    sex = patient.sex
    # Scanned once per result date: keep only the bands this patient's results can fall in.
    alp_bands = [band for band in uln_bands if band.test == "alp" and band.sex in (sex, "any")]
    pregnancy = (
        Pregnancy(patient.gestational_weeks, as_of)
        if patient.pregnant and as_of is not None
        else None
    )
    points: list[AlpPoint] = []
    previous_value: float | None = None
    # The built-in band depends on the age alone: once past every limit given in days, on the
    # age in whole years. So one lookup per age, not per result date.
    days_matter_below = max(
        (
            limit
            for band in alp_bands
            for limit, unit in (
                (band.age_from, band.age_from_unit),
                (band.age_to, band.age_to_unit),
            )
            if unit == "days" and limit is not None
        ),
        default=0,
    )
    built_in: dict[tuple[int, int | None], tuple[float | None, str]] = {}
    for lab in labs:
        uln: float | None
        if lab.canonical_reference_high is not None:
            uln, source = lab.canonical_reference_high, "lab"
        else:
            age_days = (lab.collected_on - patient.birth_date).days
            age = (
                age_in_years(patient.birth_date, lab.collected_on),
                age_days if age_days < days_matter_below else None,
            )
            if age not in built_in:
                band = select_uln_band(alp_bands, "alp", sex, patient.birth_date, lab.collected_on)
                built_in[age] = (
                    (None, "none")
                    if band is None
                    else (band_uln_canonical(band), f"built-in: {band_label(band)}")
                )
            uln, source = built_in[age]
        in_pregnancy, week = False, None
        if pregnancy is not None:
            in_pregnancy, week = pregnancy.week_at(lab.collected_on)
        if in_pregnancy:
            # spec §3: pregnancy only ever raises the limit (the lab's, else the age band's).
            band, weeks_unknown = pregnancy_band(alp_bands, "alp", week)
            if band is not None and (uln is None or band_uln_canonical(band) > uln):
                uln = band_uln_canonical(band)
                trimester = band.trimester or "third"
                source = (
                    f"weeks unknown: {trimester}-trimester range"
                    if weeks_unknown
                    else f"built-in: {band_label(band)}"
                )
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
                recent=as_of is None or is_recent(lab, as_of, recent_days),
                gestational_week=week,
                pregnancy_result=in_pregnancy,
            )
        )
        previous_value = value
    return tuple(points)


def _clock(at: time | None) -> str | None:
    return None if at is None else f"{at.hour:02d}:{at.minute:02d}"


def alp_facts(
    points: Sequence[AlpPoint],
    rcv: float,
    *,
    rcv_rise: float,
    rcv_fall: float,
    persistence_days: float,
) -> dict[str, Any]:
    latest = points[-1] if points else None
    previous = points[-2] if len(points) >= 2 else None
    timed = [point.collected_time for point in points if point.collected_time is not None]
    spread_hours = None
    if timed:
        seconds = [t.hour * 3600 + t.minute * 60 + t.second for t in timed]
        spread_hours = round((max(seconds) - min(seconds)) / 3600, 6)
    recent = latest is not None and latest.recent
    elevated = latest is not None and recent and latest.elevated
    # spec §2: at least two elevated results, the latest and one >= 28 days before it.
    persistent = (
        latest is not None
        and elevated
        and any(
            point.elevated and (latest.collected_on - point.collected_on).days >= persistence_days
            for point in points[:-1]
        )
    )
    change = latest.change_pct if latest else None
    return in_spec_order(
        SPECS,
        {
            "alp_count": len(points),
            "alp_measured": latest is not None,
            "alp_latest": latest.value if latest else None,
            "alp_latest_date": latest.collected_on if latest else None,
            "alp_latest_time": _clock(latest.collected_time) if latest else None,
            "alp_uln": latest.uln if latest else None,
            "alp_uln_source": latest.uln_source if latest else None,
            "alp_x_uln": latest.x_uln if latest else None,
            "alp_elevated": elevated,
            "alp_recent": recent,
            "alp_not_recent": latest is not None and not recent,
            "alp_above_uln": latest.elevated if latest else False,
            "alp_normal": recent
            and latest is not None
            and latest.uln is not None
            and not latest.elevated,
            "alp_persistently_elevated": persistent,
            "alp_pregnancy_result": latest.pregnancy_result if latest else False,
            "alp_gestational_week": latest.gestational_week if latest else None,
            "alp_previous": previous.value if previous else None,
            "alp_previous_date": previous.collected_on if previous else None,
            "alp_change_pct": change,
            "rcv_pct": rcv,
            "rcv_rise_pct": rcv_rise,
            "rcv_fall_pct": rcv_fall,
            "alp_significant_change": latest.significant_change if latest else False,
            "alp_significant_rise": change is not None and change > rcv,
            "alp_rise_beyond_rcv": change is not None and change > rcv_rise,
            "alp_fall_beyond_rcv": change is not None and -change > rcv_fall,
            "alp_timed_count": len(timed),
            "alp_time_spread_hours": spread_hours,
        },
    )
