"""CDS Hooks test support: an EHR's signing keys and JWTs, FHIR resources for a case, and a
small FHIR server stub (a real HTTP server on the helper's port range)."""

from __future__ import annotations

import json
import socketserver
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from pathways.interop.fhir_case import ATC, ICD10CM, LOINC, UCUM

EHR_ISSUER = "https://ehr.north.example.org"
MRN_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}


@dataclass
class EhrKeys:
    """An EHR's ES384 key pair; `jwks` is what the EHR publishes."""

    kid: str = "ehr-key-1"
    private_key: Any = field(default_factory=lambda: ec.generate_private_key(ec.SECP384R1()))

    @property
    def jwks(self) -> dict[str, Any]:
        public = jwt.algorithms.ECAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {"keys": [{**public, "kid": self.kid, "alg": "ES384", "use": "sig"}]}

    def token(self, audience: str, **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": EHR_ISSUER,
            "aud": audience,
            "iat": now,
            "exp": now + 300,
            "jti": str(uuid.uuid4()),
            "sub": "ehr-client",
            **claims,
        }
        payload = {key: value for key, value in payload.items() if value is not None}
        return jwt.encode(payload, self.private_key, algorithm="ES384", headers={"kid": self.kid})


def _days_ago(days: int) -> str:
    return (date.today() - timedelta(days=days)).isoformat()


def _bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"resource": resource} for resource in resources],
    }


def _lab(index: int, loinc: str, value: float, unit: str, days_ago: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"obs-{index}",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "subject": {"reference": "Patient/ehr-42"},
        "effectiveDateTime": f"{_days_ago(days_ago)}T08:00:00+00:00",
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }


def _condition(index: int, icd10cm: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": f"cond-{index}",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {"coding": [{"system": ICD10CM, "code": icd10cm}]},
        "subject": {"reference": "Patient/ehr-42"},
    }


def zoledronic_acid_statement(days_ago: int) -> dict[str, Any]:
    return {
        "resourceType": "MedicationStatement",
        "id": "medstat-za",
        "status": "active",
        "medicationCodeableConcept": {"coding": [{"system": ATC, "code": "M05BA08"}]},
        "subject": {"reference": "Patient/ehr-42"},
        "effectivePeriod": {"start": _days_ago(days_ago)},
    }


def myeloma_with_rising_creatinine(
    *,
    creatinine_now: float | None = 1.4,
    creatinine_days_ago: int = 20,
    creatinine_before: float | None = 1.0,
    on_zoledronic_acid: bool = True,
    icd10cm: tuple[str, ...] = ("C90.00",),
    mrn: str = "NORTH-42",
) -> dict[str, Any]:
    """Prefetch of a 70-year-old man with myeloma: creatinine `creatinine_before` mg/dL 410 days
    ago, then `creatinine_now` `creatinine_days_ago` days ago (Cockcroft-Gault, 78 kg; None:
    not measured), on zoledronic acid for 400 days, no dental examination recorded."""
    birth = date.today().replace(year=date.today().year - 70) - timedelta(days=30)
    patient = {
        "resourceType": "Patient",
        "id": "ehr-42",
        "identifier": [{"type": MRN_TYPE, "system": "urn:oid:1.2.3.4", "value": mrn}],
        "gender": "male",
        "birthDate": birth.isoformat(),
    }
    observations = [_lab(1, "29463-7", 78, "kg", 20)]
    if creatinine_before is not None:
        observations.append(_lab(2, "2160-0", creatinine_before, "mg/dL", 410))
    if creatinine_now is not None:
        observations.append(_lab(3, "2160-0", creatinine_now, "mg/dL", creatinine_days_ago))
    observations += [_lab(4, "6768-6", 150, "U/L", 20), _lab(5, "17838-4", 31, "ug/L", 20)]
    statements = [zoledronic_acid_statement(400)] if on_zoledronic_acid else []
    return {
        "patient": patient,
        "observations": _bundle(observations),
        "conditions": _bundle([_condition(i, code) for i, code in enumerate(icd10cm)]),
        "medicationRequests": _bundle([]),
        "medicationStatements": _bundle(statements),
    }


def draft_order(atc: str, dose_mg: float | None) -> dict[str, Any]:
    order: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": "draft-1",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": ATC, "code": atc}]},
        "subject": {"reference": "Patient/ehr-42"},
    }
    if dose_mg is not None:
        order["dosageInstruction"] = [
            {
                "doseAndRate": [
                    {"doseQuantity": {"value": dose_mg, "unit": "mg", "system": UCUM, "code": "mg"}}
                ]
            }
        ]
    return order


class FhirStub:
    """Answers GETs from a dict of path+query → resource; records the Authorization headers."""

    def __init__(self, responses: dict[str, dict[str, Any]]) -> None:
        self.responses = responses
        self.authorizations: list[str | None] = []
        self.paths: list[str] = []


@contextmanager
def fhir_stub_server(stub: FhirStub, port_range: range = range(8610, 8700)) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            stub.paths.append(self.path)
            stub.authorizations.append(self.headers.get("Authorization"))
            key = self.path.removeprefix("/fhir/")
            body = stub.responses.get(key) or stub.responses.get(key.split("?")[0])
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = None
    for port in port_range:
        try:
            server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
            break
        except OSError:
            continue
    assert server is not None, "no free port in the stub's range"
    with serving(server) as base:
        yield base


@contextmanager
def serving(server: socketserver.TCPServer) -> Iterator[str]:
    """A test server answering in a thread while the block runs: its base URL, as a FHIR
    server's (".../fhir")."""
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/fhir"
    finally:
        server.shutdown()
        server.server_close()
