"""The FHIR API audit's findings (tests/scratch/test_api_audit_fhir.py), fixed: entries about
another patient, unknown resource types, the import's Location, the order of Conditions,
repeated case fields, element-level paths, a user in no clinic, and the documented 500."""

from __future__ import annotations

import copy
from datetime import UTC
from typing import Any

import jsonschema
import pytest
from django.contrib.auth.models import User

from pathways import engine, fhir
from pathways.cases import patient_to_document
from pathways.interop.fhir_case import case_from_fhir, known_cancer
from pathways.models import AccessLog, ApiToken, Clinic, Patient
from tests import fhir_bundles as fb
from tests.factories import stored_patient
from tests.test_access import _all_routes
from tests.test_fhir_import import TODAY, _issues, _post, _read

CASE_FIELDS = "https://alpcare.example.org/fhir/StructureDefinition/case-fields"


@pytest.fixture
def key(alice: User) -> str:
    return ApiToken.issue(user=alice, name="ehr", scopes=["write", "read"])[1]


def _expressions(response: Any) -> list[str]:
    return [path for issue in response.json()["issue"] for path in issue.get("expression", [])]


# ---------------------------------------------------------------------------------------------
# 1. A subject naming another patient by identifier, or by display only.


@pytest.mark.django_db
@pytest.mark.parametrize("index", [1, 5], ids=["observation", "condition"])
def test_an_entry_whose_subject_is_another_patient_by_identifier_is_refused(
    client: Any, north_clinic: Clinic, alice: User, key: str, index: int
) -> None:
    """A logical reference to another MRN ({"identifier": {"value": "OTHER-9"}}) was applied
    to the Bundle's patient F100 without a word (only `reference` was checked)."""
    stored_patient(north_clinic, alice, mrn="OTHER-9")
    data = fb.paget_bundle(mrn="F100")
    data["entry"][index]["resource"]["subject"] = {
        "identifier": {"system": "urn:oid:1.2.3.4", "value": "OTHER-9"}
    }
    response = _post(client, key, data)
    assert response.status_code == 400, response.content
    assert _expressions(response) == [f"Bundle.entry[{index}].resource.subject.identifier"]
    assert "OTHER-9" in response.json()["issue"][0]["diagnostics"]
    assert not Patient.objects.filter(mrn="F100").exists()


@pytest.mark.parametrize(
    "subject",
    [
        {"display": "Grace Okafor"},
        {"identifier": {"value": "F100"}, "reference": "Patient/someone-else"},
        {"identifier": {"system": "urn:oid:9.9.9", "value": "F100"}},
    ],
    ids=["display only", "MRN but another reference", "MRN of another system"],
)
def test_a_subject_that_cannot_be_shown_to_be_the_bundles_patient_is_refused(
    subject: dict[str, Any],
) -> None:
    """A display only cannot be checked: it was stored on the Bundle's Patient as if it named
    it. README: entries about another patient are refused, "never guessed"."""
    data = fb.paget_bundle(mrn="F100")
    data["entry"][1]["resource"]["subject"] = subject
    assert [path for path in _issues(data) if path.startswith("Bundle.entry[1].resource.subject")]


def test_a_subject_naming_the_bundles_patient_by_its_mrn_is_read() -> None:
    data = fb.paget_bundle(mrn="F100")
    data["entry"][1]["resource"]["subject"] = {"identifier": {"value": "F100"}}
    data["entry"][5]["resource"]["subject"] = {
        "identifier": {"system": "urn:oid:1.2.3.4", "value": "F100"},
        "display": "Grace Okafor",
    }
    content = _read(data)
    assert content.mrn == "F100" and len(content.labs) == 3 and "paget" in content.diagnoses


# ---------------------------------------------------------------------------------------------
# 2. A resource type fhir.resources does not know.


