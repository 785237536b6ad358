"""CDS Hooks 2.0 service: alpcare's advice as cards inside the EHR.

`GET /cds-services` (discovery, public: no patient data), `POST /cds-services/alp-patient-view`,
`POST /cds-services/alp-order-sign` and `POST /cds-services/{id}/feedback`. The EHR's FHIR
resources (prefetch, else fetched from its fhirServer) become a case document
(interop/fhir_case.py) that the same engine assesses against the rule set in force; the cards
are its recommendations. The hook's data is used for the call only: nothing of it is stored,
only which rule each card came from (for feedback) and the jti of the JWT (replays).
"""

from __future__ import annotations

import copy
import dataclasses
import http.client
import logging
import math
import re
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from fhir.resources.R4B.medicationrequest import MedicationRequest
from pydantic import ValidationError

from pathways import engine
from pathways.advice import citation_text
from pathways.cds_auth import LEEWAY_SECONDS, CdsAuthError, authenticate
from pathways.cds_models import CdsCard, CdsClient, CdsFeedback
from pathways.engine.facts.renal import select_dose_band
from pathways.engine.templates import format_number
from pathways.engine.vocabulary import (
    OVERRIDE_REASON_NEEDING_TEXT,
    OVERRIDE_REASON_SYSTEM,
    OVERRIDE_REASONS,
)
from pathways.interop.fhir_case import (
    ALL_OBSERVATION_LOINC,
    LOINC,
    FhirCase,
    agent_of,
    case_from_fhir,
    medication_concept,
    nul_path,
)
from pathways.listing import listed
from pathways.models import CardAction, Patient
from pathways.rules import current_rule_set, rule_fault_text

logger = logging.getLogger(__name__)

PATIENT_VIEW: Final = "alp-patient-view"
ORDER_SIGN: Final = "alp-order-sign"
SUMMARY_MAX: Final = 139  # CDS Hooks: summary "<140-character", so at most 139
RULE_SYSTEM: Final = "https://alpcare.example.org/fhir/CodeSystem/rule"
# interop.md "Priorities to CDS Hooks indicators".
INDICATOR: Final = {"urgent": "critical", "high": "warning", "routine": "info", "info": "info"}
CARD_PRIORITIES: Final = ("urgent", "high")  # one card each; the rest share a summary card
FHIR_TIMEOUT_SECONDS: Final = 5
FHIR_MAX_PAGES: Final = 20

_OBSERVATION_CODES = ",".join(f"{LOINC}|{code}" for code in ALL_OBSERVATION_LOINC)
PREFETCH: Final = {
    "patient": "Patient/{{context.patientId}}",
    "observations": f"Observation?patient={{{{context.patientId}}}}&code={_OBSERVATION_CODES}",
    "conditions": "Condition?patient={{context.patientId}}",
    "medicationRequests": "MedicationRequest?patient={{context.patientId}}",
    "medicationStatements": "MedicationStatement?patient={{context.patientId}}",
}

# Order-sign: the bone-targeted agents it reacts to, and the catalogue's rules about each
# (dose by CrCl, withhold on a creatinine rise, not below the CrCl threshold, renal function
# before the infusion, calcium and vitamin D, dental examination, not in MGUS).
ORDER_SIGN_RULES: Final[dict[str, tuple[str, ...]]] = {
    "zoledronic_acid": (
        "za-not-recommended-renal",
        "iv-bp-withhold-creatinine-rise",
        "measure-renal-first",
        "za-dose",
        "iv-bp-renal-before-infusion",
        "correct-before-antiresorptive",
        "antiresorptive-dental-exam",
        "mgus-no-bisphosphonate",
        "calcium-vitamin-d",
        "mm-monitor-calcium",
    ),
    "pamidronate": (
        "iv-bp-withhold-creatinine-rise",
        "measure-renal-first",
        "iv-bp-renal-before-infusion",
        "correct-before-antiresorptive",
        "antiresorptive-dental-exam",
        "mgus-no-bisphosphonate",
        "calcium-vitamin-d",
        "mm-monitor-calcium",
    ),
    "denosumab": (
        "correct-before-antiresorptive",
        "antiresorptive-dental-exam",
        "calcium-vitamin-d",
        "mm-monitor-calcium",
    ),
    # The catalogue names it: Paget's treatment below CrCl 35, MGUS, calcium and vitamin D.
    "alendronate": (
        "paget-bp-renal-contraindicated",
        "mgus-no-bisphosphonate",
        "calcium-vitamin-d",
    ),
}
# Rules about starting a treatment, read from the case as it stands: the draft counted as a
# course on record stands them down ("no bisphosphonate course on record").
START_RULES: Final[dict[str, tuple[str, ...]]] = {
    "zoledronic_acid": ("paget-bp-renal-contraindicated",),
    "alendronate": ("paget-bp-renal-contraindicated",),
}
# The oncology label's CrCl dose table (Zometa 4 mg): not for the single 5 mg infusion of
# Paget's disease (Reclast), which has its own rules (paget-*). Its 30 mL/min floor holds for
# every dose ("never offered below CrCl 30 by any rule", spec §0).
ONCOLOGY_ONLY_RULES: Final = ("za-dose",)
PAGET_ZOLEDRONIC_ACID_MG: Final = 5.0
DOSE_ADJUST_RULE: Final = "za-dose"


