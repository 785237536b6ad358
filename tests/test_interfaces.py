"""`manage.py assess` and `POST /api/v1/assess`: the same engine, the same bytes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pathways import engine
from pathways.models import AccessLog, ApiToken
from tests.factories import (
    myeloma_on_zoledronic_acid_14_months_document,
    paget_on_alendronate_document,
    run_assess_command,
    stored_patient,
)

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def alice_token(alice: Any) -> str:
    return ApiToken.issue(user=alice, name="test", scopes=["assess", "read"])[1]


def _post(client: Any, token: str | None, body: Any) -> Any:
    headers = {"HTTP_AUTHORIZATION": f"Token {token}"} if token else {}
    payload = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post("/api/v1/assess", payload, content_type="application/json", **headers)


@pytest.mark.parametrize(
    "document", [paget_on_alendronate_document(), myeloma_on_zoledronic_acid_14_months_document()]
)
def test_command_and_api_give_byte_identical_results(
    client: Any, alice_token: str, tmp_path: Path, document: dict[str, Any]
) -> None:
    code, out, err = run_assess_command(document, tmp_path)
    assert code == 0, err
    response = _post(client, alice_token, document)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.content.decode() == out
    result = json.loads(out)
    assert result["rule_set"] and result["recommendations"]
    assert list(result) == [
        "as_of",
        "rule_set",
        "pathway",
        "context",
        "findings",
        "recommendations",
        "suppressed",
        "follow_ups",
        "sources",
    ]


def test_the_command_reports_every_error_with_its_field_and_exits_2(tmp_path: Path) -> None:
    document = paget_on_alendronate_document()
    document["patient"]["birth_dat"] = "1950-01-01"
    document["labs"][1]["collected_at"] = "2027-01-01"
    code, out, err = run_assess_command(document, tmp_path)
    assert code == 2 and out == ""
    assert "patient.birth_dat: unknown field" in err
    assert "labs[1].collected_at: after as_of" in err


@pytest.mark.own_database
def test_the_command_works_right_after_migrate_on_a_fresh_database(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(DJANGO_DEBUG="1", DATABASE_URL=f"sqlite:///{tmp_path / 'fresh.sqlite3'}")

    def manage(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
        )

    assert manage("migrate", "--no-input", "-v0").returncode == 0
    result = manage("assess", "-", stdin=json.dumps(paget_on_alendronate_document()))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["pathway"] == "bone"
    bad = manage("assess", "-", stdin='{"patient": {}}')
    assert bad.returncode == 2
    assert "patient.birth_date: required" in bad.stderr


def test_the_api_refuses_a_bad_case_with_400_and_field_paths(client: Any, alice_token: str) -> None:
    document = paget_on_alendronate_document()
    document["labs"][0]["unit"] = "mmol/L"
    response = _post(client, alice_token, document)
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert errors and errors[0]["field"] == "labs[0].unit"
    assert "U/L" in errors[0]["message"]


@pytest.mark.parametrize("body", ["{not json", "[]", "null"])
def test_the_api_refuses_a_document_that_is_not_an_object(
    client: Any, alice_token: str, body: str
) -> None:
    response = _post(client, alice_token, body)
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"]


@pytest.mark.parametrize("header", [None, "Token not-a-token", "Bearer x"])
def test_the_api_refuses_requests_without_a_valid_token(client: Any, header: str | None) -> None:
    headers = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.post(
        "/api/v1/assess",
        json.dumps(paget_on_alendronate_document()),
        content_type="application/json",
        **headers,
    )
    assert response.status_code == 401


def test_a_revoked_token_is_refused(client: Any, alice: Any) -> None:
    token, raw = ApiToken.issue(user=alice, name="old laptop", scopes=["assess"])
    token.revoked = True
    token.save()
    assert _post(client, raw, paget_on_alendronate_document()).status_code == 401


def test_tokens_are_stored_hashed(alice: Any) -> None:
    token, raw = ApiToken.issue(user=alice, name="x", scopes=["read"])
    assert raw not in token.digest and len(token.digest) == 64


def test_patient_reads_through_the_api_are_scoped_and_logged(
    client: Any, alice: Any, bob: Any, north_clinic: Any, alice_token: str
) -> None:
    patient = stored_patient(north_clinic, alice)
    own = client.get(
        f"/api/v1/patients/{patient.pk}/case", HTTP_AUTHORIZATION=f"Token {alice_token}"
    )
    assert own.status_code == 200
    assert (
        engine.parse_case(own.json()).labs
        == engine.parse_case(paget_on_alendronate_document()).labs
    )
    assert AccessLog.objects.filter(patient=patient, user=alice, action="api: case").exists()
    bob_token = ApiToken.issue(user=bob, name="b", scopes=["read"])[1]
    other = client.get(
        f"/api/v1/patients/{patient.pk}/assessment", HTTP_AUTHORIZATION=f"Token {bob_token}"
    )
    assert other.status_code == 404


def test_the_openapi_docs_need_a_login(client: Any, alice: Any) -> None:
    assert client.get("/api/v1/docs").status_code == 302
    client.force_login(alice)
    assert client.get("/api/v1/docs").status_code == 200
    schema = client.get("/api/v1/openapi.json").json()
    body = schema["paths"]["/api/v1/assess"]["post"]["requestBody"]
    assert "patient" in json.dumps(body)


def test_a_stored_patient_is_assessed_as_the_document_it_was_saved_from(
    client: Any, alice: Any, north_clinic: Any, alice_token: str
) -> None:
    """Spec §7: the pages (the stored patient) and the JSON never disagree. Two ALPs on one
    day, at T00:00 then with a bare date: §2 sorts a bare date as 00:00 and keeps document
    order on a tie, so the latest is the second (100 U/L, not elevated) on both."""
    document = paget_on_alendronate_document(
        labs=[
            {"test": "alp", "value": 300, "unit": "U/L", "collected_at": "2026-11-02T00:00"},
            {"test": "alp", "value": 100, "unit": "U/L", "collected_at": "2026-11-02"},
        ]
    )
    posted = _post(client, alice_token, document).json()
    patient = stored_patient(north_clinic, alice, document)
    stored = client.get(
        f"/api/v1/patients/{patient.pk}/assessment", HTTP_AUTHORIZATION=f"Token {alice_token}"
    ).json()
    assert posted["findings"]["alp_latest"] == 100
    assert stored["findings"] == posted["findings"]
    assert stored["recommendations"] == posted["recommendations"]
