"""assess(): facts → rules (CEL) → recommendations and follow-ups (spec §4, §5, §6)."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

import cel

from .case import Case, Lab
from .conditions import (
    FIRED_VARIABLE,
    PARAMS_VARIABLE,
    attribute_names,
    fired_references,
    inline_parameters,
)
from .dates import add_months
from .fact_specs import THERAPY_FIELDS
from .facts import Facts, compute_facts
from .ruleset import FollowUpRule, Rule, RuleSet
from .templates import fact_resolver, render
from .vocabulary import PATHWAYS, PRIORITY_RANK

THERAPY_FIELD_NAMES = tuple(field.name for field in THERAPY_FIELDS)
_THERAPY_LISTS = ("therapies", "current_therapies")
DONE_WINDOW_DAYS = 14  # spec §5: done when recorded on or after due - 14 days


class RuleSetInvalid(ValueError):
    """A rule set that cannot be compiled (validate_rule_set gives the full list)."""


class RuleEvaluationError(RuntimeError):
    """A condition failed at run time (for example `null > 3`); names the rule."""


@dataclass(frozen=True)
class Findings:
    alp_latest: float | None
    alp_uln: float | None
    alp_x_uln: float | None
    alp_elevated: bool
    bone_alp: str
    crcl_current: float | None
    crcl_baseline: float | None


@dataclass(frozen=True)
class Recommendation:
    code: str
    priority: str
    title: str
    rationale: str
    citations: tuple[str, ...]


@dataclass(frozen=True)
class FollowUp:
    code: str
    due: date
    status: str  # "done", "overdue" or "upcoming"
    rule: str | None
    title: str


@dataclass(frozen=True)
class Result:
    as_of: date
    rule_set: str
    pathway: str
    findings: Findings
    recommendations: tuple[Recommendation, ...]
    follow_ups: tuple[FollowUp, ...]


# ---------------------------------------------------------------------------------------------
# Compilation, cached per rule set.


@dataclass(frozen=True)
class _CompiledRule:
    rule: Rule
    label: str  # "rule extreme-alp", for error messages
    position: int  # catalogue order, for stable sorting inside a priority
    condition: cel.Program
    escalate_when: cel.Program | None
    reads_fired: bool


@dataclass(frozen=True)
class _CompiledFollowUp:
    follow_up: FollowUpRule
    label: str  # "follow-up alp-repeat", for error messages
    when: cel.Program | None


@dataclass(frozen=True)
class CompiledRuleSet:
    key: tuple[str, str]
    rules: tuple[_CompiledRule, ...]  # enabled rules, in evaluation (topological) order
    follow_ups: tuple[_CompiledFollowUp, ...]
    params: dict[str, float]
    parameter_units: dict[str, tuple[float, str]]
    # Facts each pathway's programs read: only these are converted into the CEL context.
    variables_by_pathway: dict[str, tuple[str, ...]]
    therapy_keys: tuple[str, ...]


def _compile(source: str, where: str, params: dict[str, float]) -> cel.Program:
    try:
        return cel.compile(inline_parameters(source, params))
    except Exception as error:
        raise RuleSetInvalid(f"{where}: {error}") from None


def evaluation_order(rules: tuple[Rule, ...]) -> list[int]:
    """Indexes of `rules` so that every `"code" in fired` is evaluated after that code's rule.

    Kahn's algorithm taking the lowest catalogue position first, so independent rules keep
    catalogue order. A cycle raises RuleSetInvalid.
    """
    position = {rule.code: index for index, rule in enumerate(rules)}
    depends_on: list[set[int]] = []
    for rule in rules:
        sources = [rule.condition, rule.escalate_when or ""]
        depends_on.append(
            {position[code] for s in sources for code in fired_references(s) if code in position}
        )
    order: list[int] = []
    placed: set[int] = set()
    while len(order) < len(rules):
        ready = [
            index
            for index in range(len(rules))
            if index not in placed and depends_on[index] <= placed
        ]
        if not ready:
            cycle = sorted(rules[i].code for i in range(len(rules)) if i not in placed)
            raise RuleSetInvalid(f"rules depend on each other in a cycle: {', '.join(cycle)}")
        order.append(ready[0])
        placed.add(ready[0])
    return order


def _fingerprint(rule_set: RuleSet) -> str:
    # Examples do not change what an assessment computes, so they are left out.
    content = (
        tuple(replace(rule, examples=()) for rule in rule_set.rules),
        rule_set.parameters,
        rule_set.follow_ups,
        rule_set.uln_bands,
        rule_set.za_dose_bands,
        rule_set.citations,
    )
    return hashlib.sha256(repr(content).encode()).hexdigest()


def compile_rule_set(rule_set: RuleSet) -> CompiledRuleSet:
    """Compile every CEL expression of a rule set (no cache; see compiled_rule_set)."""
    rules = rule_set.rules
    params = rule_set.parameter_values()
    compiled_rules = []
    for index in evaluation_order(rules):
        rule = rules[index]
        if not rule.enabled:
            continue
        label = f"rule {rule.code}"
        escalate = None
        if rule.escalate_when:
            escalate = _compile(rule.escalate_when, f"{label}: escalate_when", params)
        compiled_rules.append(
            _CompiledRule(
                rule=rule,
                label=label,
                position=index,
                condition=_compile(rule.condition, f"{label}: condition", params),
                escalate_when=escalate,
                reads_fired=FIRED_VARIABLE in rule.condition
                or FIRED_VARIABLE in (rule.escalate_when or ""),
            )
        )
    follow_ups = tuple(
        _CompiledFollowUp(
            follow_up=follow_up,
            label=f"follow-up {follow_up.code}",
            when=_compile(follow_up.when, f"follow-up {follow_up.code}: when", params)
            if follow_up.when
            else None,
        )
        for follow_up in rule_set.follow_ups
    )
    variables_by_pathway = {}
    for pathway in PATHWAYS:
        programs = [
            program
            for item in compiled_rules
            if item.rule.pathway in (pathway, "both")
            for program in (item.condition, item.escalate_when)
            if program is not None
        ]
        programs += [entry.when for entry in follow_ups if entry.when is not None]
        names = {name for program in programs for name in program.variables()}
        variables_by_pathway[pathway] = tuple(sorted(names))
    # Keys of the therapy maps that any program mentions (`t.months_since_start`): the maps
    # are trimmed to these, as each key costs a conversion into CEL on every assessment.
    sources = [
        p.source for item in compiled_rules for p in (item.condition, item.escalate_when) if p
    ]
    sources += [entry.when.source for entry in follow_ups if entry.when is not None]
    mentioned = {key for source in sources for key in attribute_names(source)}
    therapy_keys = tuple(name for name in THERAPY_FIELD_NAMES if name in mentioned)
    return CompiledRuleSet(
        key=(rule_set.version, _fingerprint(rule_set)),
        rules=tuple(compiled_rules),
        follow_ups=follow_ups,
        params=params,
        parameter_units={p.name: (float(p.value), p.unit) for p in rule_set.parameters},
        variables_by_pathway=variables_by_pathway,
        therapy_keys=therapy_keys,
    )


_CACHE_SIZE = 32
_lock = threading.Lock()
_by_key: OrderedDict[tuple[str, str], CompiledRuleSet] = OrderedDict()
# Fast path: the same RuleSet object again (held here, so its id cannot be reused meanwhile).
_by_identity: OrderedDict[int, tuple[RuleSet, tuple[str, str], CompiledRuleSet]] = OrderedDict()


def compiled_rule_set(rule_set: RuleSet) -> CompiledRuleSet:
    """The compiled rule set, compiled once per process per version + content fingerprint."""
    entry = _by_identity.get(id(rule_set))
    if entry is not None and entry[0] is rule_set:
        key, compiled = entry[1], entry[2]
        with _lock:
            # Keep the content-keyed entry alive too, so an equal copy gets this same object.
            if _by_key.setdefault(key, compiled) is compiled:
                _by_key.move_to_end(key)
                return compiled
    key = (rule_set.version, _fingerprint(rule_set))
    with _lock:
        cached = _by_key.get(key)
        compiled = compile_rule_set(rule_set) if cached is None else cached
        _by_key[key] = compiled
        _by_key.move_to_end(key)
        if len(_by_key) > _CACHE_SIZE:
            _by_key.popitem(last=False)
        _by_identity[id(rule_set)] = (rule_set, key, compiled)
        if len(_by_identity) > _CACHE_SIZE:
            _by_identity.popitem(last=False)
    return compiled


def clear_cache() -> None:
    with _lock:
        _by_key.clear()
        _by_identity.clear()


# ---------------------------------------------------------------------------------------------
# Assessment.


def _execute(program: cel.Program, context: cel.Context, label: str, part: str) -> bool:
    """`label` and `part` ("rule extreme-alp", "condition") only go into an error message,
    so that no text is built for the many expressions that evaluate cleanly."""
    try:
        outcome = program.execute(context)
    except Exception as error:
        raise RuleEvaluationError(f"{label}: {part}: {error}") from None
    if not isinstance(outcome, bool):
        raise RuleEvaluationError(f"{label}: {part}: gave {outcome!r}, not true or false")
    return outcome


def _follow_up_status(
    due: date, satisfied_by: tuple[str, ...], labs: tuple[Lab, ...], as_of: date
) -> str:
    window_start = due - timedelta(days=DONE_WINDOW_DAYS)
    if any(lab.test in satisfied_by and window_start <= lab.collected_on <= as_of for lab in labs):
        return "done"
    return "overdue" if due < as_of else "upcoming"


def _offset(follow_up: FollowUpRule, params: dict[str, float]) -> int:
    if isinstance(follow_up.offset, str):
        return round(params[follow_up.offset])
    return follow_up.offset


def assess(case: Case, rule_set: RuleSet, *, use_cache: bool = True) -> Result:
    """Assess one case under one rule set; pure and deterministic."""
    compiled = compiled_rule_set(rule_set) if use_cache else compile_rule_set(rule_set)
    facts = compute_facts(case, rule_set, params=compiled.params)
    return _assess(case, compiled, facts, rule_set.version)


def assess_with_facts(case: Case, rule_set: RuleSet) -> tuple[Result, Facts]:
    """``assess`` that also returns the facts it computed (the impact preview's histograms)."""
    compiled = compiled_rule_set(rule_set)
    facts = compute_facts(case, rule_set, params=compiled.params)
    return _assess(case, compiled, facts, rule_set.version), facts


def _assess(case: Case, compiled: CompiledRuleSet, facts: Facts, version: str) -> Result:
    values = facts.values
    pathway = values["pathway"]
    fired: list[str] = []
    # Converting Python values into CEL is the costly part: only what the rules read goes in.
    variables: dict[str, Any] = {}
    for name in compiled.variables_by_pathway[pathway]:
        if name in _THERAPY_LISTS:
            keys = compiled.therapy_keys
            variables[name] = [{key: therapy[key] for key in keys} for therapy in values[name]]
        elif name in values:
            variables[name] = values[name]
        elif name == PARAMS_VARIABLE:
            variables[name] = compiled.params  # only for names that could not be folded in
    variables[FIRED_VARIABLE] = fired
    context = cel.Context(variables)
    stale = False  # `fired` in the context lags behind the list until a rule reads it
    matched: list[tuple[_CompiledRule, str]] = []
    for item in compiled.rules:
        rule = item.rule
        if rule.pathway not in (pathway, "both"):
            continue
        if item.reads_fired and stale:
            context.add_variable(FIRED_VARIABLE, fired)
            stale = False
        if not _execute(item.condition, context, item.label, "condition"):
            continue
        priority = rule.priority
        escalate = item.escalate_when
        if (
            escalate is not None
            and rule.escalate_to
            and _execute(escalate, context, item.label, "escalate_when")
        ):
            priority = rule.escalate_to
        fired.append(rule.code)
        stale = True
        matched.append((item, priority))

    resolve = fact_resolver(values, compiled.parameter_units)
    last = len(PRIORITY_RANK)
    matched.sort(key=lambda pair: (PRIORITY_RANK.get(pair[1], last), pair[0].position))
    recommendations = tuple(
        Recommendation(
            code=item.rule.code,
            priority=priority,
            title=item.rule.title,
            rationale=render(item.rule.rationale, resolve),
            citations=item.rule.citations,
        )
        for item, priority in matched
    )

    if stale:
        context.add_variable(FIRED_VARIABLE, fired)
    follow_ups: dict[str, FollowUp] = {}
    for entry in compiled.follow_ups:
        follow_up = entry.follow_up
        if follow_up.code in follow_ups:
            continue
        creator = next((code for code in follow_up.rules if code in fired), None)
        if follow_up.rules and creator is None:
            continue
        if entry.when is not None and not _execute(entry.when, context, entry.label, "when"):
            continue
        anchor = facts.dates.get(follow_up.anchor)
        if anchor is None:
            continue
        offset = _offset(follow_up, compiled.params)
        try:
            if follow_up.offset_unit == "months":
                due = add_months(anchor, offset)
            else:
                due = anchor + timedelta(days=offset)
        except (OverflowError, ValueError):
            # Only an unvalidated draft (the admin's "try it") can get here: publishing bounds it.
            raise RuleEvaluationError(
                f"follow-up {follow_up.code}: due date {offset} {follow_up.offset_unit} "
                f"after {anchor.isoformat()} is outside the calendar"
            ) from None
        follow_ups[follow_up.code] = FollowUp(
            code=follow_up.code,
            due=due,
            status=_follow_up_status(due, follow_up.satisfied_by, case.labs, case.as_of),
            rule=creator,
            title=follow_up.title,
        )

    return Result(
        as_of=case.as_of,
        rule_set=version,
        pathway=pathway,
        findings=Findings(
            alp_latest=_round(values["alp_latest"], 2),
            alp_uln=_round(values["alp_uln"], 2),
            alp_x_uln=_round(values["alp_x_uln"], 2),
            alp_elevated=values["alp_elevated"],
            bone_alp=values["bone_alp"],
            crcl_current=_round(values["crcl_current"], 1),
            crcl_baseline=_round(values["crcl_baseline"], 1),
        ),
        recommendations=recommendations,
        follow_ups=tuple(sorted(follow_ups.values(), key=lambda f: (f.due, f.code))),
    )


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


# ---------------------------------------------------------------------------------------------
# The result document (spec §6).


def result_to_document(result: Result) -> dict[str, Any]:
    findings = result.findings
    return {
        "as_of": result.as_of.isoformat(),
        "rule_set": result.rule_set,
        "pathway": result.pathway,
        "findings": {
            "alp_latest": findings.alp_latest,
            "alp_uln": findings.alp_uln,
            "alp_x_uln": findings.alp_x_uln,
            "alp_elevated": findings.alp_elevated,
            "bone_alp": findings.bone_alp,
            "crcl_current": findings.crcl_current,
            "crcl_baseline": findings.crcl_baseline,
        },
        "recommendations": [
            {
                "code": recommendation.code,
                "priority": recommendation.priority,
                "title": recommendation.title,
                "rationale": recommendation.rationale,
                "citations": list(recommendation.citations),
            }
            for recommendation in result.recommendations
        ],
        "follow_ups": [
            {
                "code": follow_up.code,
                "due": follow_up.due.isoformat(),
                "status": follow_up.status,
                "rule": follow_up.rule,
                "title": follow_up.title,
            }
            for follow_up in result.follow_ups
        ],
    }


def render_result_json(result: Result) -> str:
    """The exact text the CLI and the API return."""
    return json.dumps(result_to_document(result), indent=2, ensure_ascii=False) + "\n"