class HookError(Exception):
    """A request the service cannot answer: (status, message naming the field)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------------------------------
# Discovery.


def discovery_document() -> dict[str, Any]:
    return {
        "services": [
            {
                "hook": "patient-view",
                "id": PATIENT_VIEW,
                "title": "alpcare: elevated alkaline phosphatase",
                "description": "Workup and follow-up advice for an elevated ALP (bone workup "
                "and multiple myeloma pathways), from alpcare's published rule set.",
                "prefetch": PREFETCH,
                "usageRequirements": "Register the EHR as a CDS Hooks client in alpcare's admin "
                "(issuer, JWKS, clinic).",
            },
            {
                "hook": "order-sign",
                "id": ORDER_SIGN,
                "title": "alpcare: bone-targeted agent order check",
                "description": "For a draft order of zoledronic acid, pamidronate or denosumab: "
                "renal dose, withholding, renal function, calcium and vitamin D, dental "
                "examination, as alpcare's rules say.",
                "prefetch": PREFETCH,
                "usageRequirements": "Register the EHR as a CDS Hooks client in alpcare's admin "
                "(issuer, JWKS, clinic).",
            },
        ]
    }


# ---------------------------------------------------------------------------------------------
# The hook's FHIR data: prefetch, else the EHR's FHIR server.


def _resources_of(value: Any, where: str) -> list[dict[str, Any]]:
    """A FHIR resource, or a Bundle's resources. Anything else raises ValueError naming
    ``where``: read as "no resources", it would be advice on a record with its data missing."""
    if not _is_resource(value):
        raise ValueError(f"{where}: not a FHIR resource (an object with a resourceType)")
    if value.get("resourceType") != "Bundle":
        return [value]
    entries = value.get("entry") or []
    if not isinstance(entries, list):
        raise ValueError(f"{where}.entry: not a list of entries")
    resources = []
    for index, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or (resource is not None and not _is_resource(resource)):
            raise ValueError(f"{where}.entry[{index}]: not an entry with a FHIR resource")
        if resource is not None:
            resources.append(resource)
    return resources


def _is_resource(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("resourceType"), str)


def _is_outcome(value: Any) -> bool:
    return isinstance(value, dict) and value.get("resourceType") == "OperationOutcome"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A FHIR server's redirect is an error, not followed: urllib would send the EHR's access
    token along to wherever it points, a host the client never named."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError with the 3xx status


_FHIR_OPENER = urllib.request.build_opener(_NoRedirects)


# What reading the EHR's FHIR server can raise: unreachable or timing out (OSError, URLError),
# not HTTP (a bad status line, a body cut short), not JSON or nested too deep for the reader.
FHIR_READ_ERRORS = (
    OSError,
    ValueError,
    urllib.error.URLError,
    http.client.HTTPException,
    RecursionError,
)


def _fhir_get(url: str, access_token: str | None) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"Accept": "application/fhir+json"})
    if access_token:
        request.add_header("Authorization", f"Bearer {access_token}")
    with _FHIR_OPENER.open(request, timeout=FHIR_TIMEOUT_SECONDS) as response:
        data = engine.read_json(response.read())
    if not isinstance(data, dict):
        raise ValueError("not a FHIR resource")
    return data


def _next_page(data: Any) -> str | None:
    """A searchset Bundle's next link (CDS Hooks 2.0: a prefetch result may be paged too)."""
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        return None
    links = data.get("link")
    if not isinstance(links, list):
        return None
    return next(
        (
            link.get("url")
            for link in links
            if isinstance(link, dict) and link.get("relation") == "next"
        ),
        None,
    )


def _fetch(
    fhir_server: str, url: str | None, access_token: str | None, pages: int = FHIR_MAX_PAGES
) -> list[dict[str, Any]]:
    """Every resource from ``url`` on, following next links on the FHIR server: all of them or
    an error, never the first pages as if they were the whole record."""
    base = fhir_server.rstrip("/") + "/"
    resources: list[dict[str, Any]] = []
    for _page in range(pages):
        if url is None:
            return resources
        if not isinstance(url, str) or not url.startswith(base):
            raise ValueError(f"a next page outside {base}")
        data = _fhir_get(url, access_token)
        if _is_outcome(data):
            raise ValueError("the server answered with an OperationOutcome")
        resources += _resources_of(data, "its answer")
        url = _next_page(data)
    if url is not None:
        raise ValueError(f"more than {FHIR_MAX_PAGES} pages of results")
    return resources


def _allowed_fhir_server(client: CdsClient, fhir_server: object) -> str:
    """The hook's fhirServer, if it is the one configured for the client (no open fetches)."""
    allowed = client.fhir_base_url.rstrip("/")
    if not isinstance(fhir_server, str) or not fhir_server:
        raise HookError(412, "prefetch incomplete and no fhirServer to fetch the rest from")
    if not allowed or fhir_server.rstrip("/") != allowed:
        raise HookError(
            412,
            "prefetch incomplete and fhirServer is not the FHIR server configured for "
            "this client in alpcare",
        )
    return fhir_server


