"""What changed in the rules, for clinicians: the worklist notice after a publication (with
their own patients' counts) and a readable "what changed" page (not the admin's diff)."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from pathways import engine, firing
from pathways.engine.conditions import parameter_references
from pathways.models import RuleSetPublication
from pathways.rules import rule_set_for

_RULE_WORDING = ("title", "rationale", "priority", "enabled")
# When the rule fires, is escalated or stood down: shown as written, one row each.
_RULE_LOGIC = (
    ("condition", "condition"),
    ("escalate_when", "escalated when"),
    ("escalate_to", "escalated to"),
    ("suppressions", "stood down when"),
)


@dataclass
class RuleChange:
    code: str
    title: str
    kind: str  # "added", "removed" or "changed"
    wording: list[tuple[str, str, str]] = field(default_factory=list)  # (what, before, after)
    thresholds: list[tuple[str, str, str]] = field(default_factory=list)


def _threshold_text(parameter: engine.Parameter | None) -> str:
    if parameter is None:
        return "(none)"
    unit = f" {parameter.unit}" if parameter.unit else ""
    return f"{parameter.value:g}{unit}"


def _logic_text(value: object) -> str:
    if value is None or value == "" or value == ():
        return "(none)"
    if isinstance(value, tuple):  # suppressions
        return "; ".join(f"{s.condition} ({s.reason})" for s in value)
    return str(value)


def _expressions(rule: engine.Rule) -> str:
    """Every CEL expression of the rule: the parameters it names are its thresholds."""
    suppressions = [suppression.condition for suppression in rule.suppressions]
    return " ; ".join([rule.condition, rule.escalate_when or "", *suppressions])


def rule_changes(*, publication: RuleSetPublication) -> list[RuleChange]:
    """Each rule whose wording, logic or thresholds differ from the version it replaced."""
    after = rule_set_for(publication.rule_set)
    before = rule_set_for(publication.replaced) if publication.replaced else after
    old_rules = {rule.code: rule for rule in before.rules}
    new_rules = {rule.code: rule for rule in after.rules}
    old_parameters = {p.name: p for p in before.parameters}
    new_parameters = {p.name: p for p in after.parameters}
    changes: list[RuleChange] = []
    for code in dict.fromkeys([*old_rules, *new_rules]):
        old, new = old_rules.get(code), new_rules.get(code)
        shown = new or old
        assert shown is not None
        if old is None or new is None:
            changes.append(RuleChange(code, shown.title, "added" if old is None else "removed"))
            continue
        change = RuleChange(code, new.title, "changed")
        for name in _RULE_WORDING:
            was, now = str(getattr(old, name)), str(getattr(new, name))
            if was != now:
                change.wording.append((name, was, now))
        for name, shown_as in _RULE_LOGIC:
            was, now = _logic_text(getattr(old, name)), _logic_text(getattr(new, name))
            if was != now:
                change.wording.append((shown_as, was, now))
        named_here = set(parameter_references(_expressions(new)))
        for name in dict.fromkeys([*old_parameters, *new_parameters]):
            was_p, now_p = old_parameters.get(name), new_parameters.get(name)
            either = now_p or was_p
            assert either is not None
            # Named as a whole word: params.extreme_al is not params.extreme_alp.
            shared_here = either.rule is None and name in named_here
            if either.rule != code and not shared_here:
                continue
            if _threshold_text(was_p) != _threshold_text(now_p):
                label = either.description or name
                change.thresholds.append((label, _threshold_text(was_p), _threshold_text(now_p)))
        if change.wording or change.thresholds:
            changes.append(change)
    return changes


@login_required
@require_GET
def publication_changes(request: HttpRequest, pk: int) -> HttpResponse:
    publication = get_object_or_404(
        RuleSetPublication.objects.select_related("rule_set", "replaced", "by"), pk=pk
    )
    notice = firing.publication_notice_for(request.user, publication=publication)
    return render(
        request,
        "pathways/rule_changes.html",
        {
            "publication": publication,
            "changes": rule_changes(publication=publication),
            "notice": notice,
        },
    )


@login_required
@require_POST
def publication_notice_dismiss(request: HttpRequest, pk: int) -> HttpResponse:
    publication = get_object_or_404(RuleSetPublication, pk=pk)
    firing.publication_notice_dismiss(user=request.user, publication=publication)
    return HttpResponseRedirect(reverse("dashboard"))
