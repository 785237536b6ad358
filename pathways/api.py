"""The JSON API (django-ninja): assess a case document; read a stored patient's case and result.

Every operation names the token scope it needs; every error, from any layer, is a JSON
``{"errors": [{"field": ..., "message": ...}]}`` document (the same shape as a bad case's 400).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse
from ninja import Field, NinjaAPI, Path, Schema
from ninja.errors import AuthenticationError, AuthorizationError, HttpError, ValidationError
from ninja.openapi.schema import OpenAPISchema
from ninja.operation import Operation
from ninja.security import APIKeyHeader

from pathways import engine, feed, fhir
from pathways.access import patient_for_user, user_clinics
from pathways.assessment import assess_json, assess_patient, with_marked_done
from pathways.cases import patient_to_document
from pathways.engine.dates import DATE_RANGE
from pathways.interop import hl7v2
from pathways.middleware import api_unauthorized
from pathways.models import ApiToken, Clinic, Patient
from pathways.rules import current_rule_set, rule_fault_text

logger = logging.getLogger(__name__)

# Primary keys are 64-bit: a larger number is a 422, never a database overflow.
MAX_PK = 2**63 - 1


# ---------------------------------------------------------------------------------------------
# Errors: one JSON shape for every status.


class FieldErrorOut(Schema):
    field: str = Field(description='where the problem is ("" for the request as a whole)')
    message: str


class ErrorDocument(Schema):
    errors: list[FieldErrorOut] = Field(min_length=1)


def json_text(document: Any, **options: Any) -> str:
    """JSON as UTF-8 text can carry it: an error that quotes the request may hold a lone
    surrogate ("\\ud800" is valid JSON), which only an escape can send."""
    text = json.dumps(document, ensure_ascii=False, **options)
    try:
        text.encode()
    except UnicodeEncodeError:
        return json.dumps(document, ensure_ascii=True, **options)
    return text


def error_document(status: int, *errors: tuple[str, str]) -> HttpResponse:
    body = {"errors": [{"field": field, "message": message} for field, message in errors]}
    return HttpResponse(json_text(body), status=status, content_type="application/json")


def errors_response(errors: list[engine.FieldError]) -> HttpResponse:
    return error_document(400, *((error.field, error.message) for error in errors))


def _location(loc: Any) -> str:
    # ninja's locations start with the parameter's source ("path", "query"): keep the name.
    parts = [str(part) for part in loc[1:]] if len(loc) > 1 else [str(part) for part in loc]
    return ".".join(parts)


def _on_validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    errors = [(_location(error.get("loc", ())), str(error.get("msg", ""))) for error in exc.errors]
    return error_document(422, *(errors or [("", "invalid request")]))


def _on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if isinstance(exc, AuthenticationError):
        message = "missing, unknown, revoked or expired API token (Authorization: Token <key>)"
        return api_unauthorized("Authorization", message)
    return error_document(exc.status_code, ("", exc.message))


def _on_not_found(request: HttpRequest, exc: Exception) -> HttpResponse:
    return error_document(404, ("", "not found"))


def _on_permission_denied(request: HttpRequest, exc: Exception) -> HttpResponse:
    return error_document(403, ("", "forbidden"))


def _on_too_big(request: HttpRequest, exc: Exception) -> HttpResponse:
    return error_document(413, ("", "request body too large"))


def _on_rule_fault(request: HttpRequest, exc: engine.RuleEvaluationError) -> HttpResponse:
    """The rule set in force fails on this case: a fault of the server's rules, named as the
    screens name it (never a bare "internal error"), and logged for the clinical leads."""
    logger.error("rule set in force failed on %s %s: %s", request.method, request.path, exc)
    return error_document(500, ("", rule_fault_text(current_rule_set(), exc)))


def _on_unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    # The traceback goes to the log, never to the client (DEBUG or not).
    logger.exception("API error on %s %s", request.method, request.path, exc_info=exc)
    return error_document(500, ("", "internal error; it has been logged"))


# ---------------------------------------------------------------------------------------------
# Authentication: `Authorization: Token <key>`, and the scope each operation names.


class TokenAuth(APIKeyHeader):
    """`Authorization: Token <key>` of an active token that has ``scope``."""

    param_name = "Authorization"
    openapi_description = (
        "`Token <key>`: create a key on the API tokens page. Each operation names the scope "
        "the token needs (assess, read, write, hl7, cds)."
    )

    def __init__(self, scope: str) -> None:
        if scope not in ApiToken.Scope.values:
            raise ValueError(f"unknown scope {scope!r}")
        self.scope = scope
        super().__init__()

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        scheme, _, raw = (key or "").strip().partition(" ")
        if scheme.lower() != "token" or not raw.strip():  # RFC 9110: schemes ignore case
            return None
        token = ApiToken.authenticate(raw.strip())
        if token is None:
            return None
        if not token.allows(self.scope):
            raise AuthorizationError(message=f'this token lacks the "{self.scope}" scope')
        request.user = token.user
        return token.user


def scope(name: str) -> TokenAuth:
    return TokenAuth(name)


# ---------------------------------------------------------------------------------------------
# The OpenAPI document: the case document's schemas live in components (no dangling $defs);
# each operation's security requirement lists its scope.

_SCHEMAS = "#/components/schemas/"


def _rewrite_refs(node: Any) -> Any:
    """$defs references point into components; date fields state their range."""
    if isinstance(node, dict):
        rewritten = {
            key: (
                value.replace("#/$defs/", _SCHEMAS)
                if key == "$ref" and isinstance(value, str)
                else _rewrite_refs(value)
            )
            for key, value in node.items()
        }
        if rewritten.get("type") == "string" and str(rewritten.get("description", "")).startswith(
            "YYYY-MM-DD"
        ):
            rewritten["description"] += f"; {DATE_RANGE}"
        return rewritten
    if isinstance(node, list):
        return [_rewrite_refs(item) for item in node]
    return node


def case_document_schemas() -> dict[str, Any]:
    """The case document's JSON Schema as OpenAPI components, "CaseDocument" at the root."""
    schema = _rewrite_refs(engine.case_json_schema())
    definitions = schema.pop("$defs", {})
    return {**definitions, "CaseDocument": schema}