def hook_resources(
    client: CdsClient, body: dict[str, Any], patient_id: str
) -> list[dict[str, Any]]:
    """Every resource the engine needs: prefetch where the EHR sent it (with the further pages
    of a paged search result), else fetched from its FHIR server."""
    prefetch = body.get("prefetch") if isinstance(body.get("prefetch"), dict) else {}
    assert isinstance(prefetch, dict)
    resources: list[dict[str, Any]] = []
    missing = []
    more_pages = []  # (prefetch key, its next page): the rest of a paged prefetch result
    for key, template in PREFETCH.items():
        # A key sent as null is the EHR saying it holds no such data: "If the CDS Client has no
        # data to populate a template prefetch key, the prefetch template key MUST have a value
        # of null" (CDS Hooks 2.0). An absent key, or an OperationOutcome (it could not read
        # that data), is fetched, never read as "the patient has none".
        if key in prefetch and prefetch[key] is None and key != "patient":
            continue
        if prefetch.get(key) is not None and not _is_outcome(prefetch[key]):
            try:
                resources += _resources_of(prefetch[key], f"prefetch.{key}")
            except ValueError as error:
                raise HookError(400, str(error)) from None
            if (url := _next_page(prefetch[key])) is not None:
                more_pages.append((f"prefetch.{key}", url))
        else:
            missing.append(template)
    if not missing and not more_pages:
        return resources
    fhir_server = _allowed_fhir_server(client, body.get("fhirServer"))
    authorization = body.get("fhirAuthorization")
    access_token = authorization.get("access_token") if isinstance(authorization, dict) else None
    for where, url in more_pages:
        try:  # the prefetched bundle was the first page
            resources += _fetch(fhir_server, url, access_token, pages=FHIR_MAX_PAGES - 1)
        except FHIR_READ_ERRORS as error:
            raise HookError(412, f"{where}: its next page could not be read ({error})") from None
    for template in missing:
        query = template.replace("{{context.patientId}}", urllib.parse.quote(patient_id, safe=""))
        try:
            resources += _fetch(fhir_server, fhir_server.rstrip("/") + "/" + query, access_token)
        except FHIR_READ_ERRORS as error:
            where = query.split("?")[0]
            raise HookError(412, f"fhirServer: {where} could not be read ({error})") from None
    return resources


def _all_about(resources: list[dict[str, Any]], patient_id: str) -> None:
    """Every resource is about the hook's patient: another patient's data is never merged in."""
    for resource in resources:
        kind, resource_id = resource.get("resourceType"), resource.get("id")
        subject = resource.get("subject")
        if kind == "Patient":
            about = f"Patient/{resource_id}"
        elif isinstance(subject, dict) and isinstance(subject.get("reference"), str):
            about = subject["reference"]
        else:
            continue  # no reference to compare (a search by patient returned it)
        if about != f"Patient/{patient_id}" and not about.endswith(f"/Patient/{patient_id}"):
            raise HookError(
                400,
                f"{kind}/{resource_id}: about {about}, not the hook's patient "
                f"(context.patientId {patient_id})",
            )


# ---------------------------------------------------------------------------------------------
# Cards.


@dataclass
class HookCall:
    client: CdsClient
    service: str
    base_url: str  # https://host, for links to alpcare
    rule_set: engine.RuleSet
    patient: Patient | None  # the clinic's patient with the EHR patient's MRN
    cards: list[CdsCard]


def _summary(text: str) -> str:
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1].rstrip() + "…"


def override_reasons() -> list[dict[str, str]]:
    return [
        {"system": OVERRIDE_REASON_SYSTEM, "code": code, "display": display}
        for code, display in OVERRIDE_REASONS.items()
    ]


def _citation_lines(rule_set: engine.RuleSet, keys: tuple[str, ...]) -> list[str]:
    """The cited sources as markdown lines, as alpcare's own card shows them (_sources.html):
    key, kind (spec §8: "the kind beside each citation"; a seed reads as a seed), text, grade."""
    texts = {citation.key: citation for citation in rule_set.citations}
    lines = []
    for key in keys:
        if key not in texts:
            continue
        citation = citation_text(key, texts[key])
        kind = f" ({citation['kind']})" if citation["kind"] else ""
        grade = f" Grade: {citation['grade']}." if citation["grade"] else ""
        link = f" ([source]({citation['url']}))" if citation["url"] else ""
        lines.append(f"- **{citation['key']}**{kind}: {citation['text']}{grade}{link}")
    return lines


def _card(
    call: HookCall,
    *,
    summary: str,
    indicator: str,
    detail: str,
    rule: engine.Recommendation | None,
) -> dict[str, Any]:
    issued = CdsCard(
        client=call.client,
        service=call.service,
        rule_code=rule.code if rule else "",
        rule_set_version=call.rule_set.version,
        patient=call.patient,
        issued_at=timezone.now(),
    )
    call.cards.append(issued)
    cited = f"; cites {', '.join(rule.citations)}" if rule and rule.citations else ""
    source: dict[str, Any] = {"label": f"alpcare rule set {call.rule_set.version}{cited}"}
    if rule is not None:
        source["topic"] = {"system": RULE_SYSTEM, "code": rule.code, "display": rule.title}
    card: dict[str, Any] = {
        "uuid": str(issued.uuid),
        "summary": _summary(summary),
        "indicator": indicator,
        "detail": detail,
        "source": source,
        "overrideReasons": override_reasons(),
    }
    if call.patient is not None:
        url = call.base_url + reverse("patient_detail", args=[call.patient.pk])
        card["links"] = [{"label": "Open the patient in alpcare", "url": url, "type": "absolute"}]
    return card


