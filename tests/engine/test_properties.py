"""Property tests: any valid case assesses; any broken document fails with field paths only."""

from __future__ import annotations

import copy
import json
from datetime import date, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pathways.engine import (
    AGENTS,
    BONE_SCANS,
    CANCERS,
    DIAGNOSES,
    FRACTURES,
    PRIORITIES,
    RESPONSES,
    UNITS,
    CaseInvalid,
    assess,
    case_to_document,
    compute_facts,
    parse_case,
    parse_case_json,
    render_result_json,
)
from pathways.engine.case import Lab, PatientInfo
from pathways.engine.facts.alp import alp_series
from pathways.engine.facts.flags import CONTEXT_FLAGS
from pathways.engine.facts.liver import ALP_SOURCES
from pathways.engine.facts.reference import band_label, band_uln_canonical, select_uln_band
from tests.engine.clinical_cases import catalogue, revision_2_facts_rule_set

PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
FIRST_DAY = date(1920, 1, 1)


def _day(draw: st.DrawFn, low: date, high: date) -> date:
    return low + timedelta(days=draw(st.integers(0, (high - low).days)))


@st.composite
def lab_documents(draw: st.DrawFn, birth: date, as_of: date) -> dict[str, Any]:
    test = draw(st.sampled_from(sorted(UNITS)))
    unit = draw(st.sampled_from(UNITS[test]))
    collected = _day(draw, max(birth, as_of - timedelta(days=3 * 365)), as_of)
    collected_at = collected.isoformat()
    if draw(st.booleans()):
        collected_at += f"T{draw(st.integers(0, 23)):02d}:{draw(st.integers(0, 59)):02d}"
        if draw(st.booleans()):
            collected_at += f":{draw(st.integers(0, 59)):02d}"
    value = draw(
        st.one_of(
            st.integers(0, 3000),
            st.floats(0, 3000, allow_nan=False, allow_infinity=False),
        )
    )
    entry: dict[str, Any] = {
        "test": test,
        "value": value,
        "unit": unit,
        "collected_at": collected_at,
    }
    return with_limits(draw, entry, top=2000.0)


def with_limits(draw: st.DrawFn, entry: dict[str, Any], *, top: float) -> dict[str, Any]:
    """A lab entry with reference limits drawn below ``top`` (always an upper limit for a bone
    ALP activity assay, which has no built-in interval)."""
    needs_reference = entry["test"] == "bone_alp" and entry["unit"] != "ug/L"
    if needs_reference or draw(st.booleans()):
        entry["reference_high"] = draw(
            st.one_of(st.floats(0.1, top, allow_nan=False), st.sampled_from([1.0, 40.0, 129.0]))
        )
    if draw(st.booleans()):
        high = entry.get("reference_high")
        upper = top if high is None else high
        low = draw(st.floats(0, upper, allow_nan=False, exclude_max=high is not None))
        entry["reference_low"] = low
    return entry


def _instant(entry: dict[str, Any]) -> tuple[str, str]:
    """(test, collected_at) with ":00" seconds dropped: T08:15 and T08:15:00 are one instant."""
    collected = entry["collected_at"]
    if len(collected) == 19 and collected.endswith(":00"):
        collected = collected[:16]
    return entry["test"], collected


@st.composite
def therapy_documents(draw: st.DrawFn, birth: date, as_of: date) -> dict[str, Any]:
    start = _day(draw, max(birth, as_of - timedelta(days=4 * 365)), as_of + timedelta(days=60))
    end = None
    if draw(st.booleans()):
        end = (start + timedelta(days=draw(st.integers(0, 3 * 365)))).isoformat()
    return {"agent": draw(st.sampled_from(AGENTS)), "start": start.isoformat(), "end": end}


def _optional_date(draw: st.DrawFn, low: date, high: date) -> str | None:
    return draw(st.none() | st.just(None).map(lambda _: _day(draw, low, high).isoformat()))


def patient_document(draw: st.DrawFn, birth: date, sex: str) -> dict[str, Any]:
    """The patient part: pregnancy with or without weeks, menopause, weight (or none)."""
    patient: dict[str, Any] = {"birth_date": birth.isoformat(), "sex": sex}
    if sex == "female" and draw(st.booleans()):
        patient["pregnant"] = draw(st.booleans())
        if patient["pregnant"] and draw(st.booleans()):
            patient["gestational_weeks"] = draw(st.integers(1, 42))
    if sex == "female" and draw(st.booleans()):
        patient["postmenopausal"] = draw(st.none() | st.booleans())
    if draw(st.booleans()):
        patient["weight_kg"] = draw(st.floats(0.5, 250, allow_nan=False))
    return patient