@pytest.mark.django_db
@pytest.mark.parametrize(
    "resource",
    [
        {"resourceType": "Foo"},
        {"resourceType": "observation"},  # wrong case
        {"resourceType": None},
        {"resourceType": 5},
        {"resourceType": ["Patient"]},
    ],
    ids=["unknown", "lower-case", "null", "number", "list"],
)
def test_an_unknown_resource_type_is_a_400_naming_the_entry(
    client: Any, north_clinic: Clinic, key: str, resource: dict[str, Any]
) -> None:
    """Each was a 500: fhir.resources' Bundle model raised KeyError ('R4.FooType') or
    TypeError (str + None), not a validation error."""
    data = fb.paget_bundle()
    data["entry"].append({"resource": resource, "request": {"method": "POST", "url": "X"}})
    response = _post(client, key, data)
    assert response.status_code == 400, response.content
    assert response.json()["resourceType"] == "OperationOutcome"
    assert _expressions(response) == ["Bundle.entry[7].resource"]
    assert "not a FHIR R4 resource type" in response.json()["issue"][0]["diagnostics"]
    assert not Patient.objects.exists()


@pytest.mark.django_db
def test_an_unknown_contained_resource_type_is_a_400_naming_it(
    client: Any, north_clinic: Clinic, key: str
) -> None:
    """A contained {"resourceType": "Foo"} was a 500 (KeyError) too."""
    data = fb.paget_bundle()
    data["entry"][1]["resource"]["contained"] = [{"resourceType": "Foo", "id": "x"}]
    response = _post(client, key, data)
    assert response.status_code == 400, response.content
    assert _expressions(response) == ["Bundle.entry[1].resource.contained[0]"]


def test_a_known_type_in_the_wrong_case_is_named_with_its_spelling() -> None:
    data = fb.paget_bundle()
    data["entry"][1]["resource"]["resourceType"] = "observation"
    assert "Observation?" in _issues(data)["Bundle.entry[1].resource"]


# ---------------------------------------------------------------------------------------------
# 3. The import's Location header.


@pytest.mark.django_db
def test_the_location_header_of_an_import_can_be_read_with_the_same_token(
    client: Any, alice: User, bob: User, north_clinic: Clinic, key: str
) -> None:
    """Location named /api/v1/fhir/Patient/{id}, which was a 404: only $everything existed."""
    response = _post(client, key, fb.paget_bundle())
    assert response.status_code == 200
    location = response["Location"]
    read = client.get(location, HTTP_AUTHORIZATION=f"Token {key}")
    assert read.status_code == 200, (location, read.status_code, read.content)
    assert read["Content-Type"].startswith("application/fhir+json")
    patient = Patient.objects.get(mrn="F100")
    everything = client.get(f"{location}/$everything", HTTP_AUTHORIZATION=f"Token {key}").json()
    assert read.json() == everything["entry"][0]["resource"]
    assert read.json()["id"] == str(patient.pk)
    assert AccessLog.objects.filter(
        user=alice, patient=patient, action="api: fhir Patient"
    ).exists()
    # The same access as $everything: read scope, the token's clinics, a token at all.
    write_only = ApiToken.issue(user=alice, name="w", scopes=["write"])[1]
    assert client.get(location, HTTP_AUTHORIZATION=f"Token {write_only}").status_code == 403
    bob_key = ApiToken.issue(user=bob, name="b", scopes=ApiToken.Scope.values)[1]
    assert client.get(location, HTTP_AUTHORIZATION=f"Token {bob_key}").status_code == 404
    assert client.get(location).status_code == 401


def test_the_access_walk_covers_the_patient_read() -> None:
    """tests/test_access.py walks every URL pattern (anonymous, another clinic's user and
    token): the new read is one of them."""
    routes = dict((name, route) for route, name in _all_routes())
    assert routes["fhir_patient"] == "api/v1/fhir/Patient/<pk>"


# ---------------------------------------------------------------------------------------------
# 6. Two cancers: the one stored does not depend on the order of the Conditions.