def _recommendation_card(call: HookCall, recommendation: engine.Recommendation) -> dict[str, Any]:
    lines = [f"**Why:** {recommendation.rationale}", ""]
    rule = call.rule_set.rule(recommendation.code)
    if rule is not None and rule.evidence_note:  # as alpcare's own card shows it
        lines += [f"**Evidence:** {rule.evidence_note}", ""]
    lines.append(f"Priority: {recommendation.priority} · rule `{recommendation.code}`")
    sources = _citation_lines(call.rule_set, recommendation.citations)
    if sources:
        lines += ["", "**Sources**", *sources]
    return _card(
        call,
        summary=recommendation.title,
        indicator=INDICATOR[recommendation.priority],
        detail="\n".join(lines),
        rule=recommendation,
    )


def _rest_card(call: HookCall, rest: list[engine.Recommendation]) -> dict[str, Any]:
    lines = []
    for recommendation in rest:
        lines.append(f"- **{recommendation.title}** ({recommendation.priority})  ")
        lines.append(f"  {recommendation.rationale}")
        # The evidence note and sources alpcare's own card shows, as on the other cards.
        rule = call.rule_set.rule(recommendation.code)
        if rule is not None and rule.evidence_note:
            lines += ["", f"  **Evidence:** {rule.evidence_note}"]
        sources = _citation_lines(call.rule_set, recommendation.citations)
        if sources:
            lines += ["", "  **Sources**", *(f"  {line}" for line in sources)]
    noun = "recommendation" if len(rest) == 1 else "recommendations"
    return _card(
        call,
        summary=f"alpcare: {len(rest)} further ALP {noun} (routine or for information)",
        indicator="info",
        detail="\n".join(lines),
        rule=None,
    )


def _note_card(call: HookCall, summary: str, lines: list[str]) -> dict[str, Any]:
    return _card(call, summary=summary, indicator="info", detail="\n".join(lines), rule=None)


LISTED = 20  # lines of errors or problems a card lists; it says how many more there are


def _listed(lines: list[str]) -> list[str]:
    return listed(lines, LISTED, lambda more: f"- and {more} more not listed here")


def _problems_card(call: HookCall, mapped: FhirCase) -> list[dict[str, Any]]:
    if not mapped.problems:
        return []
    lines = ["These parts of the record could not be read and were left out of the assessment:"]
    lines += _listed([f"- `{problem.path}`: {problem.message}" for problem in mapped.problems])
    return [_note_card(call, "alpcare left part of the record out of its assessment", lines)]


Assessed = tuple[engine.Result, engine.Facts]


def _new_start_dosing(facts: engine.Facts) -> engine.Facts:
    """The facts with spec §2's dosing CrCl of a zoledronic acid new start: not on it yet (the
    draft counted as a course started today would take the last CrCl before it, computed at
    that creatinine's age, for a baseline), so CrCl current, and the dose for it. The card's
    text, its condition (dosing CrCl ≥ 30) and its suggestion then read one CrCl."""
    values = {
        **facts.values,
        "za_dosing_crcl": facts["crcl_current"],
        "za_dosing_dose_mg": facts["za_dose_mg"],
        "za_dosing_dose": facts["za_dose"],
    }
    return dataclasses.replace(facts, values=values)


def _assess(
    call: HookCall, mapped: FhirCase, *, new_zoledronic_acid: bool = False
) -> tuple[Assessed | None, list[dict[str, Any]]]:
    """The engine's result (and facts) for the hook's case, or a card saying why there is none.
    ``new_zoledronic_acid``: the case counts a draft order for zoledronic acid as a course
    started today; it is dosed as a new start (_new_start_dosing)."""
    try:
        case = engine.parse_case(
            mapped.document, today=date.fromisoformat(mapped.document["as_of"])
        )
    except engine.CaseInvalid as invalid:
        lines = ["alpcare needs these to assess the patient:"]
        lines += _listed(
            [f"- `{error.field}`: {error.message}" for error in invalid.errors]
            + [f"- `{problem.path}`: {problem.message}" for problem in mapped.problems]
        )
        return None, [_note_card(call, "alpcare could not assess this patient", lines)]
    try:
        facts = None
        if new_zoledronic_acid:
            facts = _new_start_dosing(engine.compute_facts(case, call.rule_set))
        assessed = engine.assess_with_facts(case, call.rule_set, facts=facts)
        return assessed, _problems_card(call, mapped)
    except engine.RuleEvaluationError as fault:  # no advice: never read as "nothing to do"
        logger.error("rule set in force failed on a CDS Hooks case: %s", fault)
        lines = [f"No advice: {rule_fault_text(call.rule_set, fault)}"]
        summary = "alpcare could not assess this patient: its rule set has a fault"
        return None, [_card(call, summary=summary, indicator="warning", detail=lines[0], rule=None)]


def patient_view_cards(call: HookCall, mapped: FhirCase) -> list[dict[str, Any]]:
    assessed, notes = _assess(call, mapped)
    if assessed is None:
        return notes
    result = assessed[0]
    cards = [
        _recommendation_card(call, recommendation)
        for recommendation in result.recommendations
        if recommendation.priority in CARD_PRIORITIES
    ]
    rest = [r for r in result.recommendations if r.priority not in CARD_PRIORITIES]
    if rest:
        cards.append(_rest_card(call, rest))
    return cards + notes


# ---------------------------------------------------------------------------------------------
# Order-sign: a draft order of a bone-targeted agent.


