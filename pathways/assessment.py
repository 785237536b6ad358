"""The one entry point every interface uses to assess a case against the rule set in force."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from django.utils import timezone

from pathways import engine
from pathways.cases import patient_to_case
from pathways.models import FollowUp, Patient
from pathways.rules import current_rule_set


def assess_document(data: object, *, rule_set: engine.RuleSet | None = None) -> engine.Result:
    """Parse (raising engine.CaseInvalid) and assess a decoded case document, against the set
    in force unless the caller already holds it (to show its citations too)."""
    case = engine.parse_case(data, today=timezone.localdate())
    return engine.assess(case, rule_set or current_rule_set())


@dataclass(frozen=True)
class Assessed:
    """A parsed case with its result and the facts behind it (the screens show the working)."""

    case: engine.Case
    result: engine.Result
    facts: engine.Facts


def assess_document_with_facts(data: object, *, rule_set: engine.RuleSet) -> Assessed:
    """``assess_document``, keeping the case and its facts (the case-entry live preview)."""
    case = engine.parse_case(data, today=timezone.localdate())
    result, facts = engine.assess_with_facts(case, rule_set)
    return Assessed(case=case, result=result, facts=facts)


def assess_json(text: str | bytes) -> engine.Result:
    case = engine.parse_case_json(text, today=timezone.localdate())
    return engine.assess(case, current_rule_set())


def assess_patient(
    patient: Patient, *, as_of: date | None = None, **prefetched: Any
) -> engine.Result:
    return engine.assess(patient_to_case(patient, as_of=as_of, **prefetched), current_rule_set())


def follow_up_status(item: engine.FollowUp, stored: FollowUp | None) -> str:
    """The engine's status, overridden by a completion recorded in alpcare ("mark done")."""
    if stored is not None and stored.completed_at is not None:
        return "done"
    return item.status


def with_marked_done(result: engine.Result, stored: Iterable[FollowUp]) -> engine.Result:
    """The result with the follow-ups a clinician marked done shown done (spec §5: an event
    is done only when a clinician marks it so), as the patient page shows them."""
    by_key = {(follow_up.code, follow_up.due): follow_up for follow_up in stored}
    follow_ups = tuple(
        replace(item, status=follow_up_status(item, by_key.get((item.code, item.due))))
        for item in result.follow_ups
    )
    return replace(result, follow_ups=follow_ups)
