"""Card actions: acknowledge, override with a coded reason, snooze until a date, and undo.

An action holds for the card's code while the patient's case and the card's wording stay as
they were when it was taken (both kept as digests on the action): a new or changed result,
therapy or clinical field, or a rule-set version that changes the card, brings the card back,
and the re-assessment that follows the change marks the action ended for good (taking the change
back does not revive it).
The calendar alone does not (a snooze returns on its date: the worklist re-assesses a
patient whose snooze has ended, services.snoozes_ended_reassess). Every action and undo is a stored
event with who and when (CardAction, with history); ``source`` keeps worklist and CDS Hooks
feedback in one store.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.db import transaction
from django.utils import timezone

from pathways import engine
from pathways.cases import patient_to_case
from pathways.engine.templates import template_names
from pathways.engine.vocabulary import PRIORITY_RANK
from pathways.models import OVERRIDE_REASONS, CardAction, LabResult, Patient, RuleSet, Therapy

REASON_CODES = frozenset(code for code, _ in OVERRIDE_REASONS)
ACTION_KINDS = ("acknowledge", "override", "snooze")
_PARAM = re.compile(r"params\.(\w+)")
_NAME = re.compile(r"[A-Za-z_]\w*")

# What a fact is computed with that its description does not name: parameters, and the rule
# set's reference tables ("tables.<name>", the engine.RuleSet field). The facts read from these
# follow through their descriptions. tests/test_card_digest.py checks the whole map against
# the engine: each parameter and table changed in turn, every fact that moves must name it.
_COMPUTED_WITH: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        ("rcv_pct", "rcv_rise_pct", "rcv_fall_pct"), ("rcv_cvi_pct", "rcv_cva_pct", "rcv_z")
    ),
    **dict.fromkeys(
        (
            "crcl_current",
            "crcl_current_date",
            "crcl_current_source",
            "crcl_method",
            "renal_function_unknown",
            "alp_elevated",
        ),
        ("recent_lab_days",),
    ),
    "alp_normal": ("recent_lab_days", "tables.uln_bands"),
    **dict.fromkeys(
        ("bone_alp_uln", "bone_alp_uln_source"), ("menopause_age_years", "tables.uln_bands")
    ),
    **dict.fromkeys(
        (
            "alp_uln",
            "alp_uln_source",
            "alp_source",
            "alt",
            "alt_uln",
            "bilirubin_uln",
            "bone_alp",
            "calcium_lln",
            "calcium_uln",
            "ggt_uln",
            "phosphate_lln",
            "pth_uln",
        ),
        ("tables.uln_bands",),
    ),
    **dict.fromkeys(("za_dose_mg", "za_dosing_dose_mg"), ("tables.za_dose_bands",)),
}
_TABLE = "tables."


def _fact_params() -> dict[str, frozenset[str]]:
    """Each fact's parameters and tables (see _COMPUTED_WITH), through the facts it is computed
    from: a description names both ("bone_liver_tests_abnormal": ... vitamin_d_deficient ...;
    "vitamin_d_deficient": ... params.vitamin_d_deficient_ng_ml)."""
    names = {fact.name for fact in engine.FACTS}
    direct = {
        fact.name: {*_PARAM.findall(fact.description), *_COMPUTED_WITH.get(fact.name, ())}
        for fact in engine.FACTS
    }
    reads = {
        fact.name: (set(_NAME.findall(_PARAM.sub("", fact.description))) & names) - {fact.name}
        for fact in engine.FACTS
    }
    params = {name: set(found) for name, found in direct.items()}
    changed = True
    while changed:  # to a fixed point: chains of any length, cycles included
        changed = False
        for name, others in reads.items():
            before = len(params[name])
            for other in others:
                params[name] |= params[other]
            changed = changed or len(params[name]) != before
    return {name: frozenset(found) for name, found in params.items()}


_FACT_PARAMS = _fact_params()


class CardActionInvalid(Exception):
    """Bad input for a card action; ``field`` names the form field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def case_digest(
    patient: Patient,
    *,
    labs: list[LabResult] | None = None,
    therapies: list[Therapy] | None = None,
) -> str:
    """The patient's case without its as-of date: changes with a result, therapy or field."""
    document = engine.case_to_document(patient_to_case(patient, labs=labs, therapies=therapies))
    document.pop("as_of", None)
    return _digest(document)