def clinical_document(
    draw: st.DrawFn, birth: date, as_of: date, therapies: list[dict[str, Any]]
) -> dict[str, Any]:
    """Every clinical and myeloma field, drawn (shared with tests/test_stored_vs_document.py)."""
    recent = max(birth, as_of - timedelta(days=3 * 365))
    return {
        "diagnoses": draw(st.lists(st.sampled_from(DIAGNOSES), max_size=4, unique=True)),
        "cancer": draw(st.none() | st.sampled_from(CANCERS)),
        "cancer_treated": draw(st.booleans()),
        "bone_pain": draw(st.booleans()),
        "osteolytic_pain": draw(st.booleans()),
        "bone_scan": draw(st.sampled_from(BONE_SCANS)),
        "fracture": draw(st.sampled_from(FRACTURES)),
        "dental_exam_done": draw(st.booleans()),
        "crcl_baseline": draw(st.none() | st.floats(0, 200, allow_nan=False)),
        "creatinine_baseline": draw(st.none() | st.floats(0.05, 15, allow_nan=False)),
        "fracture_date": _optional_date(draw, birth, as_of),
        "myeloma": {
            "requires_therapy": draw(st.booleans()),
            "bone_disease": draw(st.booleans()),
            "active_bone_disease": draw(st.booleans()),
            "response": draw(st.none() | st.sampled_from(RESPONSES)),
            "treatment_start": _optional_date(draw, recent, as_of),
            "bortezomib_start": _optional_date(draw, recent, as_of),
            "whole_body_imaging_done": draw(st.booleans()),
        },
        "therapies": therapies,
    }


@st.composite
def case_documents(draw: st.DrawFn) -> dict[str, Any]:
    """Valid case documents, from a newborn to a centenarian, with any mix of labs and context."""
    as_of = _day(draw, date(2020, 1, 1), date(2030, 12, 31))
    birth = _day(draw, max(FIRST_DAY, as_of - timedelta(days=100 * 365)), as_of)
    sex = draw(st.sampled_from(["female", "male"]))
    labs = draw(
        st.lists(
            lab_documents(birth, as_of),
            max_size=12,
            unique_by=_instant,
        )
    )
    patient = patient_document(draw, birth, sex)
    clinical = clinical_document(
        draw, birth, as_of, draw(st.lists(therapy_documents(birth, as_of), max_size=3))
    )
    document: dict[str, Any] = {"as_of": as_of.isoformat(), "patient": patient, "labs": labs}
    if draw(st.booleans()):
        document["clinical"] = clinical
    return document


@PROPERTY_SETTINGS
@given(case_documents())
def test_any_valid_case_assesses_deterministically_in_priority_order(
    document: dict[str, Any],
) -> None:
    case = parse_case(document)
    result = assess(case, catalogue())
    rank = {priority: index for index, priority in enumerate(PRIORITIES)}
    ranks = [rank[item.priority] for item in result.recommendations]
    assert ranks == sorted(ranks)
    assert assess(case, catalogue()) == result
    assert render_result_json(assess(parse_case(document), catalogue())) == render_result_json(
        result
    )
    for item in result.recommendations:
        assert "{" not in item.rationale
    follow_up_keys = [(f.due, f.code) for f in result.follow_ups]
    assert follow_up_keys == sorted(follow_up_keys)


@PROPERTY_SETTINGS
@given(case_documents())
def test_any_valid_case_gets_revision_2_facts_within_their_vocabulary(
    document: dict[str, Any],
) -> None:
    case = parse_case(document)
    values = compute_facts(case, revision_2_facts_rule_set()).values
    assert values["alp_source"] in ALP_SOURCES
    assert values["crcl_method"] in ("measured", "cockcroft-gault", "unknown")
    assert values["context"] == [flag for flag in CONTEXT_FLAGS if values[flag]]
    assert not (values["alp_elevated"] and values["alp_normal"])
    assert not values["alp_elevated"] or values["alp_recent"]
    assert not values["alp_persistently_elevated"] or values["alp_elevated"]
    assert not values["hypercalcaemia_urgent"] or values["hypercalcaemia"]
    assert values["renal_function_unknown"] is (values["crcl_current"] is None)
    if values["child"]:
        assert values["crcl_method"] != "cockcroft-gault"
    if values["alp_uln"] is not None and values["alp_pregnancy_result"]:
        assert values["alp_uln"] >= 88  # pregnancy only ever raises the ULN
    assess(case, revision_2_facts_rule_set())