class _Document(OpenAPISchema):
    def operation_security(self, operation: Operation) -> list[dict[str, Any]] | None:
        security = super().operation_security(operation)
        scopes = [a.scope for a in operation.auth_callbacks if isinstance(a, TokenAuth)]
        if security and scopes:
            return [{"TokenAuth": scopes}]
        return security

    def get_components(self) -> dict[str, Any]:
        components = super().get_components()
        components["schemas"].update(case_document_schemas())
        components["schemas"]["OperationOutcome"] = OPERATION_OUTCOME_SCHEMA
        return components


class AlpcareAPI(NinjaAPI):
    def get_openapi_schema(
        self, *, path_prefix: str | None = None, path_params: dict[str, Any] | None = None
    ) -> OpenAPISchema:
        if path_prefix is None:
            path_prefix = self.get_root_path(path_params or {})
        return _Document(self, path_prefix)


api = AlpcareAPI(
    title="alpcare API",
    version="1",
    description=(
        "Assess elevated-ALP cases against the published rule set (spec/pathways.md), and read "
        "your clinics' stored patients. Authenticate with `Authorization: Token <key>`; each "
        "operation names the token scope it needs. Every error is "
        '`{"errors": [{"field": "...", "message": "..."}]}`.'
    ),
    urls_namespace="api",
    docs_decorator=login_required,
)
api.exception_handler(Exception)(_on_unexpected)
api.exception_handler(engine.RuleEvaluationError)(_on_rule_fault)
api.exception_handler(Http404)(_on_not_found)
api.exception_handler(PermissionDenied)(_on_permission_denied)
api.exception_handler(RequestDataTooBig)(_on_too_big)
api.exception_handler(HttpError)(_on_http_error)
api.exception_handler(ValidationError)(_on_validation_error)


# ---------------------------------------------------------------------------------------------
# The result document (spec §6), for the OpenAPI document (the view returns the engine's bytes).