def card_params(rule: engine.Rule) -> list[str]:
    """The parameters (and reference tables, "tables.<name>") a card depends on: those its
    condition or escalation names, those the facts it reads or prints are computed with (each
    fact's description names them: "pth_latest ≥ params.pth_not_suppressed_pg_ml"; see
    _COMPUTED_WITH), and those its wording prints."""
    when = f"{rule.condition} {rule.escalate_when or ''}"
    names = set(_PARAM.findall(f"{when} {rule.title} {rule.rationale}"))
    printed = template_names(rule.title) + template_names(rule.rationale)
    for word in {*_NAME.findall(_PARAM.sub("", when)), *printed}:
        names |= _FACT_PARAMS.get(word, frozenset())
    return sorted(names)


def card_digest(rule_set: engine.RuleSet, recommendation: engine.Recommendation) -> str:
    """The card as the rule set defines it: priority, wording, evidence note, condition and
    the values of the parameters and tables it depends on (card_params; not the values of the
    facts it prints, nor the priority an escalation gives it today: both move with the
    calendar)."""
    rule = rule_set.rule(recommendation.code)
    priority = rule.priority if rule is not None else recommendation.priority
    parts: dict[str, Any] = {"code": recommendation.code, "priority": priority}
    if rule is not None:
        params = rule_set.parameter_values()
        parts.update(
            title=rule.title,
            rationale=rule.rationale,
            evidence_note=rule.evidence_note,
            condition=rule.condition,
            escalate=[rule.escalate_when, rule.escalate_to],
            params={
                name: getattr(rule_set, name[len(_TABLE) :])
                if name.startswith(_TABLE)
                else params.get(name)
                for name in card_params(rule)
            },
        )
    else:
        parts["title"] = recommendation.title
    return _digest(parts)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class ActiveActions:
    """The actions in force for one patient's current assessment, by card code, and those that
    stopped holding because the case or the card changed (``lapsed``: to be marked ended)."""

    by_code: dict[str, CardAction]
    lapsed: tuple[CardAction, ...] = ()

    def get(self, code: str) -> CardAction | None:
        return self.by_code.get(code)

    def first_open(self, result: engine.Result) -> engine.Recommendation | None:
        """The highest card nobody has acted on (the engine lists them by priority)."""
        return next((rec for rec in result.recommendations if rec.code not in self.by_code), None)

    def action_rank(self, result: engine.Result) -> int:
        """The rank of the highest card nobody has acted on (9: none)."""
        top = self.first_open(result)
        return 9 if top is None else engine.PRIORITY_RANK.get(top.priority, 9)

    def snooze_ends(self) -> date | None:
        """The first day a snooze in force ends (None: no snooze)."""
        ends = [
            action.snooze_until
            for action in self.by_code.values()
            if action.kind == CardAction.Kind.SNOOZE and action.snooze_until is not None
        ]
        return min(ends, default=None)


