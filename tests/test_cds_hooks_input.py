"""CDS Hooks requests a trusted client could send that alpcare mishandled: a server error,
data of the wrong shape read as no data, two patients resolved by list order, and the EHR's
access token followed to another host (found by a defect hunt; each test failed before)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import Client

from pathways.cds_hooks import ORDER_SIGN, PATIENT_VIEW
from pathways.cds_models import CdsClient, CdsFeedback
from tests import test_cds_hooks
from tests.cds_support import (
    EhrKeys,
    FhirStub,
    draft_order,
    fhir_stub_server,
    myeloma_with_rising_creatinine,
    serving,
)
from tests.test_cds_hooks import SERVER, _call, _feedback, _order_sign, _patient_view, _url

pytestmark = pytest.mark.django_db
ehr_keys, north_ehr = test_cds_hooks.ehr_keys, test_cds_hooks.north_ehr  # the fixtures


def _cards(response: Any) -> list[tuple[str, str]]:
    assert response.status_code == 200, response.content
    return [(card["summary"], card["detail"]) for card in response.json()["cards"]]


@contextmanager
def _redirecting_to(location: str) -> Iterator[str]:
    """A FHIR server that answers every GET with a redirect to ``location``."""

    class Redirecting(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)) as base:
        yield base


def test_a_redirect_from_the_fhir_server_is_not_followed_with_the_access_token(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    """urllib followed a 302 to any host and sent the Authorization header along."""
    elsewhere = FhirStub({})
    with fhir_stub_server(elsewhere) as other_base:
        other = other_base.replace("127.0.0.1", "localhost")  # another host name and port
        with _redirecting_to(f"{other}/Observation?stolen=1") as fhir_server:
            north_ehr.fhir_base_url = fhir_server
            north_ehr.save()
            prefetch = myeloma_with_rising_creatinine()
            del prefetch["observations"]  # fetched from the FHIR server
            body = _patient_view(
                prefetch,
                fhirServer=fhir_server,
                fhirAuthorization={"access_token": "ehr-token-123", "token_type": "Bearer"},
            )
            response = _call(client, ehr_keys, PATIENT_VIEW, body)
    assert response.status_code == 412
    assert "HTTP Error 302" in response.json()["error"]
    assert (elsewhere.paths, elsewhere.authorizations) == ([], [])


@pytest.mark.parametrize(
    ("shape", "error"),
    [
        ("a list", "prefetch.observations: not a FHIR resource (an object with a resourceType)"),
        ("entry an object", "prefetch.observations.entry: not a list of entries"),
        ("entry without a resource", "prefetch.observations.entry[0]: not an entry with a FHIR "
         "resource"),
    ],
)  # fmt: skip
def test_a_prefetch_of_the_wrong_shape_is_refused_not_read_as_no_data(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient, shape: str, error: str
) -> None:
    """Skipped in silence, a rising creatinine (1.0 -> 1.6 mg/dL) gave "measure creatinine
    first" instead of the warning to withhold zoledronic acid."""
    prefetch = myeloma_with_rising_creatinine(creatinine_now=1.6)
    entries = prefetch["observations"]["entry"]
    if shape == "a list":
        prefetch["observations"] = [entry["resource"] for entry in entries]
    elif shape == "entry an object":
        prefetch["observations"]["entry"] = entries[0]
    else:
        entries[0]["resource"] = "Observation/1"
    response = _call(client, ehr_keys, PATIENT_VIEW, _patient_view(prefetch))
    assert response.status_code == 400
    assert response.json() == {"error": error}