@pytest.mark.django_db
def test_the_cancer_stored_does_not_depend_on_the_order_of_the_conditions(
    client: Any, north_clinic: Clinic, key: str
) -> None:
    """C61 then C50.911 stored prostate, the other order breast; the CDS Hooks reading of the
    same resources (fhir_case.case_from_fhir) always said breast."""
    stored = {}
    for mrn, codes in (("ORD-1", ("C61", "C50.911")), ("ORD-2", ("C50.911", "C61"))):
        resources = [fb.patient(mrn, gender="male"), *(fb.condition(c) for c in codes)]
        response = _post(client, key, fb.bundle(*resources, kind="collection"))
        assert response.status_code == 200, response.content
        stored[mrn] = patient_to_document(Patient.objects.get(mrn=mrn))["clinical"]["cancer"]
        hooks = case_from_fhir(copy.deepcopy(resources), today=TODAY, tz=UTC)
        assert hooks.document["clinical"]["cancer"] == stored[mrn]
        # The cancer not stored is said, not dropped in silence.
        notes = [i for i in response.json()["issue"] if i["severity"] == "information"][1:]
        assert [(n["expression"], n["diagnostics"].split(":")[0]) for n in notes] == [
            ([f"Bundle.entry[{1 + codes.index('C61')}].resource.code"], "prostate cancer")
        ]
    assert stored == {"ORD-1": "breast", "ORD-2": "breast"}


def test_one_rule_chooses_the_cancer_whatever_the_order() -> None:
    assert known_cancer(["other", "lung", "renal"]) == known_cancer(["renal", "lung"]) == "renal"
    assert known_cancer(["other"]) == "other" and known_cancer([]) is None
    for codes in (("C18.9", "C34.90"), ("C34.90", "C18.9")):
        content = _read(fb.bundle(fb.patient(), *(fb.condition(c) for c in codes)))
        assert content.cancer is not None and content.cancer[0] == "lung"


# ---------------------------------------------------------------------------------------------
# 7. Two values of one case field in the case-fields extension.


def _case_fields(*values: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"url": CASE_FIELDS, "extension": list(values)}]


@pytest.mark.django_db
def test_two_values_of_one_case_field_in_the_extension_refuse_the_bundle(
    client: Any, north_clinic: Clinic, key: str
) -> None:
    """clinical.bone_pain true, then false: the last one was stored, silently."""
    extension = _case_fields(
        {"url": "clinical.bone_pain", "valueBoolean": True},
        {"url": "clinical.bone_pain", "valueBoolean": False},
    )
    data = fb.bundle(fb.patient("EXT-1", extension=extension), kind="collection")
    response = _post(client, key, data)
    assert response.status_code == 400, response.content
    [issue] = response.json()["issue"]
    assert issue["expression"] == ["Bundle.entry[0].resource.extension[0].extension[1]"]
    # Both are named: this one, and the other by its path.
    assert "Bundle.entry[0].resource.extension[0].extension[0]" in issue["diagnostics"]
    assert not Patient.objects.filter(mrn="EXT-1").exists()


def test_one_case_field_given_twice_with_one_value_is_that_value() -> None:
    extension = _case_fields(
        {"url": "clinical.bone_pain", "valueBoolean": True},
        {"url": "clinical.bone_pain", "valueBoolean": True},
    )
    content = _read(fb.bundle(fb.patient(extension=extension)))
    assert content.fields["clinical.bone_pain"][0] is True


# ---------------------------------------------------------------------------------------------
# 8. Errors named by their element, as a lab's are.


