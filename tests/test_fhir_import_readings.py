"""FHIR import readings found wrong by an audit (pathways/fhir.py, interop/fhir_import.py):
resent and amended results in one Bundle, relapsed conditions, stopped courses, and the
FHIRPath an error names. Each test failed on the code before its fix."""

from __future__ import annotations

import json
from datetime import UTC, date, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from pathways import fhir
from pathways.interop.fhir_import import read_bundle
from pathways.models import ApiToken, Clinic, Patient
from tests import fhir_bundles as fb

WHEN = "2026-10-01T08:15:00Z"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"


def _today() -> date:
    return timezone.localdate()


def _read(data: dict[str, Any]) -> Any:
    return read_bundle(data, today=_today(), tz=UTC)


def _alp(value: float = 412, unit: str = "U/L", **kw: Any) -> dict[str, Any]:
    return fb.lab("6768-6", value, unit, WHEN, **kw)


@pytest.fixture
def write_key(alice: User) -> str:
    return ApiToken.issue(user=alice, name="ehr", scopes=["write", "read"])[1]


def _post(client: Any, key: str, data: Any) -> Any:
    return client.post("/api/v1/fhir", json.dumps(data), content_type="application/fhir+json",
                       HTTP_AUTHORIZATION=f"Token {key}")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Duplicates inside one Bundle (spec/pathways.md §1).


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(_alp(high=129), _alp(), id="same-value-one-with-referenceRange"),
        pytest.param(_alp(412, "U/L"), _alp(6.87, "ukat/L"), id="same-value-other-unit"),
        pytest.param(_alp(412), _alp(413), id="within-0.5-percent-same-unit"),
    ],
)
def test_a_resent_result_in_the_bundle_is_one_result_not_an_error(
    first: dict[str, Any], second: dict[str, Any]
) -> None:
    """spec/pathways.md §1: "Two labs of the same test at the same collected_at ... are one
    result when their values agree after conversion (within 0.5 % of the larger): the second
    is ignored, as a lab feed resending a result must not fail a case."  412 U/L and
    6.87 ukat/L (412.2 U/L), 412 and 413 U/L (0.24 %), and the same 412 U/L sent once with
    the lab's range and once without, all agree.  The import refuses the whole Bundle
    instead ("a second alp result ... with another value"), because fhir_import._observation
    compares the two LabEntry documents for exact equality (limits included)."""
    content = _read(fb.bundle(fb.patient(), first, second))
    assert [(lab.test, lab.collected_at) for lab in content.labs] == [("alp", "2026-10-01T08:15")]


def test_an_amended_result_in_the_same_bundle_replaces_the_final_one() -> None:
    """FHIR R4 ObservationStatus `amended`: "Subsequent to being Final, the Observation has
    been modified"; CODES.md ("Readings of the spec"): "Another value is a conflict unless the
    Observation is `amended` or `corrected`", and the CDS Hooks reading of the same resources
    (fhir_case._observation) lets "a correction win over the result it corrects".  An EHR
    Bundle holding both the original final 412 and its amendment 415 must import 415; the
    import refuses it as "a second alp result ... with another value" (the in-Bundle twin check
    in fhir_import._observation ignores `amends`)."""
    content = _read(fb.bundle(fb.patient(), _alp(412), _alp(415, status="amended")))
    assert [(lab.value, lab.amends) for lab in content.labs] == [(415, True)]


@pytest.mark.django_db
def test_a_resent_value_within_half_a_percent_of_the_stored_one_is_not_a_conflict(
    alice: User, north_clinic: Clinic
) -> None:
    """spec/pathways.md §1 (as above): same test, same collected_at, values within 0.5 % are
    one result and the second is ignored.  fhir._merge applies engine.values_agree only when
    the units differ, so a resent 412.5 U/L against a stored 412 U/L (0.12 %) refuses the
    whole Bundle with a `conflict` asking for an amendment."""
    fhir.import_bundle(fb.bundle(fb.patient(), _alp(412)), clinic=north_clinic, user=alice,
                       path="/t")  # fmt: skip
    outcome = fhir.import_bundle(
        fb.bundle(fb.patient(), _alp(412.5)), clinic=north_clinic, user=alice, path="/t"
    )
    assert outcome.counts["results_unchanged"] == 1