def active_actions(
    patient: Patient,
    result: engine.Result,
    rule_set: engine.RuleSet,
    *,
    today: date | None = None,
    actions: list[CardAction] | None = None,
    digest: str | None = None,
) -> ActiveActions:
    """The latest action per card that still holds (one query; none when nothing was done)."""
    if actions is None:
        actions = list(
            CardAction.objects.filter(
                patient=patient, undone_at__isnull=True, ended_at__isnull=True
            ).select_related("by")
        )
    if not actions:
        return ActiveActions({})
    today = today or timezone.localdate()
    digest = digest or case_digest(patient)
    acted = {action.code for action in actions}  # only these cards' digests are compared
    shown = {rec.code: rec for rec in result.recommendations if rec.code in acted}
    cards = {code: card_digest(rule_set, rec) for code, rec in shown.items()}
    earlier: dict[str, engine.RuleSet | None] = {}
    ranks = {rec.code: PRIORITY_RANK.get(rec.priority, 0) for rec in result.recommendations}
    by_code: dict[str, CardAction] = {}
    lapsed: list[CardAction] = []
    for action in sorted(actions, key=lambda a: (a.at, a.pk)):
        if action.source != CardAction.Source.WORKLIST:
            continue
        changed = action.case_digest != digest or (
            action.code in cards
            and _card_changed(action, rule_set, shown[action.code], cards[action.code], earlier)
        )
        if changed:
            lapsed.append(action)
        if action.code not in cards:
            continue
        holds = not changed
        # A card escalated since it was acted on (high then, urgent now) is back; one that
        # calmed down is not.
        if ranks[action.code] < PRIORITY_RANK.get(action.priority, 0):
            holds = False
        if action.kind == CardAction.Kind.SNOOZE and (action.snooze_until or today) <= today:
            holds = False
        if holds:
            by_code[action.code] = action
        else:
            by_code.pop(action.code, None)
    return ActiveActions(by_code, tuple(lapsed))


def _card_changed(
    action: CardAction,
    rule_set: engine.RuleSet,
    recommendation: engine.Recommendation,
    digest_now: str,
    earlier: dict[str, engine.RuleSet | None],
) -> bool:
    """Whether the rule set in force defines the card otherwise than the version the action was
    taken under. Both digests are taken now, with this release's card_digest: a release that
    makes the digest cover more (the evidence note, a table) does not bring back every card
    acted on. The stored digest counts only for a version no longer stored."""
    if action.rule_set_version == rule_set.version:
        return False
    if action.rule_set_version not in earlier:
        from pathways.rules import rule_set_for

        row = RuleSet.objects.filter(version=action.rule_set_version).first()
        earlier[action.rule_set_version] = rule_set_for(row) if row is not None else None
    then = earlier[action.rule_set_version]
    if then is None:
        return action.card_digest != digest_now
    return card_digest(then, recommendation) != digest_now


def card_actions_end_lapsed(actions: ActiveActions) -> None:
    """Mark ended the actions the case or the card changed under (the caller holds the
    patient's row lock and has just re-assessed the patient)."""
    now = timezone.now()
    for action in actions.lapsed:
        action.ended_at = now
        action.save(update_fields=["ended_at"])  # one history row each: when it ended