def test_two_patient_resources_that_disagree_are_named_not_chosen_by_order(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    """The last one listed won: its sex set the reference interval."""
    answers = []
    for last in ("other", "hook's"):
        prefetch = myeloma_with_rising_creatinine()
        other = {**prefetch["patient"], "gender": "female", "birthDate": "1990-01-01"}
        first, second = (
            (prefetch["patient"], other) if last == "other" else (other, prefetch["patient"])
        )
        prefetch["patient"] = first
        prefetch["observations"]["entry"].append({"resource": second})
        answers.append(_cards(_call(client, ehr_keys, PATIENT_VIEW, _patient_view(prefetch))))
    assert answers[0] == answers[1]
    (summary, detail), *_ = answers[0]
    assert summary == "alpcare could not assess this patient"
    assert "`Patient`: 2 Patient resources that disagree (birth date, sex or MRNs): left out" in (
        detail
    )


def test_the_same_patient_listed_twice_is_one_patient(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    prefetch = myeloma_with_rising_creatinine()
    once = _cards(_call(client, ehr_keys, PATIENT_VIEW, _patient_view(prefetch)))
    prefetch["observations"]["entry"].append({"resource": dict(prefetch["patient"])})
    assert _cards(_call(client, ehr_keys, PATIENT_VIEW, _patient_view(prefetch))) == once


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("observation code", ["6768-6"]),  # unhashable: TypeError
        ("observation date", "0001-01-01T00:00:00+01:00"),  # before year 1 in UTC
        ("course end", "9999-12-31T23:00:00-05:00"),  # after 9999 in UTC
    ],
)
def test_odd_values_in_the_record_are_not_a_server_error(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient, where: str, value: Any
) -> None:
    prefetch = myeloma_with_rising_creatinine()
    observation = prefetch["observations"]["entry"][3]["resource"]  # the ALP
    if where == "observation code":
        observation["code"]["coding"][0]["code"] = value
    elif where == "observation date":
        observation["effectiveDateTime"] = value
    else:
        statement = prefetch["medicationStatements"]["entry"][0]["resource"]
        statement["effectivePeriod"]["end"] = value
    cards = _cards(_call(client, ehr_keys, PATIENT_VIEW, _patient_view(prefetch)))
    text = " ".join(summary + detail for summary, detail in cards)
    if where == "course end":
        assert '`clinical.therapies[0].end`: "9999-12-31" is outside 1900-01-01 to 2200-12-31' in (
            text
        )
    else:  # the ALP is not read: no ALP in the advice
        assert "ALP 150 U/L" not in text


def test_a_draft_dose_past_any_number_is_refused(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    prefetch = myeloma_with_rising_creatinine(on_zoledronic_acid=False)
    body = _order_sign(prefetch, draft_order("M05BA08", 10**400))
    response = _call(client, ehr_keys, ORDER_SIGN, body)
    assert response.status_code == 400
    assert response.json() == {
        "error": "context.draftOrders MedicationRequest.dosageInstruction.0.doseAndRate.0"
        ".doseQuantity.value: a number past any value"
    }


def test_a_jwt_expiring_past_any_date_is_refused_as_too_far_ahead(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient
) -> None:
    token = ehr_keys.token(SERVER + _url(PATIENT_VIEW), exp=10**20)
    body = _patient_view(myeloma_with_rising_creatinine())
    response = _call(client, ehr_keys, PATIENT_VIEW, body, token=token)
    assert response.status_code == 401
    assert response.json() == {"error": "exp is more than 1:00:00 ahead"}


@pytest.mark.parametrize("feedback", [False, True])
def test_a_body_nested_too_deeply_is_refused(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient, feedback: bool
) -> None:
    path = _url(PATIENT_VIEW) + ("/feedback" if feedback else "")
    response = client.post(
        path,
        "[" * 100_000 + "]" * 100_000,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {ehr_keys.token(SERVER + _url(PATIENT_VIEW))}",
    )
    assert response.status_code == 400
    assert response.json() == {"error": "(body): invalid JSON: nested too deeply"}


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00"])
def test_a_feedback_time_outside_the_calendar_in_utc_is_refused(
    client: Client, ehr_keys: EhrKeys, north_ehr: CdsClient, stamp: str
) -> None:
    prefetch = myeloma_with_rising_creatinine()
    cards = _call(client, ehr_keys, PATIENT_VIEW, _patient_view(prefetch)).json()["cards"]
    body = _feedback(cards[0]["uuid"], "accepted", outcomeTimestamp=stamp)
    response = _call(client, ehr_keys, PATIENT_VIEW, body, path=_url(PATIENT_VIEW) + "/feedback")
    assert response.status_code == 400
    assert response.json() == {"error": "feedback[0].outcomeTimestamp: outside the calendar in UTC"}
    assert not CdsFeedback.objects.exists()