@dataclass(frozen=True)
class DraftOrder:
    agent: str
    dose_mg: float | None
    resource: dict[str, Any]


def _dose_mg(resource: dict[str, Any]) -> float | None:
    for instruction in resource.get("dosageInstruction") or []:
        for dose_and_rate in instruction.get("doseAndRate") or []:
            quantity = dose_and_rate.get("doseQuantity") or {}
            unit = quantity.get("code") or quantity.get("unit")
            value = quantity.get("value")
            if isinstance(value, int | float) and unit == "mg":
                try:  # a JSON integer past float's range overflows; 1e400 reads as infinity
                    dose = float(value)
                except OverflowError:
                    dose = math.inf
                if not math.isfinite(dose):
                    raise HookError(400, "context.draftOrders: a doseQuantity.value past any dose")
                return dose
    return None


def draft_orders(context: dict[str, Any]) -> tuple[list[DraftOrder], list[str]]:
    """The draft orders of bone-targeted agents, and a line for each order whose medication
    cannot be read (a Medication referenced elsewhere): a card names those, never passed as
    checked, while the other orders are still checked."""
    orders = []
    unread_orders: list[str] = []
    drafts = context.get("draftOrders")
    if drafts is None:  # CDS Hooks order-sign: "draftOrders | REQUIRED"
        raise HookError(400, "context.draftOrders: required by order-sign")
    try:
        resources = _resources_of(drafts, "context.draftOrders")
    except ValueError as error:
        raise HookError(400, str(error)) from None
    for resource in resources:
        if resource.get("resourceType") != "MedicationRequest":
            continue
        try:
            request = MedicationRequest.model_validate(resource)
        except ValidationError as error:
            first = error.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            problem = first["msg"]
            if isinstance(first.get("input"), float) and not math.isfinite(first["input"]):
                problem = "a number past any value"  # JSON's 1e400, or an integer of 309 digits
            message = f"context.draftOrders MedicationRequest.{where}: {problem}"
            raise HookError(400, message) from None
        concept, unread = medication_concept(request)
        if unread is not None:
            name = f"MedicationRequest/{request.id}" if request.id else "a MedicationRequest"
            unread_orders.append(f"- {name}: medicationReference {unread}")
            continue
        agent = agent_of(concept)
        if agent in ORDER_SIGN_RULES:
            orders.append(DraftOrder(agent, _dose_mg(resource), resource))
    return orders, unread_orders


def _with_draft_therapies(
    document: dict[str, Any], orders: list[DraftOrder], today: date
) -> dict[str, Any]:
    """The draft order counts as a therapy starting today, unless that course is current."""
    document = copy.deepcopy(document)
    for order in orders:
        if not _currently_on(document, order.agent, today):
            document["clinical"]["therapies"].append(
                {"agent": order.agent, "start": today.isoformat(), "end": None}
            )
    return document


def _currently_on(document: dict[str, Any], agent: str, today: date) -> bool:
    return any(
        therapy["agent"] == agent
        and (therapy["end"] is None or date.fromisoformat(therapy["end"]) >= today)
        for therapy in document["clinical"]["therapies"]
    )


def _dosing_crcl(facts: engine.Facts, new_start: bool) -> float | None:
    """Spec §2 dosing CrCl, unrounded (a band edge is read as the engine reads it): the CrCl
    baseline while on zoledronic acid, else, not on it (the draft is a new start), CrCl
    current: never an old creatinine taken for a baseline."""
    if new_start:
        return facts["crcl_current"]
    return facts["za_dosing_crcl"]


_DOSE_TEXT = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*mg\b")


def _with_dose(resource: dict[str, Any], old_mg: float | None, new_mg: float) -> dict[str, Any]:
    """The draft order stating ``new_mg`` wherever it stated a dose in mg: every doseQuantity
    (its rate and timing kept) and the old dose in an instruction's text."""
    updated = copy.deepcopy(resource)
    instructions = updated.get("dosageInstruction") or [{}]
    updated["dosageInstruction"] = instructions
    quantity = {"value": new_mg, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}
    stated = False
    for instruction in instructions:
        for dose_and_rate in instruction.get("doseAndRate") or []:
            if "doseQuantity" in dose_and_rate:
                dose_and_rate["doseQuantity"] = dict(quantity)
                stated = True
        text = instruction.get("text")
        if isinstance(text, str) and old_mg is not None:
            instruction["text"] = _DOSE_TEXT.sub(
                lambda m: f"{new_mg:g} mg" if float(m.group(1)) == old_mg else m.group(0), text
            )
    if not stated:
        instructions[0].setdefault("doseAndRate", []).append({"doseQuantity": dict(quantity)})
    return updated


def _dose_suggestion(
    call: HookCall, order: DraftOrder, facts: engine.Facts, new_start: bool
) -> dict[str, Any] | None:
    """Update the draft to the label's dose for the dosing CrCl (spec §2, revision 2)."""
    crcl = _dosing_crcl(facts, new_start)
    if order.agent != "zoledronic_acid" or crcl is None:
        return None
    band = select_dose_band(call.rule_set.za_dose_bands, crcl)
    if band is None or band.dose_mg is None or band.dose_mg == order.dose_mg:
        return None
    updated = _with_dose(order.resource, order.dose_mg, band.dose_mg)
    label = f"Change the dose to {band.dose_mg:.1f} mg (CrCl {format_number(crcl)} mL/min)"
    return {
        "label": label,
        "uuid": str(uuid.uuid4()),
        "isRecommended": True,
        "actions": [{"type": "update", "description": label, "resource": updated}],
    }