# ---------------------------------------------------------------------------------------------
# Conditions.


@pytest.mark.parametrize("status", ["relapse", "recurrence"])
def test_a_relapsed_condition_is_active(status: str) -> None:
    """FHIR R4 CodeSystem condition-clinical is hierarchical: `recurrence` and `relapse` are
    children of `active` ("The subject is experiencing a re-occurence ... / a return of a
    condition, or signs and symptoms after a period of improvement or remission").
    interop.md: "Only `active` (FHIR clinicalStatus) conditions count" — a relapsed myeloma
    is an active myeloma.  The import drops it as "relapse: not stored (only active
    conditions count)" (fhir_import._condition tests `ACTIVE not in clinical` literally),
    so the patient is assessed on the bone pathway instead of the myeloma pathway."""
    content = _read(fb.bundle(fb.patient(), fb.condition("C90.00", status)))
    assert "multiple_myeloma" in content.diagnoses


# ---------------------------------------------------------------------------------------------
# Medications.


@pytest.mark.parametrize("status", ["stopped", "completed"])
def test_a_stopped_statement_without_an_end_is_not_stored_as_ongoing(
    status: str,
) -> None:
    """FHIR R4 MedicationStatement.status: `completed` = "The medication is no longer being
    taken", `stopped` = "Actions implied by the statement have been permanently halted".
    spec/pathways.md §1: therapies[].end "date or null (ongoing)", §2: a therapy with end
    null is *current*.  A stopped denosumab statement without effectivePeriod.end is stored
    with end null, i.e. as denosumab the patient is on today (and "denosumab stopped without
    follow-on" can never fire).  Correct: never stored as ongoing — refused naming
    effectivePeriod.end (or noted and not stored)."""
    data = fb.bundle(fb.patient(), fb.statement("M05BX04", "2026-01-10", status=status))
    content = _read(data)
    assert content.therapies == []
    assert [note.path for note in content.notes] == ["Bundle.entry[1].resource.effectivePeriod.end"]


@pytest.mark.django_db
def test_a_later_order_for_a_course_does_not_erase_its_stored_end(
    alice: User, north_clinic: Clinic
) -> None:
    """fhir._courses (same file) reads "an order has none [no end], a stopped statement has
    it": the same course given as a MedicationRequest and as a stopped MedicationStatement in
    ONE Bundle keeps the statement's end (tests/test_fhir_import.py checks it in any order).
    Sent in TWO imports (statement first, the EHR's order later), fhir._merge sets the stored
    end back to null because `current_course.get("end") != end`: the denosumab stopped on
    10 July becomes current again (spec §2), which silences the rebound warning.  Re-importing
    the order must leave the stored end as it is."""
    stopped = fb.statement("M05BX04", "2026-01-10", "2026-07-10", status="stopped")
    fhir.import_bundle(fb.bundle(fb.patient(), stopped), clinic=north_clinic, user=alice,
                       path="/t")  # fmt: skip
    fhir.import_bundle(fb.bundle(fb.patient(), fb.request("M05BX04", "2026-01-10")),
                       clinic=north_clinic, user=alice, path="/t")  # fmt: skip
    patient = Patient.objects.get(clinic=north_clinic, mrn="F100")
    assert [(t.agent, str(t.start), str(t.end)) for t in patient.therapies.all()] == [
        ("denosumab", "2026-01-10", "2026-07-10")
    ]


# ---------------------------------------------------------------------------------------------
# OperationOutcome paths for case-document errors (fhir._issue_for).


