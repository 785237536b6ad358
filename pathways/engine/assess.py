"""assess(): facts → rules (CEL) → recommendations and follow-ups (spec §4, §5, §6)."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any

import cel

from .case import Case
from .conditions import (
    FIRED_VARIABLE,
    PARAMS_VARIABLE,
    SUPPRESSED_VARIABLE,
    attribute_names,
    fired_references,
    inline_parameters,
    suppressed_references,
)
from .dates import add_months
from .fact_specs import THERAPY_FIELDS
from .facts import ENGINE_PARAMETERS, OPTIONAL_ENGINE_PARAMETERS, Facts, compute_facts
from .ruleset import Citation, FollowUpRule, Rule, RuleSet
from .templates import fact_resolver, render
from .vocabulary import BISPHOSPHONATES, PATHWAYS, PRIORITY_RANK

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
    # Revision 2 (spec §6): the working behind the advice. Additions: r1 clients ignore them.
    alp_latest_date: str | None = None
    alp_uln_source: str | None = None
    alp_source: str | None = None
    ggt: str | None = None
    calcium_corrected: float | None = None
    crcl_method: str | None = None
    rcv_rise_pct: float | None = None
    rcv_fall_pct: float | None = None
    za_dosing_crcl: float | None = None
    alp_gestational_week: int | None = None
    pregnancy_trimester: int | None = None
    ggt_latest: float | None = None
    ggt_uln: float | None = None
    bone_alp_latest: float | None = None
    bone_alp_uln: float | None = None
    crcl_current_date: str | None = None
    crcl_creatinine: float | None = None
    crcl_weight_kg: float | None = None


# Revision-2 findings: (document key, fact name, decimals or None for a value kept as it is).
# A fact a rule set's engine does not compute is reported as null.
EXTRA_FINDINGS: tuple[tuple[str, str, int | None], ...] = (
    ("alp_latest_date", "alp_latest_date", None),
    ("alp_uln_source", "alp_uln_source", None),
    ("alp_source", "alp_source", None),
    ("ggt", "ggt", None),
    ("calcium_corrected", "calcium_corrected", 2),
    ("crcl_method", "crcl_method", None),
    ("rcv_rise_pct", "rcv_rise_pct", 1),
    ("rcv_fall_pct", "rcv_fall_pct", 1),
    ("za_dosing_crcl", "za_dosing_crcl", 1),
    ("alp_gestational_week", "alp_gestational_week", None),
    ("pregnancy_trimester", "pregnancy_trimester", None),
    ("ggt_latest", "ggt_latest", 2),
    ("ggt_uln", "ggt_uln", 2),
    ("bone_alp_latest", "bone_alp_latest", 2),
    ("bone_alp_uln", "bone_alp_uln", 2),
    ("crcl_current_date", "crcl_current_date", None),
    ("crcl_creatinine", "crcl_creatinine", 2),
    ("crcl_weight_kg", "crcl_weight_kg", 1),
)


@dataclass(frozen=True)
class Recommendation:
    code: str
    priority: str
    title: str
    rationale: str
    citations: tuple[str, ...]
    evidence_note: str | None = None


@dataclass(frozen=True)
class Suppressed:
    """A rule whose condition held but that a context stood down (spec §4)."""

    code: str
    reason: str


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
    context: tuple[str, ...] = ()
    suppressed: tuple[Suppressed, ...] = ()
    # Every citation the recommendations name, by key, in the order they are first cited.
    sources: dict[str, Citation] = field(default_factory=dict)


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
    suppressions: tuple[tuple[cel.Program, str], ...] = ()


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
    citations: dict[str, Citation]


def _compile(source: str, where: str, params: dict[str, float]) -> cel.Program:
    try:
        return cel.compile(inline_parameters(source, params))
    except Exception as error:
        raise RuleSetInvalid(f"{where}: {error}") from None


def evaluation_order(rules: tuple[Rule, ...]) -> list[int]:
    """Indexes of `rules` so that every `"code" in fired` (or `in suppressed`) is evaluated
    after that code's rule: its condition, escalation and suppressions all count.

    Kahn's algorithm taking the lowest catalogue position first, so independent rules keep
    catalogue order. A cycle raises RuleSetInvalid.
    """
    position = {rule.code: index for index, rule in enumerate(rules)}
    depends_on: list[set[int]] = []
    for rule in rules:
        sources = [rule.condition, rule.escalate_when or ""]
        sources += [suppression.condition for suppression in rule.suppressions]
        codes = {
            code for s in sources for code in (*fired_references(s), *suppressed_references(s))
        }
        depends_on.append({position[code] for code in codes if code in position})
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
        suppressions = tuple(
            (_compile(item.condition, f"{label}: suppression {n}", params), item.reason)
            for n, item in enumerate(rule.suppressions, start=1)
        )
        sources = [rule.condition, rule.escalate_when or ""]
        sources += [item.condition for item in rule.suppressions]
        compiled_rules.append(
            _CompiledRule(
                rule=rule,
                label=label,
                position=index,
                condition=_compile(rule.condition, f"{label}: condition", params),
                escalate_when=escalate,
                reads_fired=any(
                    FIRED_VARIABLE in source or SUPPRESSED_VARIABLE in source for source in sources
                ),
                suppressions=suppressions,
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
            for program in (item.condition, item.escalate_when, *(p for p, _ in item.suppressions))
            if program is not None
        ]
        programs += [entry.when for entry in follow_ups if entry.when is not None]
        names = {name for program in programs for name in program.variables()}
        variables_by_pathway[pathway] = tuple(sorted(names))
    # Keys of the therapy maps that any program mentions (`t.months_since_start`): the maps
    # are trimmed to these, as each key costs a conversion into CEL on every assessment.
    sources = [
        p.source
        for item in compiled_rules
        for p in (item.condition, item.escalate_when, *(q for q, _ in item.suppressions))
        if p
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
        citations={citation.key: citation for citation in rule_set.citations},
    )


_CACHE_SIZE = 32
_lock = threading.Lock()
# The one cache: compiled rule sets by version and content fingerprint (an equal copy of a rule
# set, loaded again from the database, gets the same compiled object).
_by_key: OrderedDict[tuple[str, str], CompiledRuleSet] = OrderedDict()
_COMPILED = "_compiled"  # where a RuleSet object keeps its key and compiled form


def compiled_rule_set(rule_set: RuleSet) -> CompiledRuleSet:
    """The compiled rule set, compiled once per process per version + content fingerprint.

    The RuleSet object (immutable) also keeps its key and compiled form, so asking again with
    the same object skips computing the fingerprint. That is not a second cache: it lives and
    dies with the object, and each use puts its compiled form back in the one cache, so a set
    in use stays there for an equal copy however many others come and go."""
    held: tuple[tuple[str, str], CompiledRuleSet] | None = rule_set.__dict__.get(_COMPILED)
    if held is None:
        key = (rule_set.version, _fingerprint(rule_set))
        compiled = None
    else:
        key, compiled = held
    with _lock:
        if compiled is None:
            compiled = _by_key.get(key) or compile_rule_set(rule_set)
        compiled = _by_key.setdefault(key, compiled)
        _by_key.move_to_end(key)
        if len(_by_key) > _CACHE_SIZE:
            _by_key.popitem(last=False)
    if held is None or held[1] is not compiled:
        object.__setattr__(rule_set, _COMPILED, (key, compiled))  # frozen dataclass: only here
    return compiled


def clear_cache() -> None:
    with _lock:
        _by_key.clear()


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


THERAPY_PREFIX = "therapy:"


def _agent_matches(agent: str, wanted: str) -> bool:
    return agent == wanted or (wanted == "bisphosphonate" and agent in BISPHOSPHONATES)


def _follow_up_status(due: date, satisfied_by: tuple[str, ...], case: Case) -> str:
    window_start = due - timedelta(days=DONE_WINDOW_DAYS)
    as_of = case.as_of
    if any(
        lab.test in satisfied_by and window_start <= lab.collected_on <= as_of for lab in case.labs
    ):
        return "done"
    agents = [
        item[len(THERAPY_PREFIX) :] for item in satisfied_by if item.startswith(THERAPY_PREFIX)
    ]
    if agents and any(
        window_start <= therapy.start <= as_of
        and any(_agent_matches(therapy.agent, a) for a in agents)
        for therapy in case.clinical.therapies
    ):
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


def assess_with_facts(
    case: Case, rule_set: RuleSet, *, facts: Facts | None = None, with_text: bool = True
) -> tuple[Result, Facts]:
    """``assess`` that also returns the facts it computed (the impact preview's histograms).

    ``facts``: facts already computed for this case under a rule set whose fact inputs are
    equal (``facts_inputs``): the impact preview computes them once for both versions.
    ``with_text=False`` leaves rationales as their templates (the preview compares codes only).
    """
    compiled = compiled_rule_set(rule_set)
    if facts is None:
        facts = compute_facts(case, rule_set, params=compiled.params)
    return _assess(case, compiled, facts, rule_set.version, with_text=with_text), facts


def facts_inputs(rule_set: RuleSet) -> tuple[Any, ...]:
    """Everything of a rule set that ``compute_facts`` reads: its reference bands, dose bands
    and the parameters of the fact computation. Two rule sets with equal inputs give every case
    the same facts (a test runs every shipped example through both to hold this)."""
    values = rule_set.parameter_values()
    names = (*ENGINE_PARAMETERS, *OPTIONAL_ENGINE_PARAMETERS)
    return (
        tuple(rule_set.uln_bands),
        tuple(rule_set.za_dose_bands),
        tuple((name, values.get(name)) for name in names),
    )


def _assess(
    case: Case, compiled: CompiledRuleSet, facts: Facts, version: str, *, with_text: bool = True
) -> Result:
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
    suppressed_codes: list[str] = []
    variables[FIRED_VARIABLE] = fired
    variables[SUPPRESSED_VARIABLE] = suppressed_codes
    context = cel.Context(variables)
    # `fired` and `suppressed` in the context lag behind the lists until a rule reads them.
    stale = False
    matched: list[tuple[_CompiledRule, str]] = []
    suppressed: list[Suppressed] = []
    for item in compiled.rules:
        rule = item.rule
        if rule.pathway not in (pathway, "both"):
            continue
        if item.reads_fired and stale:
            context.add_variable(FIRED_VARIABLE, fired)
            context.add_variable(SUPPRESSED_VARIABLE, suppressed_codes)
            stale = False
        if not _execute(item.condition, context, item.label, "condition"):
            continue
        reason = next(
            (
                why
                for n, (program, why) in enumerate(item.suppressions, start=1)
                if _execute(program, context, item.label, f"suppression {n}")
            ),
            None,
        )
        if reason is not None:
            # Stood down: not recommended, listed once, and not fired for the rules after it.
            suppressed_codes.append(rule.code)
            suppressed.append(Suppressed(code=rule.code, reason=reason))
            stale = True
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
            rationale=render(item.rule.rationale, resolve) if with_text else item.rule.rationale,
            citations=item.rule.citations,
            evidence_note=item.rule.evidence_note,
        )
        for item, priority in matched
    )
    used = dict.fromkeys(key for rec in recommendations for key in rec.citations)
    sources = {key: compiled.citations[key] for key in used if key in compiled.citations}

    if stale:
        context.add_variable(FIRED_VARIABLE, fired)
        context.add_variable(SUPPRESSED_VARIABLE, suppressed_codes)
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
            status=_follow_up_status(due, follow_up.satisfied_by, case),
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
            **{key: _finding(values.get(name), digits) for key, name, digits in EXTRA_FINDINGS},
        ),
        recommendations=recommendations,
        follow_ups=tuple(sorted(follow_ups.values(), key=lambda f: (f.due, f.code))),
        context=tuple(values.get("context") or ()),
        suppressed=tuple(suppressed),
        sources=sources,
    )


def _finding(value: Any, digits: int | None) -> Any:
    if digits is None or value is None or isinstance(value, bool):
        return value
    return round(float(value), digits)


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
        "context": list(result.context),
        "findings": {
            "alp_latest": findings.alp_latest,
            "alp_uln": findings.alp_uln,
            "alp_x_uln": findings.alp_x_uln,
            "alp_elevated": findings.alp_elevated,
            "bone_alp": findings.bone_alp,
            "crcl_current": findings.crcl_current,
            "crcl_baseline": findings.crcl_baseline,
            **{key: getattr(findings, key) for key, _, _ in EXTRA_FINDINGS},
        },
        "recommendations": [
            {
                "code": recommendation.code,
                "priority": recommendation.priority,
                "title": recommendation.title,
                "rationale": recommendation.rationale,
                "citations": list(recommendation.citations),
                "evidence_note": recommendation.evidence_note,
            }
            for recommendation in result.recommendations
        ],
        "suppressed": [{"code": item.code, "reason": item.reason} for item in result.suppressed],
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
        "sources": {key: _source(citation) for key, citation in result.sources.items()},
    }


def _source(citation: Citation) -> dict[str, str]:
    source = {"kind": citation.kind, "text": citation.text}
    if citation.grade:
        source["grade"] = citation.grade
    if citation.url:
        source["url"] = citation.url
    return source


def render_result_json(result: Result) -> str:
    """The exact text the CLI and the API return."""
    return json.dumps(result_to_document(result), indent=2, ensure_ascii=False) + "\n"