class FindingsOut(Schema):
    alp_latest: float | None
    alp_uln: float | None
    alp_x_uln: float | None
    alp_elevated: bool
    bone_alp: str
    crcl_current: float | None
    crcl_baseline: float | None
    # Revision 2 (spec §6): the working behind the advice; null where not known.
    alp_latest_date: str | None = Field(None, json_schema_extra={"format": "date"})
    alp_uln_source: str | None = Field(
        None, description='where the ULN came from: "lab", or the built-in band used'
    )
    alp_source: str | None = Field(
        None,
        description="hepatic, mixed, bone, likely_bone, not_bone or unknown (spec §2)",
    )
    ggt: str | None = Field(None, description="elevated, normal or unknown")
    calcium_corrected: float | None = Field(None, description="mg/dL, corrected for albumin")
    crcl_method: str | None = Field(None, description="measured, cockcroft-gault or unknown")
    rcv_rise_pct: float | None = None
    rcv_fall_pct: float | None = None
    za_dosing_crcl: float | None = Field(None, description="the CrCl zoledronic acid is dosed by")
    alp_gestational_week: int | None = Field(
        None, description="gestational week at the latest ALP's collection"
    )
    pregnancy_trimester: int | None = Field(None, description="1, 2 or 3 at as_of")
    ggt_latest: float | None = Field(None, description="the latest recent GGT, U/L")
    ggt_uln: float | None = None
    bone_alp_latest: float | None = None
    bone_alp_uln: float | None = None
    crcl_current_date: str | None = Field(None, json_schema_extra={"format": "date"})
    crcl_creatinine: float | None = Field(
        None, description="the creatinine (mg/dL) Cockcroft-Gault used"
    )
    crcl_weight_kg: float | None = Field(None, description="the weight Cockcroft-Gault used")


class RecommendationOut(Schema):
    code: str
    priority: str = Field(json_schema_extra={"enum": list(engine.PRIORITIES)})
    title: str
    rationale: str
    citations: list[str]
    evidence_note: str | None = Field(
        None, description="where the rule departs from a seed, what the seed says and why"
    )


class SuppressedOut(Schema):
    code: str = Field(description="a rule whose condition held but that a context stood down")
    reason: str


class SourceOut(Schema):
    kind: str = Field(json_schema_extra={"enum": list(engine.CITATION_KINDS)})
    text: str
    grade: str | None = Field(None, description="the source's own grade, where it gives one")
    url: str | None = None


class FollowUpOut(Schema):
    code: str
    due: str = Field(json_schema_extra={"format": "date"})
    status: str = Field(json_schema_extra={"enum": list(engine.FOLLOW_UP_STATUSES)})
    rule: str | None
    title: str


class ResultDocument(Schema):
    as_of: str = Field(json_schema_extra={"format": "date"})
    rule_set: str
    pathway: str = Field(json_schema_extra={"enum": list(engine.PATHWAYS)})
    context: list[str] = Field(
        default_factory=list,
        description="pregnant, child, under_5, renal_function_unknown, hypercalcaemia, "
        "alp_not_recent (spec §2)",
    )
    findings: FindingsOut
    recommendations: list[RecommendationOut]
    suppressed: list[SuppressedOut] = Field(default_factory=list)
    follow_ups: list[FollowUpOut]
    sources: dict[str, SourceOut] = Field(
        default_factory=dict, description="every citation key the result uses (spec §8)"
    )


_UNAUTHORIZED = "No token, or an unknown, revoked or expired one."
_FORBIDDEN = "The token lacks the scope this operation needs."
_ERROR_RESPONSES: dict[int, Any] = {401: ErrorDocument, 403: ErrorDocument, 500: ErrorDocument}
_DESCRIPTIONS: dict[int, dict[str, str]] = {
    401: {"description": _UNAUTHORIZED},
    403: {"description": _FORBIDDEN},
    500: {
        "description": (
            "An unexpected error (logged on the server), or the rule set in force fails on "
            "this case: the error names the fault."
        )
    },
}

EXAMPLE_CASE: dict[str, Any] = {
    "as_of": "2026-11-22",
    "patient": {"birth_date": "1950-03-02", "sex": "female", "weight_kg": 64},
    "labs": [
        {"test": "alp", "value": 412, "unit": "U/L", "collected_at": "2026-06-01T08:15"},
        {"test": "alp", "value": 260, "unit": "U/L", "collected_at": "2026-10-01T08:40"},
    ],
    "clinical": {
        "diagnoses": ["paget"],
        "therapies": [{"agent": "alendronate", "start": "2026-06-10", "end": None}],
    },
}


def _json(document: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(
        json_text(document, indent=2) + "\n",
        status=status,
        content_type="application/json",
    )


@api.post(
    "/assess",
    summary="Assess a case document",
    description="Scope: `assess`. Nothing is stored; the body is the case document (spec §1).",
    auth=scope(ApiToken.Scope.ASSESS),
    response={
        200: ResultDocument,
        400: ErrorDocument,
        413: ErrorDocument,
        **_ERROR_RESPONSES,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": _SCHEMAS + "CaseDocument"},
                    "example": EXAMPLE_CASE,
                }
            },
        },
        "responses": {
            200: {"description": "The result document (spec §6)."},
            400: {"description": "The case document is invalid: every error with its field."},
            413: {"description": "The body is larger than the server accepts."},
            **_DESCRIPTIONS,
        },
    },
)
def assess(request: HttpRequest) -> HttpResponse:
    # The raw body goes through engine.parse_case_json: the one validation path of the
    # command, the API and the forms.
    try:
        result = assess_json(request.body)
    except engine.CaseInvalid as invalid:
        return errors_response(invalid.errors)
    return HttpResponse(engine.render_result_json(result), content_type="application/json")