@pytest.mark.django_db
def test_a_bad_lab_limit_is_named_in_the_range_it_came_from(client: Any, write_key: str) -> None:
    """fhir_case.lab_range chooses, of several ranges, the one for everyone (here index 1);
    the case then refuses reference_low >= reference_high.  The OperationOutcome must name
    the range that was read (spec §1 "a clear error that names the field path"; the import's
    docstring: "Every problem is named by its FHIRPath"), i.e.
    Bundle.entry[1].resource.referenceRange[1].low.value.  fhir._LAB_DOCUMENT_PATHS hard-codes
    referenceRange[0], which is the other (female-only) range with valid limits."""
    observation = _alp(412)
    observation["referenceRange"] = [
        {"low": {"value": 35, "unit": "U/L"}, "high": {"value": 104, "unit": "U/L"},
         "appliesTo": [{"text": "female"}]},
        {"low": {"value": 200, "unit": "U/L"}, "high": {"value": 129, "unit": "U/L"}},
    ]  # fmt: skip
    response = _post(client, write_key, fb.bundle(fb.patient(), observation))
    assert response.status_code == 400, response.content
    expressions = [e for issue in response.json()["issue"] for e in issue["expression"]]
    assert expressions == ["Bundle.entry[1].resource.referenceRange[1].low.value"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("element", "value", "expected"),
    [
        ("effectiveInstant", "1940-01-01T08:00:00Z", "effectiveInstant"),
        ("effectivePeriod", {"start": "1940-01-01T08:00:00Z"}, "effectivePeriod.start"),
    ],
)
def test_a_bad_collection_time_is_named_by_the_element_the_bundle_used(
    client: Any, write_key: str, element: str, value: Any, expected: str
) -> None:
    """A result collected before the patient's birth (born 1950) is refused by the case
    ("labs[n].collected_at: before patient.birth_date").  The OperationOutcome must name the
    element that carried the time (spec §1 "names the field path"; fhir_import's own
    Reader.effective names .effectiveInstant / .effectivePeriod.start), but
    fhir._LAB_DOCUMENT_PATHS maps collected_at to ".effectiveDateTime", an element the
    resource does not have."""
    observation = _alp(412)
    del observation["effectiveDateTime"]
    observation[element] = value
    response = _post(client, write_key, fb.bundle(fb.patient(), observation))
    assert response.status_code == 400, response.content
    expressions = [e for issue in response.json()["issue"] for e in issue["expression"]]
    assert expressions == [f"Bundle.entry[1].resource.{expected}"]


def test_the_cds_hooks_reading_agrees_on_relapse_and_on_a_course_stopped_without_an_end() -> None:
    """The same resources arriving through CDS Hooks (fhir_case): a relapsed myeloma counts as
    active, and a stopped statement with no end is left out (it read as current)."""
    from pathways.interop.fhir_case import case_from_fhir

    resources = [
        {**fb.patient(), "id": "p1"},
        fb.condition("C90.00", "relapse"),
        fb.statement("M05BX04", "2026-01-10", status="stopped"),
    ]
    mapped = case_from_fhir(resources, today=_today())
    assert mapped.document["clinical"]["diagnoses"] == ["multiple_myeloma"]
    assert mapped.document["clinical"]["therapies"] == []
    assert any("effectivePeriod.end" in problem.path for problem in mapped.problems)


@pytest.mark.django_db
def test_an_exported_patient_imports_with_its_same_day_tie_in_the_same_order(
    alice: User, north_clinic: Clinic, south_clinic: Clinic
) -> None:
    """Spec §2: a bare date sorts as 00:00 and ties keep document order. $everything wrote
    results in the table's order (bare date first), so ALP 480 at T00:00 then ALP 90 undated on
    the same day came back with 480 as the latest ALP: another assessment of the same results."""
    from pathways import engine
    from pathways.cases import patient_to_case
    from pathways.rules import current_rule_set
    from tests.factories import stored_patient

    day = (_today() - timedelta(days=5)).isoformat()
    document = {
        "as_of": _today().isoformat(),
        "patient": {"birth_date": "1960-01-01", "sex": "female", "postmenopausal": True},
        "labs": [
            {"test": "alp", "value": 480, "unit": "U/L", "collected_at": f"{day}T00:00"},
            {"test": "alp", "value": 90, "unit": "U/L", "collected_at": day},
        ],
        "clinical": {},
    }
    patient = stored_patient(north_clinic, alice, document, mrn="TIE-1")
    bundle = fhir.export_everything(patient, base="https://alpcare.example")
    copy = fhir.import_bundle(bundle, clinic=south_clinic, user=alice, path="/t").patient
    rules = current_rule_set()
    original, copied = (engine.assess(patient_to_case(p), rules) for p in (patient, copy))
    assert original.findings.alp_latest == copied.findings.alp_latest == 90
    assert [r.code for r in copied.recommendations] == [r.code for r in original.recommendations]
