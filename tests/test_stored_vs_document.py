"""A case assessed from its document and after being stored as a patient gives the same result
document (spec §7: the form and the JSON never disagree), over generated cases: every test and
unit, same-day and same-time results (a bare date beside T00:00), courses sharing a start date,
planned courses, every clinical and myeloma field, pregnancy."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pathways import engine
from pathways.assessment import assess_document, assess_patient
from pathways.cases import patient_to_document
from pathways.engine import AGENTS, UNITS
from pathways.engine.facts.spec import collection_order
from tests.engine.test_properties import (
    _day,
    _instant,
    clinical_document,
    patient_document,
    with_limits,
)
from tests.factories import stored_patient

pytestmark = pytest.mark.django_db

_MRN = itertools.count(1)

TIMES = [None, "T00:00", "T00:00:00", "T08:15", "T08:15:00", "T10:30", "T23:59:59"]


@st.composite
def _lab(draw: st.DrawFn, days: list[date]) -> dict[str, Any]:
    test = draw(st.sampled_from(sorted(UNITS)))
    unit = draw(st.sampled_from(UNITS[test]))
    day = draw(st.sampled_from(days))
    suffix = draw(st.sampled_from(TIMES))
    collected_at = day.isoformat() + (suffix or "")
    value = draw(
        st.one_of(
            st.integers(0, 1500),
            st.floats(0, 1500, allow_nan=False, allow_infinity=False),
            st.sampled_from([0.5, 1.0, 1.4, 1.9, 12.0, 20.0, 30.0, 129.0, 130.0, 1001.0]),
        )
    )
    entry: dict[str, Any] = {
        "test": test,
        "value": value,
        "unit": unit,
        "collected_at": collected_at,
    }
    return with_limits(draw, entry, top=1500.0)


@st.composite
def case_documents(draw: st.DrawFn) -> dict[str, Any]:
    as_of = _day(draw, date(2024, 1, 1), date(2027, 12, 31))
    age_days = draw(
        st.one_of(st.integers(0, 5 * 365), st.integers(5 * 365, 100 * 365), st.just(40 * 365))
    )
    birth = as_of - timedelta(days=age_days)
    sex = draw(st.sampled_from(["female", "male"]))
    low = max(birth, as_of - timedelta(days=2 * 365))
    # A few days only, so that labs share days (ties) often.
    days = sorted(
        set(
            draw(
                st.lists(
                    st.builds(
                        lambda n: low + timedelta(days=n), st.integers(0, (as_of - low).days)
                    ),
                    min_size=1,
                    max_size=4,
                )
            )
        )
    )
    if as_of - timedelta(days=90) >= birth:
        days.append(as_of - timedelta(days=90))  # the edge of the recent window
    raw_labs = draw(st.lists(_lab(days), max_size=14, unique_by=_instant))
    labs = list(raw_labs)
    # resends of the same instant with an agreeing value (kept once)
    resend = draw(st.booleans())
    if raw_labs and resend:
        again: dict[str, Any] = dict(draw(st.sampled_from(raw_labs)))
        labs.insert(draw(st.integers(0, len(labs))), again)
    patient = patient_document(draw, birth, sex)
    document: dict[str, Any] = {"as_of": as_of.isoformat(), "patient": patient, "labs": labs}
    if draw(st.integers(0, 4)) > 0:
        starts = draw(
            st.lists(
                st.builds(lambda n: as_of + timedelta(days=n), st.integers(-3 * 365, 60)),
                min_size=1,
                max_size=3,
            )
        )
        therapies = []
        for _ in range(draw(st.integers(0, 4))):
            start = draw(st.sampled_from(starts))
            end_kind = draw(st.sampled_from(["none", "same", "later", "as_of"]))
            end = {
                "none": None,
                "same": start,
                "later": start + timedelta(days=draw(st.integers(1, 900))),
                "as_of": max(start, as_of),
            }[end_kind]
            therapies.append(
                {
                    "agent": draw(st.sampled_from(AGENTS)),
                    "start": start.isoformat(),
                    "end": None if end is None else end.isoformat(),
                }
            )
        clinical = clinical_document(draw, birth, as_of, therapies)
        document["clinical"] = clinical
    return document


def _stored(clinic: Any, user: Any, document: dict[str, Any]) -> Any:
    return stored_patient(clinic, user, document, mrn=f"D-{next(_MRN)}")


def _normalised(case: engine.Case) -> engine.Case:
    """Labs in collection order (stable), therapies as a multiset: what storage may reorder."""

    labs = tuple(sorted(case.labs, key=lambda lab: (*collection_order(lab), lab.test)))
    therapies = tuple(
        sorted(case.clinical.therapies, key=lambda t: (t.start, t.agent, t.end or date.max))
    )
    return replace(case, labs=labs, clinical=replace(case.clinical, therapies=therapies))


def compare(clinic: Any, user: Any, document: dict[str, Any]) -> None:
    case = engine.parse_case(document)
    from_document = engine.result_to_document(assess_document(document))
    with transaction.atomic():
        patient = _stored(clinic, user, document)
        from_patient = engine.result_to_document(assess_patient(patient, as_of=case.as_of))
        exported = patient_to_document(patient, as_of=case.as_of)
        transaction.set_rollback(True)
    assert json.dumps(from_patient, sort_keys=True, indent=1) == json.dumps(
        from_document, sort_keys=True, indent=1
    )
    assert _normalised(engine.parse_case(exported)) == _normalised(case)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(document=case_documents())
def test_a_stored_patient_is_assessed_as_its_document(
    north_clinic: Any, alice: Any, document: dict[str, Any]
) -> None:
    compare(north_clinic, alice, document)
