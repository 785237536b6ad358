"""The one entry point every interface uses to assess a case against the rule set in force."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, timedelta
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


def stored_follow_up(
    item: engine.FollowUp, stored: Iterable[FollowUp]
) -> tuple[FollowUp | None, bool]:
    """The stored follow-up an engine item is, and whether it is that item's own row (same
    code and due date) rather than an earlier one of the same code a clinician marked done
    within the item's window (spec §5: an event is done when recorded on or after due - 14
    days). A follow-up due on the assessment date (dental-exam) is due a day later every day:
    marked done (or declined) yesterday, it is still done today, not a new one to do."""
    earlier: FollowUp | None = None
    window_start = item.due - timedelta(days=engine.DONE_WINDOW_DAYS)
    for follow_up in stored:
        if follow_up.code != item.code:
            continue
        if follow_up.due == item.due:
            return follow_up, True
        done_on = follow_up.done_on or (
            timezone.localdate(follow_up.completed_at) if follow_up.completed_at else None
        )
        if (
            done_on is not None
            and not follow_up.completed_by_result
            and done_on >= window_start
            and (earlier is None or follow_up.due > earlier.due)
        ):
            earlier = follow_up
    return earlier, False


def with_marked_done(result: engine.Result, stored: Iterable[FollowUp]) -> engine.Result:
    """The result with the follow-ups a clinician marked done shown done (spec §5: an event
    is done only when a clinician marks it so), as the patient page shows them."""
    rows = list(stored)
    follow_ups = tuple(
        replace(item, status=follow_up_status(item, stored_follow_up(item, rows)[0]))
        for item in result.follow_ups
    )
    return replace(result, follow_ups=follow_ups)
