"""Every date in a case lies within 1900-01-01..2200-12-31, and no date arithmetic overflows."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pathways.engine import (
    CaseInvalid,
    RuleEvaluationError,
    assess,
    parse_case,
    parse_case_json,
    validate_rule_set,
)
from pathways.engine.dates import EARLIEST_DATE, LATEST_DATE, add_months, whole_months_between
from tests.engine.clinical_cases import catalogue
from tests.factories import myeloma_on_zoledronic_acid_14_months_document

# Each date field of a case document and how to reach it.
DATE_FIELDS: dict[str, tuple[str | int, ...]] = {
    "as_of": ("as_of",),
    "patient.birth_date": ("patient", "birth_date"),
    "labs[0].collected_at": ("labs", 0, "collected_at"),
    "clinical.myeloma.treatment_start": ("clinical", "myeloma", "treatment_start"),
    "clinical.myeloma.bortezomib_start": ("clinical", "myeloma", "bortezomib_start"),
    "clinical.therapies[0].start": ("clinical", "therapies", 0, "start"),
    "clinical.therapies[0].end": ("clinical", "therapies", 0, "end"),
}


def _with(document: dict[str, Any], where: tuple[str | int, ...], value: str) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    target: Any = changed
    for step in where[:-1]:
        target = target[step]
    target[where[-1]] = value
    return changed


def _errors(document: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(CaseInvalid) as invalid:
        parse_case(document)
    return {error.field: error.message for error in invalid.value.errors}


def test_as_of_in_year_9999_is_a_field_error_not_an_overflow() -> None:
    document = myeloma_on_zoledronic_acid_14_months_document()
    document["as_of"] = "9999-12-31"
    errors = _errors(document)
    assert errors == {"as_of": '"9999-12-31" is outside 1900-01-01 to 2200-12-31'}


@pytest.mark.parametrize("field", sorted(DATE_FIELDS))
@pytest.mark.parametrize("value", ["1899-12-31", "2201-01-01", "0001-01-01", "9999-12-31"])
def test_every_date_field_refuses_a_date_outside_the_range(field: str, value: str) -> None:
    document = _with(myeloma_on_zoledronic_acid_14_months_document(), DATE_FIELDS[field], value)
    errors = _errors(document)
    assert errors[field] == f'"{value}" is outside 1900-01-01 to 2200-12-31'


def test_a_lab_time_does_not_hide_an_out_of_range_day() -> None:
    document = _with(
        myeloma_on_zoledronic_acid_14_months_document(),
        ("labs", 0, "collected_at"),
        "9999-12-31T23:59",
    )
    assert _errors(document)["labs[0].collected_at"].endswith("outside 1900-01-01 to 2200-12-31")


def test_a_malformed_date_keeps_its_own_message() -> None:
    document = _with(myeloma_on_zoledronic_acid_14_months_document(), ("as_of",), "2025-13-40")
    assert _errors(document)["as_of"] == '"2025-13-40" is not a date (YYYY-MM-DD)'


def test_the_range_ends_are_accepted() -> None:
    document = myeloma_on_zoledronic_acid_14_months_document()
    document["as_of"] = LATEST_DATE.isoformat()
    document["patient"]["birth_date"] = EARLIEST_DATE.isoformat()
    result = assess(parse_case(document), catalogue())
    assert result.as_of == LATEST_DATE


def test_the_json_path_refuses_year_9999_too() -> None:
    text = '{"as_of": "9999-12-31", "patient": {"birth_date": "1950-01-01", "sex": "male"}}'
    with pytest.raises(CaseInvalid) as invalid:
        parse_case_json(text)
    assert [error.field for error in invalid.value.errors] == ["as_of"]


def _day(draw: st.DrawFn, low: date, high: date) -> date:
    return low + timedelta(days=draw(st.integers(0, (high - low).days)))


@st.composite
def edge_of_range_documents(draw: st.DrawFn) -> dict[str, Any]:
    """The myeloma case moved anywhere in the range, often to its very ends."""
    as_of = draw(
        st.sampled_from([LATEST_DATE, EARLIEST_DATE + timedelta(days=400)])
        | st.dates(EARLIEST_DATE, LATEST_DATE)
    )
    birth = _day(draw, EARLIEST_DATE, as_of)
    earliest_event = max(birth, as_of - timedelta(days=3 * 365))
    document = myeloma_on_zoledronic_acid_14_months_document()
    document["as_of"] = as_of.isoformat()
    document["patient"]["birth_date"] = birth.isoformat()
    days = sorted({_day(draw, earliest_event, as_of) for _ in range(len(document["labs"]))})
    document["labs"] = [
        {**lab, "collected_at": day.isoformat()}
        for lab, day in zip(document["labs"], days, strict=False)
    ]
    start = _day(draw, earliest_event, as_of).isoformat()
    document["clinical"]["myeloma"]["treatment_start"] = start
    document["clinical"]["myeloma"]["bortezomib_start"] = start
    document["clinical"]["therapies"][0]["start"] = start
    return document


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edge_of_range_documents())
def test_no_case_within_the_range_overflows_the_engine(document: dict[str, Any]) -> None:
    result = assess(parse_case(document), catalogue())
    assert all(follow_up.due.year < 9999 for follow_up in result.follow_ups)


def test_month_arithmetic_spans_the_whole_range() -> None:
    assert add_months(LATEST_DATE, 12 * 100) == date(2300, 12, 31)
    assert whole_months_between(EARLIEST_DATE, LATEST_DATE) == 301 * 12 - 1


def test_publishing_refuses_a_follow_up_offset_that_could_leave_the_calendar() -> None:
    rule_set = catalogue()
    follow_up = rule_set.follow_ups[0]
    too_far = replace(follow_up, offset=100_000, offset_unit="months")
    errors = validate_rule_set(replace(rule_set, follow_ups=(too_far, *rule_set.follow_ups[1:])))
    assert f"follow-up {follow_up.code}: offset: must not exceed 1200 months" in [
        str(error) for error in errors
    ]


def test_an_unvalidated_draft_with_a_huge_offset_is_a_rule_error_not_an_overflow() -> None:
    rule_set = catalogue()
    huge = tuple(replace(f, offset=10**9, offset_unit="days") for f in rule_set.follow_ups)
    case = parse_case(myeloma_on_zoledronic_acid_14_months_document())
    with pytest.raises(RuleEvaluationError, match="outside the calendar"):
        assess(case, replace(rule_set, follow_ups=huge), use_cache=False)
