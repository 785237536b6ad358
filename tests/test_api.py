"""The API's contract: a valid OpenAPI document, and JSON for every error from every layer."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client, RequestFactory
from ninja.errors import HttpError
from openapi_spec_validator import validate

from pathways import api as api_module
from pathways.api import api
from pathways.models import ApiToken, LabResult, Patient, Rule
from tests import fhir_bundles
from tests.factories import paget_on_alendronate_document, stored_patient

pytestmark = pytest.mark.django_db

OPERATIONS = [
    ("post", "/api/v1/assess"),
    ("get", "/api/v1/patients/{pk}/case"),
    ("get", "/api/v1/patients/{pk}/assessment"),
]


def _key(user: Any, *scopes: str) -> str:
    return ApiToken.issue(user=user, name="k", scopes=list(scopes))[1]


@pytest.fixture
def key(alice: Any) -> str:
    return ApiToken.issue(user=alice, name="all", scopes=["assess", "read"])[1]


def _openapi_text(client: Client, alice: Any) -> str:
    client.force_login(alice)
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    client.logout()
    return response.content.decode()


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    duplicates = {key for key in keys if keys.count(key) > 1}
    assert not duplicates, f"duplicate keys {duplicates}"
    return dict(pairs)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


# --- the OpenAPI document ----------------------------------------------------------------------


def test_the_openapi_document_validates_without_duplicate_keys(client: Client, alice: Any) -> None:
    document = json.loads(_openapi_text(client, alice), object_pairs_hook=_no_duplicate_keys)
    validate(document)


def test_every_reference_in_the_openapi_document_resolves(client: Client, alice: Any) -> None:
    document = json.loads(_openapi_text(client, alice))
    refs = _refs(document)
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/"), ref
        assert isinstance(_resolve(document, ref), dict), ref


def test_every_operation_documents_its_errors_and_its_scope(client: Client, alice: Any) -> None:
    document = json.loads(_openapi_text(client, alice))
    scopes = {}
    for method, path in OPERATIONS:
        operation = document["paths"][path][method]
        documented = set(operation["responses"])
        assert {"200", "401", "403", "500"} <= documented, path
        if "{pk}" in path:
            assert {"404", "422"} <= documented, path
        else:
            assert "400" in documented
        for status, response in operation["responses"].items():
            assert "application/json" in response["content"], (path, status)
        [requirement] = operation["security"]
        scopes[path] = requirement["TokenAuth"]
    assert scopes == {
        "/api/v1/assess": ["assess"],
        "/api/v1/patients/{pk}/case": ["read"],
        "/api/v1/patients/{pk}/assessment": ["read"],
    }


def test_the_documented_date_fields_state_their_range(client: Client, alice: Any) -> None:
    document = json.loads(_openapi_text(client, alice))
    descriptions: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("format") == "date" or "T[0-9]{2}" in str(node.get("pattern", "")):
                descriptions.append(node.get("description", ""))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(document["components"]["schemas"])
    case_dates = [d for d in descriptions if d.startswith("YYYY-MM-DD")]
    assert len(case_dates) >= 7  # as_of, birth_date, collected_at, myeloma and therapy dates
    assert all(d.endswith("1900-01-01 to 2200-12-31") for d in case_dates)


def test_the_documented_example_case_is_accepted(client: Client, key: str) -> None:
    response = client.post(
        "/api/v1/assess",
        json.dumps(api_module.EXAMPLE_CASE),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {key}",
    )
    assert response.status_code == 200


def test_a_value_infinite_once_converted_is_refused_not_answered_as_infinity(
    client: Client, key: str
) -> None:
    """1e308 ukat/L is finite; in U/L it is not, and the result document said Infinity, which
    is not JSON."""
    case = json.loads(json.dumps(api_module.EXAMPLE_CASE))
    case["labs"][1].update(value=1e308, unit="ukat/L")
    response = client.post(
        "/api/v1/assess",
        json.dumps(case),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {key}",
    )
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "labs[1].value", "message": "must be below 1,000,000,000,000"}
    ]


def test_the_docs_page_loads_its_assets_from_this_server(client: Client, alice: Any) -> None:
    client.force_login(alice)
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    page = response.content.decode()
    assert "swagger-ui-bundle.js" in page and "https://" not in page
    policy = response["Content-Security-Policy"]
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


# --- errors are JSON -----------------------------------------------------------------------------


def _assert_json_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body: dict[str, Any] = response.json()
    assert body["errors"] and all({"field", "message"} <= set(e) for e in body["errors"])
    return body


def test_a_bad_case_is_a_400_naming_the_field(client: Client, key: str) -> None:
    document = paget_on_alendronate_document(as_of="9999-12-31")
    response = client.post(
        "/api/v1/assess",
        json.dumps(document),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {key}",
    )
    body = _assert_json_error(response, 400)
    assert body["errors"] == [
        {"field": "as_of", "message": '"9999-12-31" is outside 1900-01-01 to 2200-12-31'}
    ]


def test_no_token_is_a_json_401_naming_the_header(client: Client) -> None:
    body = _assert_json_error(
        client.post("/api/v1/assess", "{}", content_type="application/json"), 401
    )
    assert body["errors"][0]["field"] == "Authorization"
    _assert_json_error(client.get("/api/v1/patients/1/case"), 401)


def test_an_unknown_patient_is_a_json_404(client: Client, key: str) -> None:
    response = client.get("/api/v1/patients/999999/case", HTTP_AUTHORIZATION=f"Token {key}")
    _assert_json_error(response, 404)


@pytest.mark.parametrize("pk", ["abc", "0", str(2**63), str(2**70)])
def test_a_patient_id_that_is_not_a_64_bit_id_is_a_json_422(
    client: Client, key: str, pk: str
) -> None:
    response = client.get(f"/api/v1/patients/{pk}/assessment", HTTP_AUTHORIZATION=f"Token {key}")
    body = _assert_json_error(response, 422)
    assert body["errors"][0]["field"] == "pk"


def test_an_unknown_api_url_is_a_json_404(client: Client, key: str) -> None:
    _assert_json_error(client.get("/api/v1/nothing-here", HTTP_AUTHORIZATION=f"Token {key}"), 404)
    _assert_json_error(client.get("/api/v1/assess/", HTTP_AUTHORIZATION=f"Token {key}"), 404)


def test_a_wrong_method_is_a_json_405_with_allow(client: Client, key: str) -> None:
    response = client.get("/api/v1/assess", HTTP_AUTHORIZATION=f"Token {key}")
    _assert_json_error(response, 405)
    assert response["Allow"] == "POST"
    # Made JSON without losing the headers the security middleware added.
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "no-store" in response["Cache-Control"]


def test_a_body_over_the_limit_is_a_json_413(client: Client, key: str, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = client.post(
        "/api/v1/assess",
        json.dumps({"padding": "x" * 2000}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {key}",
    )
    _assert_json_error(response, 413)


def test_a_crash_is_a_json_500_without_a_traceback(
    client: Client, key: str, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.DEBUG = True  # not even in debug does a traceback reach the client

    def broken(text: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(api_module, "assess_json", broken)
    response = client.post(
        "/api/v1/assess", "{}", content_type="application/json", HTTP_AUTHORIZATION=f"Token {key}"
    )
    body = _assert_json_error(response, 500)
    assert "secret internals" not in json.dumps(body)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 429])
def test_every_http_error_the_api_raises_is_json(status: int) -> None:
    request = RequestFactory().get("/api/v1/assess")
    response = api.on_exception(request, HttpError(status, "explained"))
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    assert json.loads(response.content) == {"errors": [{"field": "", "message": "explained"}]}


# --- the same bound in the admin's "try it" box --------------------------------------------------


def test_the_rule_try_box_reports_a_far_future_as_of_instead_of_crashing(
    client: Client, alice: Any, north_clinic: Any
) -> None:
    from tests.conftest import rule_editor

    editor = rule_editor("tess")
    client.force_login(editor)
    rule = Rule.objects.filter(rule_set__is_current=True).first()
    assert rule is not None
    document = paget_on_alendronate_document(as_of="9999-12-31")
    response = client.post(f"/admin/pathways/rule/{rule.pk}/try/", {"case": json.dumps(document)})
    assert response.status_code == 200
    page = response.content.decode()
    assert "could not be assessed" in page
    assert "as_of" in page and "outside 1900-01-01 to 2200-12-31" in page


def test_stored_patients_read_back_through_the_api(
    client: Client, alice: Any, north_clinic: Any, key: str
) -> None:
    patient = stored_patient(north_clinic, alice)
    response = client.get(f"/api/v1/patients/{patient.pk}/case", HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 200
    assert response.json()["patient"]["sex"] == "female"


def test_a_patients_assessment_shows_follow_ups_marked_done_as_the_page_does(
    client: Client, alice: Any, north_clinic: Any, key: str
) -> None:
    """The JSON gave the engine's statuses alone: an event item (spec §5: done only when a
    clinician marks it done) could never be done, while the patient page said done."""
    from pathways.models import FollowUp
    from pathways.services import follow_up_mark_done
    from tests.factories import myeloma_on_zoledronic_acid_14_months_document

    patient = stored_patient(north_clinic, alice, myeloma_on_zoledronic_acid_14_months_document())
    review = FollowUp.objects.get(patient=patient, code="bp-review-1y")
    url = f"/api/v1/patients/{patient.pk}/assessment"
    before = client.get(url, HTTP_AUTHORIZATION=f"Token {key}").json()
    follow_up_mark_done(follow_up=review, user=alice)
    after = client.get(url, HTTP_AUTHORIZATION=f"Token {key}").json()
    statuses = {item["code"]: item["status"] for item in after["follow_ups"]}
    assert statuses["bp-review-1y"] == "done"
    assert {item["code"]: item["status"] for item in before["follow_ups"]}["bp-review-1y"] != "done"
    unchanged = [f for f in after["follow_ups"] if f["code"] != "bp-review-1y"]
    assert unchanged == [f for f in before["follow_ups"] if f["code"] != "bp-review-1y"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        # A lone UTF-16 surrogate: valid JSON escape (RFC 8259 §8.2 allows it), not encodable.
        (
            json.dumps(paget_on_alendronate_document()).replace('"2026-11-22"', '"\\ud800"', 1),
            "as_of",
        ),
        (json.dumps(paget_on_alendronate_document())[:-1] + ', "\\udfff": 1}', ""),
    ],
    ids=["surrogate-in-a-value", "surrogate-in-an-unknown-key"],
)
def test_a_lone_surrogate_in_the_case_is_a_400_not_a_500(
    client: Client, alice: Any, body: str, field: str
) -> None:
    """Requirement: no 500s on odd input (unicode); bad input gets an error naming the field.
    The engine does report `as_of: "\\ud800" is not a date`, but echoing the surrogate back in
    the error document could not be encoded as UTF-8 (ensure_ascii=False), so the client got a
    500 "internal error" instead of its 400. Found by an audit."""
    response = client.post(
        "/api/v1/assess",
        body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {_key(alice, 'assess')}",
    )
    assert response.status_code == 400, response.content[:200]
    [error] = response.json()["errors"]
    assert field in error["field"]


def test_a_fhir_bundle_with_a_duplicate_key_is_refused_not_stored_with_the_last_value(
    client: Client, alice: Any, north_clinic: Any
) -> None:
    """Requirement: bad input always gets a clear error naming the field; nothing half-read.
    POST /api/v1/assess refused a repeated key ("invalid JSON: duplicate key"), but the FHIR
    import read its body with a plain json.loads: an Observation whose valueQuantity said
    `"value": 412, "value": 41200` was stored silently as ALP 41200 U/L (the last one won),
    a hundredfold error in a clinical value, with a 200. Found by an audit."""
    text = json.dumps(fhir_bundles.paget_bundle(mrn="F-DUP"))
    text = text.replace('"value": 412', '"value": 412, "value": 41200', 1)
    response = client.post(
        "/api/v1/fhir",
        text,
        content_type="application/fhir+json",
        HTTP_AUTHORIZATION=f"Token {_key(alice, 'write')}",
    )
    assert response.status_code == 400, response.content[:300]
    assert "duplicate" in response.content.decode()
    assert not Patient.objects.filter(mrn="F-DUP").exists()
    assert not LabResult.objects.filter(value=41200).exists()