def _before_the_orders(call: HookCall, document: dict[str, Any]) -> list[engine.Recommendation]:
    """The advice on the case as it stands (for START_RULES); none when it cannot be given
    (the case with the orders was assessed: its own note says why)."""
    try:
        case = engine.parse_case(document, today=date.fromisoformat(document["as_of"]))
        return list(engine.assess(case, call.rule_set).recommendations)
    except (engine.CaseInvalid, engine.RuleEvaluationError):
        return []


def order_sign_cards(
    call: HookCall, mapped: FhirCase, orders: list[DraftOrder], today: date
) -> list[dict[str, Any]]:
    if not orders:
        return []
    new_starts = {o.agent for o in orders if not _currently_on(mapped.document, o.agent, today)}
    before = _before_the_orders(call, mapped.document)
    mapped = FhirCase(
        document=_with_draft_therapies(mapped.document, orders, today),
        mrns=mapped.mrns,
        problems=mapped.problems,
    )
    assessed, notes = _assess(call, mapped, new_zoledronic_acid="zoledronic_acid" in new_starts)
    if assessed is None:
        return notes
    result, facts = assessed
    cards: list[dict[str, Any]] = []
    shown: set[str] = set()
    for number, order in enumerate(orders):
        relevant = set(ORDER_SIGN_RULES[order.agent])
        if order.agent == "zoledronic_acid" and order.dose_mg == PAGET_ZOLEDRONIC_ACID_MG:
            relevant -= set(ONCOLOGY_ONLY_RULES)
        new_start = order.agent in new_starts
        if new_start and _dosing_crcl(facts, new_start) is None:
            relevant.discard(DOSE_ADJUST_RULE)  # no dose without a known renal function (§0)
        starting = set(START_RULES.get(order.agent, ()))
        relevant |= starting
        advice = [r for r in before if r.code in starting] + [
            r for r in result.recommendations if r.code not in starting
        ]
        for recommendation in advice:
            # The dose card once per order (each its own dose); the others once per hook call.
            key = recommendation.code
            if key == DOSE_ADJUST_RULE:
                key += f"#{number}"
            if recommendation.code not in relevant or key in shown:
                continue
            shown.add(key)
            card = _recommendation_card(call, recommendation)
            suggestion = (
                _dose_suggestion(call, order, facts, new_start)
                if recommendation.code == DOSE_ADJUST_RULE
                else None
            )
            if suggestion is not None:
                card["suggestions"] = [suggestion]
                card["selectionBehavior"] = "at-most-one"
            cards.append(card)
    return cards + notes


# ---------------------------------------------------------------------------------------------
# Feedback.


def _feedback_rows(client: CdsClient, service: str, body: dict[str, Any]) -> list[CdsFeedback]:
    items = body.get("feedback")
    if not isinstance(items, list) or not items:
        raise HookError(400, "feedback: a non-empty list is required")
    if (where := nul_path(items, "feedback")) is not None:  # stored as text: never a NUL
        raise HookError(400, f"{where}: contains a NUL character (\\u0000)")
    rows = []
    for index, item in enumerate(items):
        path = f"feedback[{index}]"
        if not isinstance(item, dict):
            raise HookError(400, f"{path}: must be an object")
        try:
            card_uuid = uuid.UUID(str(item.get("card")))
        except ValueError:
            raise HookError(400, f"{path}.card: must be the uuid of a card") from None
        card = CdsCard.objects.filter(uuid=card_uuid, client=client, service=service).first()
        if card is None:
            raise HookError(400, f"{path}.card: no card {card_uuid} was issued to this client")
        outcome = item.get("outcome")
        if outcome not in CdsFeedback.Outcome.values:
            raise HookError(400, f"{path}.outcome: must be accepted or overridden")
        try:
            outcome_at = datetime.fromisoformat(str(item.get("outcomeTimestamp")))
        except ValueError:
            raise HookError(400, f"{path}.outcomeTimestamp: must be an ISO 8601 instant") from None
        if timezone.is_naive(outcome_at):
            raise HookError(400, f"{path}.outcomeTimestamp: must carry a time zone")
        try:
            outcome_at.astimezone(UTC)  # stored in UTC
        except OverflowError:
            raise HookError(400, f"{path}.outcomeTimestamp: outside the calendar in UTC") from None
        # "When the action was taken": on the card, so after it was issued and not after now
        # (give or take the clocks' skew). Stored as the action's time, a wrong one dated the
        # override into another period of the analytics.
        skew = timedelta(seconds=LEEWAY_SECONDS)
        if outcome_at > timezone.now() + skew:
            raise HookError(400, f"{path}.outcomeTimestamp: is in the future")
        if outcome_at < card.issued_at - skew:
            issued = card.issued_at.astimezone(UTC).isoformat(timespec="seconds")
            raise HookError(
                400, f"{path}.outcomeTimestamp: is before the card was issued ({issued})"
            )
        reason_code, comment = "", ""
        override = item.get("overrideReason")
        if override is not None and not isinstance(override, dict):
            raise HookError(400, f"{path}.overrideReason: must be an OverrideReason object")
        if outcome == CdsFeedback.Outcome.OVERRIDDEN and isinstance(override, dict):
            # "reason | CONDITIONAL | Required if user selected an override reason from the list
            # of reasons provided in the Card (instead of only leaving a userComment)": a
            # comment alone is an override with no coded reason.
            reason = override.get("reason")
            if reason is not None and not isinstance(reason, dict):
                raise HookError(400, f"{path}.overrideReason.reason: must be a Coding")
            reason = reason or {}
            reason_code = str(reason.get("code") or "")
            if reason and reason.get("system") not in (None, OVERRIDE_REASON_SYSTEM):
                raise HookError(
                    400, f"{path}.overrideReason.reason.system: must be {OVERRIDE_REASON_SYSTEM}"
                )
            if reason and reason_code not in OVERRIDE_REASONS:
                raise HookError(
                    400,
                    f"{path}.overrideReason.reason.code: must be one of "
                    f"{', '.join(OVERRIDE_REASONS)}",
                )
            comment = str(override.get("userComment") or "").strip()
            if reason_code == OVERRIDE_REASON_NEEDING_TEXT and not comment:
                raise HookError(
                    400, f"{path}.overrideReason.userComment: required with the reason other"
                )
        accepted = item.get("acceptedSuggestions") or []
        if not isinstance(accepted, list):
            raise HookError(400, f"{path}.acceptedSuggestions: must be a list")
        rows.append(
            CdsFeedback(
                card=card,
                outcome=outcome,
                override_reason=reason_code,
                override_comment=comment,
                accepted_suggestions=accepted,
                outcome_at=outcome_at,
                received_by=client,
            )
        )
    return rows