def _patient(request: HttpRequest, pk: int, action: str) -> Patient:
    return patient_for_user(request, pk, action=action, prefetch=("lab_results", "therapies"))


_PATIENT_RESPONSES = {404: ErrorDocument, 422: ErrorDocument, **_ERROR_RESPONSES}
_PATIENT_DESCRIPTIONS = {
    404: {"description": "No such patient in your clinics."},
    422: {"description": "The patient id is not a positive 64-bit integer."},
    **_DESCRIPTIONS,
}
PatientId = Path(..., ge=1, le=MAX_PK, description="the patient's id")


@api.get(
    "/patients/{pk}/case",
    summary="A stored patient as a case document (export)",
    description="Scope: `read`. The read is recorded in the access log.",
    auth=scope(ApiToken.Scope.READ),
    response={200: None, **_PATIENT_RESPONSES},
    openapi_extra={
        "responses": {
            200: {
                "description": "The case document (spec §1), as_of today.",
                "content": {"application/json": {"schema": {"$ref": _SCHEMAS + "CaseDocument"}}},
            },
            **_PATIENT_DESCRIPTIONS,
        }
    },
)
def patient_case(request: HttpRequest, pk: int = PatientId) -> HttpResponse:
    return _json(patient_to_document(_patient(request, pk, "api: case")))


@api.get(
    "/patients/{pk}/assessment",
    summary="The result document for a stored patient",
    description="Scope: `read`. The read is recorded in the access log.",
    auth=scope(ApiToken.Scope.READ),
    response={200: ResultDocument, **_PATIENT_RESPONSES},
    openapi_extra={
        "responses": {
            200: {"description": "The result document (spec §6) as of today."},
            **_PATIENT_DESCRIPTIONS,
        }
    },
)
def patient_assessment(request: HttpRequest, pk: int = PatientId) -> HttpResponse:
    patient = _patient(request, pk, "api: assessment")
    result = with_marked_done(assess_patient(patient), patient.follow_ups.all())
    return HttpResponse(engine.render_result_json(result), content_type="application/json")


# ---------------------------------------------------------------------------------------------
# HL7 v2 lab results over HTTP (the same path as the MLLP listener, pathways/feed.py).

HL7_CONTENT_TYPES = ("application/hl7-v2", "text/plain")
# One message: an MSH segment first (segments separated by CR; LF is accepted too).
HL7_BODY = {"type": "string", "pattern": "^MSH\\|"}


@api.post(
    "/hl7",
    summary="Send an HL7 v2 ORU^R01 message (lab results)",
    description=(
        "Scope: `hl7`. The body is one HL7 v2 message (`application/hl7-v2` or `text/plain`, "
        "UTF-8); the answer is its ACK: `MSA|AA` stored (unmatched results included), `AE` "
        "understood but not storable (MSA-3 says why), `AR` not HL7. The message's sending "
        "facility (MSH-4) must be an HL7 feed of one of your clinics."
    ),
    auth=scope(ApiToken.Scope.HL7),
    response={200: None, 400: None, 413: ErrorDocument, 415: ErrorDocument, **_ERROR_RESPONSES},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {ctype: {"schema": HL7_BODY} for ctype in HL7_CONTENT_TYPES},
        },
        "responses": {
            200: {
                "description": "The ACK: MSA-1 AA (stored) or AE (not storable, MSA-3 says why).",
                "content": {"application/hl7-v2": {"schema": {"type": "string"}}},
            },
            400: {
                "description": "Not an HL7 message (or not UTF-8): the AR ACK, with the reason.",
                "content": {"application/hl7-v2": {"schema": {"type": "string"}}},
            },
            413: {"description": "The body is larger than the server accepts."},
            415: {"description": "The body is not application/hl7-v2 or text/plain."},
            **_DESCRIPTIONS,
        },
    },
)
def hl7_message(request: HttpRequest) -> HttpResponse:
    content_type = request.content_type or ""
    if content_type not in HL7_CONTENT_TYPES:
        message = f"Content-Type must be one of {', '.join(HL7_CONTENT_TYPES)}"
        return error_document(415, ("Content-Type", message))
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        text = request.body.decode("utf-8", errors="replace")
        ack = hl7v2.build_ack(text, "AR", "the message is not UTF-8 text")
        return HttpResponse(ack, status=400, content_type="application/hl7-v2; charset=utf-8")
    outcome = feed.receive(
        text,
        via="api",
        user=request.user,
        user_clinics={clinic.pk for clinic in user_clinics(request.user)},
    )
    # AR (not HL7) is a bad request; AA and AE are answers about a message that was read.
    status = 400 if outcome.code == "AR" else 200
    return HttpResponse(
        outcome.ack, status=status, content_type="application/hl7-v2; charset=utf-8"
    )


