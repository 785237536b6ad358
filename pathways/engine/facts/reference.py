"""Reference intervals (reference-intervals.md): the band that applies to one result, and the
limits a result is judged against — the lab's own limits first, else the built-in band for the
patient's age (and sex, and menopause) at the result's collection.

Pregnancy bands (total ALP by trimester) are never chosen here: ``pregnancy_band`` finds them,
and the ALP series applies them only to raise the usual limit (spec §3)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from ..case import Lab, PatientInfo
from ..dates import age_in_years
from ..ruleset import UlnBand
from ..vocabulary import CONVERSIONS

DEFAULT_MENOPAUSE_AGE_YEARS = 51  # spec §1: postmenopausal assumed from age ≥ 51
_UNIT_SHORT = {"days": "d", "years": "y"}


def select_uln_band(
    bands: Iterable[UlnBand],
    test: str,
    sex: str,
    birth_date: date,
    on: date,
    *,
    postmenopausal: bool | None = None,
    gestational_week: int | None = None,
) -> UlnBand | None:
    """The first band for the test, sex, age at `on` (age_to exclusive) and menopause.

    Without `gestational_week` pregnancy bands are skipped; with it only pregnancy bands whose
    weeks hold it match. A band for pre- or postmenopausal women matches only when
    `postmenopausal` says so (None: neither)."""
    age_days = (on - birth_date).days
    age_years = age_in_years(birth_date, on)
    for band in bands:
        if band.test != test or band.sex not in (sex, "any"):
            continue
        if gestational_week is None:
            if band.pregnancy:
                continue
        elif not _holds_week(band, gestational_week):
            continue
        if band.menopause == "pre" and postmenopausal is not False:
            continue
        if band.menopause == "post" and postmenopausal is not True:
            continue
        if (age_days if band.age_from_unit == "days" else age_years) < band.age_from:
            continue
        age_for_to = age_days if band.age_to_unit == "days" else age_years
        if band.age_to is not None and age_for_to >= band.age_to:
            continue
        return band
    return None


def _holds_week(band: UlnBand, week: int) -> bool:
    if band.gestational_week_from is None or week < band.gestational_week_from:
        return False
    return band.gestational_week_to is None or week < band.gestational_week_to


def band_uln_canonical(band: UlnBand) -> float:
    return _canonical(band, band.uln)


def band_lln_canonical(band: UlnBand) -> float | None:
    return None if band.lln is None else _canonical(band, band.lln)


def _canonical(band: UlnBand, value: float) -> float:
    if (band.test, band.unit) in CONVERSIONS:
        _, multiplier, divisor = CONVERSIONS[(band.test, band.unit)]
        return round(value * multiplier / divisor, 6)
    return value


def band_label(band: UlnBand) -> str:
    """How the band is named in a ULN source: its label, else made from its ages ("male ≥ 19 y",
    "any 1 y - < 10 y") or its trimester ("pregnancy, third trimester")."""
    if band.label:
        return band.label
    if band.pregnancy:
        if band.trimester:
            return f"pregnancy, {band.trimester} trimester"
        upper = f"-{band.gestational_week_to - 1}" if band.gestational_week_to else "+"
        return f"pregnancy, weeks {band.gestational_week_from}{upper}"
    who = band.sex
    if band.menopause != "any":
        who += f", {band.menopause}menopausal"
    start = f"{band.age_from} {_UNIT_SHORT.get(band.age_from_unit, band.age_from_unit)}"
    if band.age_to is None:
        return f"{who} ≥ {start}"
    end = f"{band.age_to} {_UNIT_SHORT.get(band.age_to_unit, band.age_to_unit)}"
    return f"{who} {start} - < {end}"


def pregnancy_band(
    bands: Iterable[UlnBand], test: str, week: int | None
) -> tuple[UlnBand | None, bool]:
    """The pregnancy band for a gestational week; when the week is unknown (None), the band
    that runs to term (the third trimester: reference-intervals.md). Returns (band, weeks
    unknown)."""
    candidates = [band for band in bands if band.test == test and band.pregnancy]
    if week is not None:
        return next((band for band in candidates if _holds_week(band, week)), None), False
    to_term = [band for band in candidates if band.gestational_week_to is None]
    return (
        max(to_term, key=lambda band: band.gestational_week_from or 0) if to_term else None
    ), True


def is_postmenopausal(patient: PatientInfo, on: date, menopause_age: float) -> bool | None:
    """spec §1: patient.postmenopausal when given, else assumed from the age at `on`; None for
    a male patient."""
    if patient.sex != "female":
        return None
    if patient.postmenopausal is not None:
        return patient.postmenopausal
    return age_in_years(patient.birth_date, on) >= menopause_age


@dataclass(frozen=True)
class Limits:
    """What one result is judged against, in the test's canonical unit."""

    lln: float | None
    uln: float | None
    source: str | None  # "lab", "built-in: <band>" or None (no limit at all)


def lab_limits(
    lab: Lab,
    bands: Sequence[UlnBand],
    patient: PatientInfo,
    *,
    postmenopausal: bool | None = None,
) -> Limits:
    """The lab's own limits win (each of the two on its own); a missing one comes from the
    built-in band at the result's collection. Adult bands only start at 18 years, so a child's
    result without the lab's limits has none (its state is unknown: reference-intervals.md)."""
    band = None
    if lab.canonical_reference_high is None or lab.canonical_reference_low is None:
        band = select_uln_band(
            bands,
            lab.test,
            patient.sex,
            patient.birth_date,
            lab.collected_on,
            postmenopausal=postmenopausal,
        )
        if band is not None and band.unit not in ("", lab.canonical_unit):
            # A band in another unit can only be used when it converts to the result's.
            converted = CONVERSIONS.get((band.test, band.unit))
            if converted is None or converted[0] != lab.canonical_unit:
                band = None
    uln, lln, source = lab.canonical_reference_high, lab.canonical_reference_low, None
    if uln is not None:
        source = "lab"
    elif band is not None:
        uln, source = band_uln_canonical(band), f"built-in: {band_label(band)}"
    if lln is None and band is not None:
        lln = band_lln_canonical(band)
        source = source or f"built-in: {band_label(band)}"
    elif lln is not None:
        source = source or "lab"
    return Limits(lln=lln, uln=uln, source=source)