# ---------------------------------------------------------------------------------------------
# Views.

SERVICES: Final = (PATIENT_VIEW, ORDER_SIGN)
_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Cache-Control": "no-store",
}


def _json(data: Any, status: int = 200) -> JsonResponse:
    response = JsonResponse(data, status=status, json_dumps_params={"ensure_ascii": False})
    for header, value in _CORS.items():
        response[header] = value
    return response


def _error(status: int, message: str) -> JsonResponse:
    response = _json({"error": message}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return response


def _preflight() -> HttpResponse:
    response = HttpResponse(status=204)
    for header, value in _CORS.items():
        response[header] = value
    return response


def discovery(request: HttpRequest) -> HttpResponse:
    if request.method == "OPTIONS":
        return _preflight()
    if request.method != "GET":
        return _error(405, "GET only")
    return _json(discovery_document())


def _authenticated_body(
    request: HttpRequest, service_id: str, audiences: list[str]
) -> tuple[CdsClient, dict[str, Any]]:
    if service_id not in SERVICES:
        raise HookError(404, f"no CDS service {service_id!r}")
    try:
        client = authenticate(request, audiences)
    except CdsAuthError as error:
        raise HookError(401, str(error)) from None
    try:
        body = engine.read_json(request.body)
    except RequestDataTooBig:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raise HookError(413, f"(body): larger than this service reads ({limit} bytes)") from None
    except RecursionError:
        raise HookError(400, "(body): invalid JSON: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise HookError(400, f"(body): invalid JSON: {error}") from None
    if not isinstance(body, dict):
        raise HookError(400, "(body): must be a JSON object")
    return client, body


def _guarded(
    handler: Callable[[HttpRequest, str], HttpResponse],
) -> Callable[[HttpRequest, str], HttpResponse]:
    def view(request: HttpRequest, service_id: str) -> HttpResponse:
        if request.method == "OPTIONS":
            return _preflight()
        if request.method != "POST":
            return _error(405, "POST only")
        try:
            return handler(request, service_id)
        except HookError as error:
            return _error(error.status, str(error))

    view.__name__ = handler.__name__
    view.__doc__ = handler.__doc__
    return csrf_exempt(view)


def _service_url(request: HttpRequest, service_id: str) -> str:
    return request.build_absolute_uri(reverse("cds_service", args=[service_id]))


def _linked_patient(client: CdsClient, mapped: FhirCase) -> tuple[Patient | None, str]:
    """The clinic's patient with the hook patient's MRN, when exactly one has it; else none,
    and, when several have one of its MRNs, why the cards link to none of them."""
    # No stored MRN holds a NUL (PostgreSQL could not even compare one): such a value is none.
    values = [value for _system, value in mapped.mrns if "\x00" not in value]
    matches = list(Patient.objects.filter(clinic=client.clinic, mrn__in=values)) if values else []
    if len(matches) < 2:
        return (matches[0] if matches else None), ""
    mrns = ", ".join(sorted(patient.mrn for patient in matches))
    return None, (
        f"The EHR's patient: its MRNs are those of {len(matches)} patients in alpcare ({mrns}): "
        "the cards are linked to none of them."
    )


@_guarded
def service(request: HttpRequest, service_id: str) -> HttpResponse:
    """POST /cds-services/{id}: a hook call from a trusted EHR; answers with cards."""
    client, body = _authenticated_body(request, service_id, [_service_url(request, service_id)])
    expected_hook = "patient-view" if service_id == PATIENT_VIEW else "order-sign"
    if body.get("hook") != expected_hook:
        raise HookError(400, f"hook: must be {expected_hook} for {service_id}")
    context = body.get("context")
    if not isinstance(context, dict) or not isinstance(context.get("patientId"), str):
        raise HookError(400, "context.patientId: required")
    today = timezone.localdate()
    orders, unread_orders = draft_orders(context) if service_id == ORDER_SIGN else ([], [])
    _all_about([order.resource for order in orders], context["patientId"])
    if service_id == ORDER_SIGN and not orders and not unread_orders:
        return _json({"cards": []})  # no bone-targeted agent among the draft orders
    resources = hook_resources(client, body, context["patientId"])
    _all_about(resources, context["patientId"])
    mapped = case_from_fhir(
        resources,
        today=today,
        tz=timezone.get_current_timezone(),
        mrn_system=client.mrn_system,
    )
    patient, not_linked = _linked_patient(client, mapped)
    call = HookCall(
        client=client,
        service=service_id,
        base_url=request.build_absolute_uri("/").rstrip("/"),
        rule_set=current_rule_set(),
        patient=patient,
        cards=[],
    )
    if service_id == PATIENT_VIEW:
        cards = patient_view_cards(call, mapped)
    else:
        cards = order_sign_cards(call, mapped, orders, today)
    if unread_orders:
        lines = ["alpcare reads a medication by its ATC code (interop.md); these were not checked:"]
        summary = "alpcare could not read a draft order's medication: it was not checked"
        detail = "\n".join(lines + _listed(unread_orders))
        cards.append(_card(call, summary=summary, indicator="warning", detail=detail, rule=None))
    if not_linked:  # about the link, not about the record: not in "left out of the assessment"
        cards.append(
            _note_card(call, "alpcare could not tell which of its patients this is", [not_linked])
        )
    CdsCard.objects.bulk_create(call.cards)
    return _json({"cards": cards})


@_guarded
def feedback(request: HttpRequest, service_id: str) -> HttpResponse:
    """POST /cds-services/{id}/feedback: what the clinician did with alpcare's cards."""
    audiences = [
        _service_url(request, service_id),
        request.build_absolute_uri(reverse("cds_feedback", args=[service_id])),
    ]
    client, body = _authenticated_body(request, service_id, audiences)
    rows = _feedback_rows(client, service_id, body)
    with transaction.atomic():
        # Reports on one card are stored one request at a time, so that each reads the outcome
        # in force as the last one left it (in one order: two batches cannot deadlock).
        cards = CdsCard.objects.select_for_update().filter(pk__in={row.card_id for row in rows})
        list(cards.order_by("pk"))
        for row in rows:
            _feedback_store(row)
    return _json({})


def _feedback_store(row: CdsFeedback) -> None:
    """Keep the EHR's report as received (a resend once). The card's outcome in force is its
    latest by outcomeTimestamp (received last at the same instant): a report that replaces it
    takes its card action back; one older than it is kept as feedback only."""
    in_force = row.card.feedback.order_by("-outcome_at", "-pk").first()
    stored, created = CdsFeedback.objects.get_or_create(
        card=row.card,
        outcome=row.outcome,
        outcome_at=row.outcome_at,
        defaults={
            "override_reason": row.override_reason,
            "override_comment": row.override_comment,
            "accepted_suggestions": row.accepted_suggestions,
            "received_by": row.received_by,
        },
    )
    if not created:
        return  # a resent outcome counts once
    if in_force is not None:
        if in_force.outcome_at > stored.outcome_at:
            return  # arrived after a later report on the card: that one stays in force
        _card_action_supersede(in_force)
    _card_action_store(stored)


def _card_action_fields(feedback: CdsFeedback) -> dict[str, Any] | None:
    """What a card's feedback is in the one store of card actions; None for a card about an
    unknown patient or the summary card (kept as CDS feedback only)."""
    card = feedback.card
    if card.patient is None or not card.rule_code:
        return None
    overridden = feedback.outcome == CdsFeedback.Outcome.OVERRIDDEN
    return {
        "patient": card.patient,
        "code": card.rule_code,
        "kind": CardAction.Kind.OVERRIDE if overridden else CardAction.Kind.ACCEPT,
        "reason": feedback.override_reason if overridden else "",
        "reason_text": feedback.override_comment if overridden else "",
        "source": CardAction.Source.CDS,
        "at": feedback.outcome_at,
    }


def _card_action_store(feedback: CdsFeedback) -> None:
    """The one store of card actions (the worklist's): feedback on a card about a known patient
    counts in the rule analytics; it does not hide the card on alpcare's own screens."""
    fields = _card_action_fields(feedback)
    if fields is None:
        return
    CardAction.objects.create(
        **fields,
        clinic_id=fields["patient"].clinic_id,
        rule_set_version=feedback.card.rule_set_version,
        feedback=feedback,
    )


def _card_action_supersede(feedback: CdsFeedback) -> None:
    """Take back the card action of the outcome a later report replaced: kept, marked undone
    by no user (the EHR), so that it no longer counts in the rule analytics."""
    fields = _card_action_fields(feedback)
    if fields is None:
        return
    open_actions = CardAction.objects.select_for_update().filter(undone_at__isnull=True)
    action = open_actions.filter(feedback=feedback).first()
    if action is None:
        # Stored before actions named their report (migration 0037): the action like it. One
        # on another card about this rule and patient, reported alike at the same instant,
        # counts alike, so either may be taken back.
        action = open_actions.filter(**fields, feedback=None).order_by("pk").first()
    if action is not None:
        action.undone_at = timezone.now()
        action.save(update_fields=["undone_at"])  # one history row: when it was replaced