@pytest.mark.django_db
def test_a_therapy_start_out_of_range_is_named_by_its_element(
    client: Any, north_clinic: Clinic, key: str
) -> None:
    """The issue named only the resource ("Bundle.entry[6].resource")."""
    data = fb.paget_bundle()
    data["entry"][6]["resource"]["effectivePeriod"] = {"start": "1800-01-01"}
    response = _post(client, key, data)
    assert response.status_code == 400
    assert _expressions(response) == ["Bundle.entry[6].resource.effectivePeriod.start"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("resource", "expression"),
    [
        (fb.request("M05BX04", "1800-01-01"), "Bundle.entry[1].resource.authoredOn"),
        (fb.statement("M05BA04", "2026-01-01", "2300-01-01"),
         "Bundle.entry[1].resource.effectivePeriod.end"),
        (fb.weight(1000, "2026-10-01"), "Bundle.entry[1].resource.valueQuantity.value"),
    ],
    ids=["order date", "statement end", "weight"],
)  # fmt: skip
def test_therapy_and_weight_errors_name_their_element(
    client: Any, north_clinic: Clinic, key: str, resource: dict[str, Any], expression: str
) -> None:
    """A therapy's or a weight's error named only the resource."""
    response = _post(client, key, fb.bundle(fb.patient(), resource))
    assert response.status_code == 400, response.content
    assert _expressions(response) == [expression]


# ---------------------------------------------------------------------------------------------
# 9. A token whose user is in no clinic.


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["", "?clinic=north"])
def test_a_token_of_a_user_in_no_clinic_is_told_so(
    client: Any, north_clinic: Clinic, query: str
) -> None:
    """It was a 400 "you belong to several clinics (none): name one with ?clinic=SLUG"."""
    user = User.objects.create_user("nomember")
    token = ApiToken.issue(user=user, name="ehr", scopes=["write"])[1]
    response = _post(client, token, fb.paget_bundle(), query)
    assert response.status_code == 403, response.content
    [issue] = response.json()["issue"]
    assert "no clinic" in issue["diagnostics"] and "several" not in issue["diagnostics"]
    assert not Patient.objects.exists()


# ---------------------------------------------------------------------------------------------
# 10. OpenAPI: the 500 of POST /api/v1/fhir is documented as what it is.


def _documented(client: Any, alice: User, response: Any) -> None:
    """The response validates against the schema documented for its status and media type."""
    client.force_login(alice)
    document = client.get("/api/v1/openapi.json").json()
    client.logout()
    responses = document["paths"]["/api/v1/fhir"]["post"]["responses"]
    media = response["Content-Type"].split(";")[0]
    schema = responses[str(response.status_code)]["content"][media]["schema"]
    jsonschema.validate(response.json(), {**schema, "components": document["components"]})


@pytest.mark.django_db
def test_a_rule_fault_on_import_answers_the_documented_500_schema(
    client: Any, alice: User, north_clinic: Clinic, key: str, monkeypatch: Any
) -> None:
    """The OperationOutcome a rule fault answers was documented as an ErrorDocument."""

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise engine.RuleEvaluationError("rule extreme-alp: no such key")

    monkeypatch.setattr(fhir, "import_bundle", fail)
    response = _post(client, key, fb.paget_bundle())
    assert response.status_code == 500
    assert response.json()["resourceType"] == "OperationOutcome"
    _documented(client, alice, response)


@pytest.mark.django_db
def test_the_other_fhir_import_errors_answer_their_documented_schema(
    client: Any, alice: User, north_clinic: Clinic, key: str, monkeypatch: Any
) -> None:
    """An unexpected error stays an ErrorDocument (documented beside the OperationOutcome); the
    refusals and the user in no clinic are OperationOutcomes."""

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    with monkeypatch.context() as patch:
        patch.setattr(fhir, "import_bundle", crash)
        crashed = _post(client, key, fb.paget_bundle())
    assert crashed.status_code == 500 and "errors" in crashed.json()
    nobody = User.objects.create_user("nomember")
    token = ApiToken.issue(user=nobody, name="ehr", scopes=["write"])[1]
    refused = fb.paget_bundle()
    refused["entry"][1]["resource"]["subject"] = {"display": "someone"}
    answers = [
        crashed,
        _post(client, token, fb.paget_bundle()),
        _post(client, key, refused),
        _post(client, key, fb.paget_bundle(), "?clinic=elsewhere"),
    ]
    assert [response.status_code for response in answers] == [500, 403, 400, 404]
    for response in answers:
        _documented(client, alice, response)
