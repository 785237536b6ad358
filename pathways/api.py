"""The JSON API (django-ninja): assess a case document; read a stored patient's case and result."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import NinjaAPI
from ninja.security import APIKeyHeader

from pathways import engine
from pathways.access import patient_for_user
from pathways.assessment import assess_json, assess_patient
from pathways.cases import patient_to_document
from pathways.models import ApiToken, Patient


class TokenAuth(APIKeyHeader):
    """`Authorization: Token <key>`; only the key's SHA-256 digest is stored."""

    param_name = "Authorization"

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        if not key or not key.startswith("Token "):
            return None
        token = ApiToken.authenticate(key.removeprefix("Token ").strip())
        if token is None:
            return None
        request.user = token.user
        return token.user


api = NinjaAPI(
    title="alpcare API",
    version="1",
    description="Assess elevated-ALP cases against the published rule set (spec/pathways.md).",
    auth=TokenAuth(),
    urls_namespace="api",
    docs_decorator=login_required,
)


def _json(document: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(
        json.dumps(document, indent=2, ensure_ascii=False) + "\n",
        status=status,
        content_type="application/json",
    )


def errors_response(errors: list[engine.FieldError]) -> JsonResponse:
    return JsonResponse(
        {"errors": [{"field": e.field, "message": e.message} for e in errors]}, status=400
    )


@api.post(
    "/assess",
    summary="Assess a case document",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": engine.case_json_schema()}},
        },
        "responses": {
            "200": {"description": "The result document (spec §6)."},
            "400": {"description": '{"errors": [{"field": "...", "message": "..."}]}'},
            "401": {"description": "Missing or invalid API token."},
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


@api.get("/patients/{pk}/case", summary="A stored patient as a case document (export)")
def patient_case(request: HttpRequest, pk: int) -> HttpResponse:
    return _json(patient_to_document(_patient(request, pk, "api: case")))


@api.get("/patients/{pk}/assessment", summary="The result document for a stored patient")
def patient_assessment(request: HttpRequest, pk: int) -> HttpResponse:
    result = assess_patient(_patient(request, pk, "api: assessment"))
    return HttpResponse(engine.render_result_json(result), content_type="application/json")