@transaction.atomic
def card_action_record(
    *,
    patient: Patient,
    user: Any,
    code: str,
    kind: str,
    reason: str = "",
    reason_text: str = "",
    snooze_until: date | None = None,
    rule_set: engine.RuleSet,
    result: engine.Result,
    source: str = CardAction.Source.WORKLIST,
    seen_case: str | None = None,
    seen_rule_set: str | None = None,
    seen_no_action: bool = False,
) -> CardAction:
    """Record one action on a card the patient currently has; validates the input.

    ``seen_case`` and ``seen_rule_set``: the case digest and the rule-set version of the page
    the clinician acted from. An action holds until the case or the card changes, so one taken
    from a page that did not show them as they are now (a result recorded since, a version
    published since that words the card otherwise) would silently cover what the clinician
    never saw: refused. ``seen_no_action``: the page showed the card with no action on it; one
    a colleague took since is not replaced unseen (a double click of the same action is one)."""
    from pathways.services import follow_ups_sync

    patient = Patient.objects.select_for_update().get(pk=patient.pk)
    digest = case_digest(patient)
    if seen_case is not None and seen_case != digest:
        raise CardActionInvalid(
            "case",
            "The case changed since this page was loaded (a new result, therapy or field): "
            "the advice is shown as it is now; act on it again.",
        )
    recommendation = next((r for r in result.recommendations if r.code == code), None)
    if recommendation is None:
        raise CardActionInvalid("code", f"This patient has no card {code!r} now.")
    if seen_rule_set is not None and not _card_as_shown(rule_set, recommendation, seen_rule_set):
        raise CardActionInvalid(
            "rule_set",
            f"The rules changed since this page was loaded (version {rule_set.version} is in "
            "force): the card is shown as it is now; act on it again.",
        )
    if kind not in ACTION_KINDS:
        raise CardActionInvalid("action", f"Unknown card action {kind!r}.")
    reason_text = reason_text.strip()
    if kind == "override":
        if reason not in REASON_CODES:
            raise CardActionInvalid("reason", "Choose a reason for overriding this card.")
        if reason == "other" and not reason_text:
            raise CardActionInvalid("reason_text", "Say why: the reason 'Other' needs a text.")
    else:
        reason, reason_text = "", ""
    if kind == "snooze":
        if snooze_until is None:
            raise CardActionInvalid("snooze_until", "Choose the date the card returns.")
        if snooze_until <= timezone.localdate():
            raise CardActionInvalid("snooze_until", "The snooze date must be after today.")
    else:
        snooze_until = None
    in_force = active_actions(patient, result, rule_set, digest=digest).get(code)
    asked = (kind, reason, reason_text, snooze_until)
    if (
        in_force is not None
        and in_force.source == source
        and asked == (in_force.kind, in_force.reason, in_force.reason_text, in_force.snooze_until)
    ):
        return in_force  # sent twice (a double click, a resent form): one action to undo
    if in_force is not None and seen_no_action:
        who, what = in_force.by or "someone", in_force.get_kind_display().lower()
        raise CardActionInvalid(
            "code",
            f"{who} acted on this card since this page was loaded ({what}): it is shown as it "
            "is now; act on it again if you still want to.",
        )
    action = CardAction.objects.create(
        patient=patient,
        clinic_id=patient.clinic_id,
        code=code,
        priority=recommendation.priority,
        kind=kind,
        reason=reason,
        reason_text=reason_text,
        snooze_until=snooze_until,
        source=source,
        rule_set_version=rule_set.version,
        case_digest=digest,
        card_digest=card_digest(rule_set, recommendation),
        by=user,
    )
    follow_ups_sync(patient=patient)  # the worklist's copy of what is left to act on
    return action


def _card_as_shown(
    rule_set: engine.RuleSet, recommendation: engine.Recommendation, shown_version: str
) -> bool:
    """Whether the rule-set version a page showed words this card as the version in force."""
    from pathways.rules import rule_set_for

    if shown_version == rule_set.version:
        return True
    shown = RuleSet.objects.filter(version=shown_version).first()  # drafts have no version
    if shown is None:
        return False
    return card_digest(rule_set_for(shown), recommendation) == card_digest(rule_set, recommendation)


@transaction.atomic
def card_action_undo(*, patient: Patient, user: Any, code: str, action_id: int) -> CardAction:
    """Undo the action in force on a card (kept, marked undone).

    ``action_id``: the action the page showed with its Undo. Undo takes back that one only:
    sent twice (a double click, a resent form) it would otherwise take back the action before
    it too, and from a page loaded before a colleague acted it would take back theirs."""
    from pathways.rules import current_rule_set
    from pathways.services import follow_ups_sync

    patient = Patient.objects.select_for_update().get(pk=patient.pk)
    action = (
        CardAction.objects.select_for_update()
        .filter(
            patient=patient, code=code, undone_at__isnull=True, source=CardAction.Source.WORKLIST
        )
        .order_by("-at", "-pk")
        .first()
    )
    shown = CardAction.objects.filter(pk=action_id, patient=patient, code=code).first()
    if shown is not None and shown.undone_at is not None:
        raise CardActionInvalid("undo", "That action was already undone.")
    if action is None or action.pk != action_id:
        raise CardActionInvalid(
            "undo",
            "The card's action changed since this page was loaded: it is shown as it is now; "
            "undo again if you still want to.",
        )
    rule_set = current_rule_set()
    result = engine.assess(patient_to_case(patient), rule_set)
    if active_actions(patient, result, rule_set).get(code) != action:
        raise CardActionInvalid(
            "undo",
            "That action no longer holds (the case or the card changed since, or its snooze "
            "ended): the card is shown as it is now.",
        )
    action.undone_at = timezone.now()
    action.undone_by = user
    action.save()
    follow_ups_sync(patient=patient)
    return action