@PROPERTY_SETTINGS
@given(case_documents(), st.data())
def test_a_resent_result_that_agrees_is_ignored(document: dict[str, Any], data: Any) -> None:
    if not document["labs"]:
        return
    original = data.draw(st.sampled_from(document["labs"]))
    resent = dict(original)
    resent["value"] = original["value"] * data.draw(st.floats(0.995, 1.0))
    with_resend = {**document, "labs": [*document["labs"], resent]}
    assert parse_case(with_resend) == parse_case(document)


@PROPERTY_SETTINGS
@given(case_documents())
def test_case_to_document_round_trips(document: dict[str, Any]) -> None:
    case = parse_case(document)
    canonical = case_to_document(case)
    assert parse_case(canonical) == case
    assert parse_case_json(json.dumps(canonical)) == case
    assert case_to_document(parse_case(canonical)) == canonical


# --- broken documents ------------------------------------------------------------------------

_WRONG_VALUES = ["12", True, None, [], {}, 1.5, -3, "2026-13-45", "not_a_code", float("nan")]


def _paths(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside the document."""
    paths = [prefix] if prefix else []
    if isinstance(document, dict):
        for key, value in document.items():
            paths += _paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            paths += _paths(value, (*prefix, index))
    return paths


def _set(document: Any, path: tuple[Any, ...], value: Any) -> None:
    for part in path[:-1]:
        document = document[part]
    document[path[-1]] = value


@st.composite
def broken_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A valid document with one thing broken: an unknown key, a wrong type, a bad unit, …"""
    document = copy.deepcopy(draw(case_documents()))
    kind = draw(st.sampled_from(["unknown_key", "wrong_value", "bad_unit", "future", "missing"]))
    if kind == "unknown_key":
        containers = [p for p in _paths(document) if isinstance(_get(document, p), dict)]
        target = draw(st.sampled_from([(), *containers]))
        _get(document, target)["surprise_key"] = 1
    elif kind == "bad_unit" and document["labs"]:
        index = draw(st.integers(0, len(document["labs"]) - 1))
        document["labs"][index]["unit"] = draw(st.sampled_from(["mmol/l", "IU", "", "U/l"]))
    elif kind == "future" and document["labs"]:
        index = draw(st.integers(0, len(document["labs"]) - 1))
        as_of = date.fromisoformat(document["as_of"])
        document["labs"][index]["collected_at"] = (as_of + timedelta(days=1)).isoformat()
    elif kind == "missing":
        document["patient"].pop("birth_date")
    else:
        leaves = [p for p in _paths(document) if not isinstance(_get(document, p), dict | list)]
        path = draw(st.sampled_from(leaves))
        current = _get(document, path)
        wrong = draw(st.sampled_from([v for v in _WRONG_VALUES if _differs(v, current)]))
        _set(document, path, wrong)
    return document


def _get(document: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        document = document[part]
    return document


def _differs(candidate: Any, current: Any) -> bool:
    return type(candidate) is not type(current) or candidate != current


@PROPERTY_SETTINGS
@given(broken_documents())
def test_a_broken_document_raises_case_invalid_with_field_paths(document: dict[str, Any]) -> None:
    try:
        parse_case(document)
    except CaseInvalid as invalid:
        assert invalid.errors
        for error in invalid.errors:
            assert error.field and error.message
    else:
        # Some "wrong" values are still valid (a number for a number, a date string for a date,
        # null where null is allowed): then the document must at least assess.
        assess(parse_case(document), catalogue())


@PROPERTY_SETTINGS
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_arbitrary_json_never_raises_anything_but_case_invalid(data: Any) -> None:
    try:
        parse_case(data)
    except CaseInvalid as invalid:
        assert all(error.field for error in invalid.errors)


@PROPERTY_SETTINGS
@given(
    st.dates(date(1920, 1, 1), date(2026, 1, 1)),
    st.sampled_from(["male", "female"]),
    st.lists(st.integers(0, 30 * 365), min_size=1, max_size=12),
)
def test_each_alp_result_gets_the_built_in_band_of_its_own_date(
    birth: date, sex: str, ages_in_days: list[int]
) -> None:
    """alp_series looks a band up once per age, not per date: the same bands as looking each
    result's date up on its own, from the first days of life (bands in days) to adulthood."""
    bands = catalogue().uln_bands
    patient = PatientInfo(birth_date=birth, sex=sex)
    labs = [
        Lab.create("alp", 100, "U/L", birth + timedelta(days=days))
        for days in sorted(set(ages_in_days))
    ]
    for lab, point in zip(labs, alp_series(labs, patient, bands, 16.9), strict=True):
        band = select_uln_band(bands, "alp", sex, birth, lab.collected_on)
        assert band is not None
        assert (point.uln, point.uln_source) == (
            band_uln_canonical(band),
            f"built-in: {band_label(band)}",
        )