# ---------------------------------------------------------------------------------------------
# FHIR R4: a patient's Bundle in (transaction or collection), `$everything` out (pathways/fhir.py).

FHIR_CONTENT_TYPES = ("application/fhir+json", "application/json")
FHIR_JSON = "application/fhir+json; charset=utf-8"
_FHIR_RESOURCE = {"type": "object", "required": ["resourceType"]}
# What the FHIR import answers with for its own errors (fhir.operation_outcome).
OPERATION_OUTCOME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A FHIR R4 OperationOutcome: each issue names the FHIRPath of a problem.",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
        "issue": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["severity", "code"],
                "properties": {
                    "severity": {"type": "string"},
                    "code": {"type": "string"},
                    "diagnostics": {"type": "string"},
                    "expression": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}
_OUTCOME_CONTENT = {"application/fhir+json": {"schema": {"$ref": _SCHEMAS + "OperationOutcome"}}}


def _fhir(document: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(json_text(document), status=status, content_type=FHIR_JSON)


def _outcome(status: int, issues: list[fhir.Issue]) -> HttpResponse:
    return _fhir(fhir.operation_outcome(issues), status)


def _import_clinic(request: HttpRequest, slug: str | None) -> Clinic | HttpResponse:
    clinics = user_clinics(request.user)
    if not clinics:  # memberships removed: no slug names a clinic it may import into
        message = "this account belongs to no clinic: an administrator must add it to one"
        return _outcome(403, [fhir.Issue("clinic", message, code="forbidden")])
    if slug:
        chosen = next((clinic for clinic in clinics if clinic.slug == slug), None)
        if chosen is None:
            return _outcome(
                404, [fhir.Issue("clinic", f"{slug}: not one of your clinics", code="not-found")]
            )
        return chosen
    if len(clinics) == 1:
        return clinics[0]
    names = ", ".join(clinic.slug for clinic in clinics)
    message = f"you belong to several clinics ({names}): name one with ?clinic=SLUG"
    return _outcome(400, [fhir.Issue("clinic", message, code="required")])


@api.post(
    "/fhir",
    summary="Import a patient's FHIR R4 Bundle (transaction or collection)",
    description=(
        "Scope: `write`. One patient's Bundle (`application/fhir+json`): Patient, Observations "
        "(LOINC), Conditions (ICD-10-CM), MedicationStatements/Requests (ATC), as listed in the "
        "README. It applies as a whole or not at all; the same Bundle again changes nothing. "
        "`clinic`: the slug of the clinic it belongs to (needed when you are in several)."
    ),
    auth=scope(ApiToken.Scope.WRITE),
    response={
        200: None,
        400: None,
        404: None,
        409: None,
        413: ErrorDocument,
        415: ErrorDocument,
        **_ERROR_RESPONSES,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {ctype: {"schema": _FHIR_RESOURCE} for ctype in FHIR_CONTENT_TYPES},
        },
        "responses": {
            200: {
                "description": (
                    "Applied: a transaction-response Bundle (transaction) or an OperationOutcome "
                    "(collection) saying what changed."
                ),
                "content": {"application/fhir+json": {"schema": _FHIR_RESOURCE}},
            },
            400: {
                "description": (
                    "Refused, nothing stored: an OperationOutcome naming the FHIRPath of each "
                    "problem."
                ),
                "content": _OUTCOME_CONTENT,
            },
            404: {
                "description": "The clinic is not one of yours (OperationOutcome).",
                "content": _OUTCOME_CONTENT,
            },
            409: {
                "description": (
                    "Refused, nothing stored: another write landed meanwhile (the same new MRN, "
                    "or the patient saved since it was read); the same Bundle sent again may "
                    "apply (OperationOutcome)."
                ),
                "content": _OUTCOME_CONTENT,
            },
            413: {"description": "The body is larger than the server accepts."},
            415: {"description": "The body is not application/fhir+json or application/json."},
            **_DESCRIPTIONS,
            403: {
                "description": (
                    "The token lacks the scope this operation needs (application/json), or its "
                    "account belongs to no clinic (an OperationOutcome)."
                ),
                "content": _OUTCOME_CONTENT,
            },
            500: {
                "description": (
                    "The rule set in force fails on the Bundle's case: nothing stored, an "
                    "OperationOutcome names the fault (application/fhir+json). Any other "
                    "unexpected error (logged on the server) is an ErrorDocument "
                    "(application/json)."
                ),
                "content": _OUTCOME_CONTENT,
            },
        },
    },
)
def fhir_import(request: HttpRequest, clinic: str | None = None) -> HttpResponse:
    content_type = request.content_type or ""
    if content_type not in FHIR_CONTENT_TYPES:
        message = f"Content-Type must be one of {', '.join(FHIR_CONTENT_TYPES)}"
        return error_document(415, ("Content-Type", message))
    try:
        data = engine.read_json(request.body)
    except RecursionError:
        return _outcome(
            400, [fhir.Issue("Bundle", "not JSON: nested too deeply", code="structure")]
        )
    except (UnicodeDecodeError, ValueError) as error:
        return _outcome(400, [fhir.Issue("Bundle", f"not JSON: {error}", code="structure")])
    target = _import_clinic(request, clinic)
    if isinstance(target, HttpResponse):
        return target
    try:
        outcome = fhir.import_bundle(data, clinic=target, user=request.user, path=request.path)
    except fhir.BundleConflict as conflict:
        return _outcome(409, conflict.issues)
    except fhir.BundleInvalid as invalid:
        return _outcome(400, invalid.issues)
    except engine.RuleEvaluationError as fault:  # nothing stored, as the case form refuses it
        logger.error("rule set in force failed on a FHIR import: %s", fault)
        message = f"not stored: {rule_fault_text(current_rule_set(), fault)}"
        return _outcome(500, [fhir.Issue("Bundle", message, code="exception")])
    entries = len(data.get("entry") or []) if isinstance(data, dict) else 0
    response = _fhir(fhir.import_response(outcome, str(data.get("type")), entries))
    # The Patient resource's URL (fhir_patient below), read with the same token's read scope.
    response["Location"] = f"/api/v1/fhir/Patient/{outcome.patient.pk}"
    return response


