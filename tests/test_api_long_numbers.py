"""Very long JSON numbers (valid JSON: RFC 8259 sets no limit on digits) get an error naming
their field on the API, as any out-of-range number does; they were read as an invalid
document ("(document)", quoting Python's integer-conversion limit) or as "must be a number"."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from pathways.models import ApiToken, Patient
from tests import fhir_bundles

pytestmark = pytest.mark.django_db

HUGE = "1" + "0" * 5000  # a valid JSON number (RFC 8259 sets no limit on its digits)
LARGE = "1" + "0" * 400  # a valid JSON integer, too large for a float


def _alp_valued(number: str) -> str:
    """A case whose ALP has ``number`` (JSON text) as its value."""
    lab = '{"test":"alp","value":' + number + ',"unit":"U/L","collected_at":"2026-11-01"}'
    return _case(rest=',"labs":[' + lab + "]")


def _case(patient_extra: str = "", rest: str = "") -> str:
    return (
        '{"as_of":"2026-11-22","patient":{"birth_date":"1950-03-02","sex":"female"'
        + patient_extra
        + "}"
        + rest
        + "}"
    )


def _assess(client: Client, alice: User, body: str) -> Any:
    key = ApiToken.issue(user=alice, name="k", scopes=["assess"])[1]
    return client.post(
        "/api/v1/assess", body, content_type="application/json", HTTP_AUTHORIZATION=f"Token {key}"
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_case(',"weight_kg":' + HUGE), "patient.weight_kg"),
        (_alp_valued(HUGE), "labs[0].value"),
        (_case(',"pregnant":true,"gestational_weeks":' + HUGE), "patient.gestational_weeks"),
    ],
    ids=["weight_kg", "lab_value", "gestational_weeks"],
)
def test_a_number_with_very_many_digits_is_an_error_naming_its_field(
    client: Client, alice: User, body: str, field: str
) -> None:
    """Rule: "Bad input always gets a clear error naming the field"; spec §1: "A bad document
    gets a clear error that names the field path". The body is valid JSON with one number out
    of range; the answer blamed the whole "(document)" as "invalid JSON" and passed on Python's
    internal advice ("use sys.set_int_max_str_digits()"). A 30-digit weight gets
    `patient.weight_kg: must be below 1,000`; a 5000-digit one must name the field too."""
    response = _assess(client, alice, body)
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert [error["field"] for error in errors] == [field], errors
    assert "sys.set_int_max_str_digits" not in response.content.decode()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_case(',"weight_kg":' + LARGE), "patient.weight_kg"),
        (_alp_valued(LARGE), "labs[0].value"),
        (_case(rest=',"clinical":{"crcl_baseline":' + LARGE + "}"), "clinical.crcl_baseline"),
    ],
    ids=["weight_kg", "lab_value", "crcl_baseline"],
)
def test_a_too_large_integer_is_not_called_not_a_number(
    client: Client, alice: User, body: str, field: str
) -> None:
    """Rule: a *clear* error naming the field. 10**30 as weight_kg is answered "must be below
    1,000" (or "must be a finite number" for 1e400); 10**400 - the same mistake, a number too
    large - was answered "must be a number", which is false for a JSON number and tells the
    sender to fix the wrong thing (the type rather than the size)."""
    response = _assess(client, alice, body)
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["field"] == field
    assert error["message"] != "must be a number", error


def test_a_fhir_bundle_with_a_very_long_number_names_where_it_is(
    client: Client, alice: User, north_clinic: Any
) -> None:
    """Rule: bad input gets a clear error naming the field (README: the 400 OperationOutcome
    names "the FHIRPath of each problem"). One Observation value of 5000 digits is valid JSON;
    the answer said the whole Bundle was "not JSON" and quoted Python's internals."""
    key = ApiToken.issue(user=alice, name="w", scopes=["write"])[1]
    bundle = fhir_bundles.paget_bundle(mrn="F-HUGE")
    text = json.dumps(bundle).replace('"value": 412', '"value": ' + HUGE, 1)
    assert HUGE in text
    response = client.post(
        "/api/v1/fhir",
        text,
        content_type="application/fhir+json",
        HTTP_AUTHORIZATION=f"Token {key}",
    )
    assert response.status_code == 400
    body = response.content.decode()
    assert not Patient.objects.filter(mrn="F-HUGE").exists()
    assert "sys.set_int_max_str_digits" not in body
    assert "not JSON" not in body, body[:300]
