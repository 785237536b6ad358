"""schemathesis against the API in-process (WSGI): no 5xx, every response as documented.

Slow (a few hundred generated requests per operation), so it runs once, on PostgreSQL.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from pathways.api import EXAMPLE_CASE, api
from pathways.feed_models import Hl7Feed
from pathways.models import ApiToken
from tests import fhir_bundles
from tests.factories import (
    myeloma_on_zoledronic_acid_14_months_document,
    paget_on_alendronate_document,
    stored_patient,
)
from tests.test_hl7_feed import oru

pytestmark = pytest.mark.django_db

EXAMPLES_PER_MODE = 250  # per operation: 250 valid + 250 invalid requests
# A case can satisfy the JSON Schema and still break a rule the schema cannot state (a unit
# that belongs to another test, a result dated after as_of): that is the documented 400, so
# the check that every schema-valid request succeeds does not apply to /assess.
EXCLUDED_CHECKS = [positive_data_acceptance]


@pytest.fixture
def on_postgresql() -> Iterator[None]:
    if connection.vendor != "postgresql":
        pytest.skip("API fuzzing is slow: it runs once, in the PostgreSQL run of the suite")
    # Requests run in-process inside the test's transaction: like Django's test client, keep
    # the request signals from closing the test's database connection.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _schema() -> Any:
    document = json.loads(json.dumps(api.get_openapi_schema(path_prefix="/api/v1/")))
    schema = schemathesis.openapi.from_dict(document)
    schema.app = WSGIHandler()
    return schema


def _fuzz(
    operation: Any, mode: GenerationMode, headers: dict[str, str], statuses: Counter[str]
) -> None:
    @settings(
        max_examples=EXAMPLES_PER_MODE,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case: Any) -> None:
        response = case.call_and_validate(headers=headers, excluded_checks=EXCLUDED_CHECKS)
        statuses[f"{mode.value} {response.status_code}"] += 1

    fuzz()


def test_schemathesis_finds_no_server_error_and_no_undocumented_response(
    on_postgresql: None, alice: Any, north_clinic: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    patient = stored_patient(north_clinic, alice)
    key = ApiToken.issue(user=alice, name="fuzz", scopes=["assess", "read", "write", "hl7"])[1]
    Hl7Feed.objects.create(sending_facility="NORTHLAB", clinic=north_clinic, service_user=alice)
    headers = {"Authorization": f"Token {key}"}
    figures: dict[str, Counter[str]] = {}

    for result in _schema().get_all_operations():
        operation = result.ok()
        statuses: Counter[str] = Counter()
        figures[operation.label] = statuses

        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(operation, mode, headers, statuses)

        # The success paths, which random data rarely reaches: a real patient, real cases.
        if "{pk}" in operation.path:
            cases = [operation.Case(path_parameters={"pk": patient.pk})]
        elif operation.path.endswith("/hl7"):
            cases = [operation.Case(body=oru(mrn=patient.mrn), media_type="text/plain")]
        elif operation.path.endswith("/fhir"):
            bundles = [fhir_bundles.paget_bundle("transaction", mrn="FUZZ-1"),
                       fhir_bundles.paget_bundle("collection", mrn="FUZZ-2")]  # fmt: skip
            cases = [operation.Case(body=b, media_type="application/fhir+json") for b in bundles]
        else:
            documents = [
                EXAMPLE_CASE,
                paget_on_alendronate_document(),
                myeloma_on_zoledronic_acid_14_months_document(),
            ]
            cases = [operation.Case(body=doc, media_type="application/json") for doc in documents]
        for case in cases:
            response = case.call_and_validate(headers=headers, excluded_checks=EXCLUDED_CHECKS)
            assert response.status_code == 200
            statuses["explicit 200"] += 1

    with capsys.disabled():
        for label, statuses in figures.items():
            total = sum(statuses.values())
            print(f"\nschemathesis {label}: {total} requests, {dict(sorted(statuses.items()))}")
    for label, statuses in figures.items():
        assert sum(statuses.values()) >= EXAMPLES_PER_MODE, label
        assert not [status for status in statuses if status.split()[-1].startswith("5")], label