@api.get(
    "/fhir/Patient/{pk}",
    summary="A stored patient as a FHIR R4 Patient resource",
    description=(
        "Scope: `read`. The Patient resource as `$everything` writes it (the URL an import's "
        "`Location` header names). The read is in the access log."
    ),
    auth=scope(ApiToken.Scope.READ),
    response={200: None, **_PATIENT_RESPONSES},
    openapi_extra={
        "responses": {
            200: {
                "description": "The Patient resource.",
                "content": {"application/fhir+json": {"schema": _FHIR_RESOURCE}},
            },
            **_PATIENT_DESCRIPTIONS,
        }
    },
)
def fhir_patient(request: HttpRequest, pk: int = PatientId) -> HttpResponse:
    return _fhir(fhir.export_patient(_patient(request, pk, "api: fhir Patient")))


@api.get(
    "/fhir/Patient/{pk}/$everything",
    summary="A stored patient as a FHIR R4 Bundle",
    description=(
        "Scope: `read`. The Patient, its Observations, Conditions and MedicationStatements "
        "(type collection: POST it to /api/v1/fhir as it is). The read is in the access log."
    ),
    auth=scope(ApiToken.Scope.READ),
    response={200: None, **_PATIENT_RESPONSES},
    openapi_extra={
        "responses": {
            200: {
                "description": "A Bundle of type collection.",
                "content": {"application/fhir+json": {"schema": _FHIR_RESOURCE}},
            },
            **_PATIENT_DESCRIPTIONS,
        }
    },
)
def fhir_everything(request: HttpRequest, pk: int = PatientId) -> HttpResponse:
    patient = _patient(request, pk, "api: fhir $everything")
    base = request.build_absolute_uri("/api/v1/fhir/")
    return _fhir(fhir.export_everything(patient, base=base))
