"""validate_rule_set(): everything that must hold before a rule set may be published."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta

from .assess import THERAPY_PREFIX, RuleSetInvalid, assess, evaluation_order
from .case import CaseInvalid, parse_case
from .conditions import check_expression
from .dates import MAX_OFFSET_YEARS, add_months
from .fact_specs import DATE_FACTS, FACT_NAMES
from .facts import ENGINE_PARAMETERS, select_uln_band
from .ruleset import CITATION_KINDS, DoseBand, RuleSet, UlnBand
from .templates import template_names
from .vocabulary import AGENTS, PRIORITIES, RULE_PATHWAYS, SEXES, TESTS, UNITS

CODE_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
PARAMETER_NAME_RE = re.compile(r"[a-z_][a-z0-9_]*")
AGE_UNITS = ("days", "years")
OFFSET_UNITS = ("months", "days")
# The longest follow-up offset: with case dates up to 2200 no due date can leave the calendar.
_MAX_OFFSET = {"months": 12 * MAX_OFFSET_YEARS, "days": 366 * MAX_OFFSET_YEARS}
_ULN_SEXES = (*SEXES, "any")


def offset_problem(offset: int, unit: str) -> str | None:
    """What is wrong with a follow-up's literal offset (None: nothing)."""
    longest = _MAX_OFFSET.get(unit, _MAX_OFFSET["months"])
    if offset < 0:
        return "must not be negative"
    if offset > longest:
        return f"must not exceed {longest} {unit}"
    return None


def rule_code_problem(code: str) -> str | None:
    """What is wrong with a rule's code (None: nothing): the gate's check, also the admin's."""
    if not CODE_RE.fullmatch(code):
        return "code must be kebab-case (lower-case words joined by '-')"
    return None


def parameter_name_problem(name: str) -> str | None:
    """What is wrong with a parameter's name (None: nothing): the gate's check, also the admin's."""
    if not PARAMETER_NAME_RE.fullmatch(name):
        return "name must be lower_snake_case"
    return None


def follow_up_code_problem(code: str) -> str | None:
    """What is wrong with a follow-up's code (None: nothing): the gate's check, also the admin's."""
    if not CODE_RE.fullmatch(code):
        return "code must be kebab-case"
    return None


def follow_up_trigger_problem(rules: Sequence[str], when: str | None) -> str | None:
    """What is wrong with what creates a follow-up (None: nothing): rules, a condition or both."""
    if not rules and not when:
        return "needs creating rules or a `when` condition"
    return None


def rationale_problems(rationale: str, parameter_names: Collection[str]) -> list[str]:
    """What is wrong with a rule's rationale template: placeholders naming no fact or parameter,
    unbalanced optional segments. The gate's check, also the admin's."""
    problems = []
    for name in template_names(rationale):
        if name.startswith("params."):
            if name[len("params.") :] not in parameter_names:
                problems.append(f'unknown parameter "{{{name}}}"')
        elif name not in FACT_NAMES:
            problems.append(f'unknown fact "{{{name}}}"')
    if rationale.count("[[") != rationale.count("]]"):
        problems.append("unbalanced [[ ]]")
    return problems


def anchor_problem(anchor: str) -> str | None:
    """What is wrong with a follow-up's anchor (None: nothing): it must be a date fact."""
    return None if anchor in DATE_FACTS else f'"{anchor}" is not a date fact'


def satisfied_by_problem(test: str) -> str | None:
    """What is wrong with one entry of a follow-up's satisfied_by (None: nothing)."""
    if test.startswith(THERAPY_PREFIX):
        if test[len(THERAPY_PREFIX) :] not in (*AGENTS, "bisphosphonate"):
            return f'"{test}" names no therapy agent'
    elif test not in TESTS:
        return f'"{test}" is not a lab test'
    return None


MENOPAUSE = ("any", "pre", "post")
TRIMESTERS = ("", "first", "second", "third")
# Ages at which the ULN table must give a value: every day of the first year, then each year.
_COVERAGE_DAYS = range(0, 400)
_COVERAGE_YEARS = range(1, 121)


@dataclass(frozen=True)
class RuleSetError:
    where: str  # "rule bone-scan: condition", "parameter extreme_alp", …
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True)
class ExampleOutcome:
    rule: str
    example: str
    expected: bool
    actual: bool
    error: str | None
    passed: bool


def validate_rule_set(rule_set: RuleSet) -> list[RuleSetError]:
    errors: list[RuleSetError] = []

    def error(where: str, message: str) -> None:
        errors.append(RuleSetError(where, message))

    if not rule_set.version.strip():
        error("rule set", "version is empty")
    codes = [rule.code for rule in rule_set.rules]
    parameter_names = [parameter.name for parameter in rule_set.parameters]
    citation_keys = {citation.key for citation in rule_set.citations}
    for code, count in Counter(codes).items():
        if count > 1:
            error(f"rule {code}", f"code used by {count} rules")
    for key, count in Counter(citation.key for citation in rule_set.citations).items():
        if count > 1:
            error(f"citation {key}", f"key used by {count} citations")
    for name, count in Counter(parameter_names).items():
        if count > 1:
            error(f"parameter {name}", f"name used by {count} parameters")

    # Parameters.
    for parameter in rule_set.parameters:
        where = f"parameter {parameter.name}"
        if (problem := parameter_name_problem(parameter.name)) is not None:
            error(where, problem)
        if parameter.minimum > parameter.maximum:
            error(where, f"minimum {parameter.minimum:g} is above maximum {parameter.maximum:g}")
        elif not parameter.minimum <= parameter.value <= parameter.maximum:
            error(
                where,
                f"value {parameter.value:g} is outside [{parameter.minimum:g}, "
                f"{parameter.maximum:g}]",
            )
        if parameter.rule is not None and parameter.rule not in codes:
            error(where, f'owning rule "{parameter.rule}" does not exist')
    for citation in rule_set.citations:
        if citation.kind not in CITATION_KINDS:
            error(
                f"citation {citation.key}",
                f'kind "{citation.kind}" is not one of: {", ".join(CITATION_KINDS)}',
            )
        if not citation.text.strip():
            error(f"citation {citation.key}", "text is empty")
    for name in ENGINE_PARAMETERS:
        if name not in parameter_names:
            error(f"parameter {name}", "missing (the engine computes facts with it)")

    # Rules.
    for rule in rule_set.rules:
        where = f"rule {rule.code}"
        if (problem := rule_code_problem(rule.code)) is not None:
            error(where, problem)
        if rule.pathway not in RULE_PATHWAYS:
            error(where, f'pathway "{rule.pathway}" is not one of: {", ".join(RULE_PATHWAYS)}')
        if rule.priority not in PRIORITIES:
            error(where, f'priority "{rule.priority}" is not one of: {", ".join(PRIORITIES)}')
        if not rule.title.strip():
            error(f"{where}: title", "empty")
        if not rule.citations:
            error(f"{where}: citations", "at least one citation is required")
        for key in rule.citations:
            if key not in citation_keys:
                error(f"{where}: citations", f'unknown citation "{key}"')
        for message in check_expression(rule.condition, parameter_names, codes).errors:
            error(f"{where}: condition", message)
        if (rule.escalate_when is None) != (rule.escalate_to is None):
            error(where, "escalate_when and escalate_to go together")
        if rule.escalate_to is not None and rule.escalate_to not in PRIORITIES:
            error(where, f'escalate_to "{rule.escalate_to}" is not one of: {", ".join(PRIORITIES)}')
        if rule.escalate_when is not None:
            for message in check_expression(rule.escalate_when, parameter_names, codes).errors:
                error(f"{where}: escalate_when", message)
        for n, suppression in enumerate(rule.suppressions, start=1):
            if not suppression.reason.strip():
                error(f"{where}: suppression {n}", "a reason is required (it is shown)")
            for message in check_expression(suppression.condition, parameter_names, codes).errors:
                error(f"{where}: suppression {n}", message)
        if rule.reviewed_on is not None:
            try:
                date.fromisoformat(rule.reviewed_on)
            except ValueError:
                error(f"{where}: reviewed_on", f'"{rule.reviewed_on}" is not a date (YYYY-MM-DD)')
        for message in rationale_problems(rule.rationale, parameter_names):
            error(f"{where}: rationale", message)
    try:
        evaluation_order(rule_set.rules)
    except RuleSetInvalid as cycle:
        error("rules", str(cycle))

    # Follow-ups.
    for follow_up in rule_set.follow_ups:
        where = f"follow-up {follow_up.code}"
        if (problem := follow_up_code_problem(follow_up.code)) is not None:
            error(where, problem)
        for code in follow_up.rules:
            if code not in codes:
                error(f"{where}: rules", f'unknown rule code "{code}"')
        if (problem := follow_up_trigger_problem(follow_up.rules, follow_up.when)) is not None:
            error(where, problem)
        if follow_up.when:
            for message in check_expression(follow_up.when, parameter_names, codes).errors:
                error(f"{where}: when", message)
        if (problem := anchor_problem(follow_up.anchor)) is not None:
            error(f"{where}: anchor", problem)
        if follow_up.offset_unit not in OFFSET_UNITS:
            error(f"{where}: offset_unit", f'"{follow_up.offset_unit}" is not months or days')
        longest = _MAX_OFFSET.get(follow_up.offset_unit, _MAX_OFFSET["months"])
        if isinstance(follow_up.offset, str):
            value = next((p.value for p in rule_set.parameters if p.name == follow_up.offset), None)
            if value is None:
                error(f"{where}: offset", f'unknown parameter "{follow_up.offset}"')
            elif value != int(value):
                error(f"{where}: offset", f'parameter "{follow_up.offset}" is not a whole number')
            elif not 0 <= value <= longest:
                error(
                    f"{where}: offset",
                    f'parameter "{follow_up.offset}" must be from 0 to {longest} '
                    f"{follow_up.offset_unit}",
                )
        elif (problem := offset_problem(follow_up.offset, follow_up.offset_unit)) is not None:
            error(f"{where}: offset", problem)
        for test in follow_up.satisfied_by:
            if (problem := satisfied_by_problem(test)) is not None:
                error(f"{where}: satisfied_by", problem)

    _validate_uln_bands(rule_set, error)
    for index, band in enumerate(rule_set.za_dose_bands):
        for _, message in dose_band_problems(band):
            error(f"za dose band {index + 1}", message)
    return errors


def dose_band_problems(band: DoseBand) -> list[tuple[str, str]]:
    """What is wrong with one zoledronic acid dose band, each problem as (the band's field it
    lies in, message): the gate's check, also the admin's."""
    problems: list[tuple[str, str]] = []
    if band.crcl_from is None and band.crcl_to is None:
        problems.append(("crcl_from", "needs crcl_from or crcl_to"))
    if band.crcl_from is not None and band.crcl_to is not None and band.crcl_from > band.crcl_to:
        problems.append(("crcl_from", "crcl_from is above crcl_to"))
    if band.dose_mg is not None and band.dose_mg <= 0:
        problems.append(
            ("dose_mg", "dose_mg must be positive (leave it empty for not recommended)")
        )
    return problems


def uln_band_problems(band: UlnBand) -> list[tuple[str, str]]:
    """What is wrong with one reference interval on its own, each problem as (the band's field
    it lies in, message): the gate's check, also the admin's. (Whether the bands together
    cover every age is the rule set's check, below.)"""
    if band.test not in TESTS:
        return [("test", f'"{band.test}" is not a lab test')]
    problems: list[tuple[str, str]] = []

    def report(field: str, message: str) -> None:
        problems.append((field, message))

    if band.sex not in _ULN_SEXES:
        report("sex", f'sex "{band.sex}" is not one of: {", ".join(_ULN_SEXES)}')
    if band.age_from_unit not in AGE_UNITS or band.age_to_unit not in AGE_UNITS:
        unit_field = "age_from_unit" if band.age_from_unit not in AGE_UNITS else "age_to_unit"
        report(unit_field, "age units must be days or years")
    if band.unit not in UNITS[band.test]:
        report("unit", f'"{band.unit}" is not a unit for {band.test}')
    if band.uln <= 0:
        report("uln", "uln must be positive")
    if band.age_from < 0 or (band.age_to is not None and band.age_to < 0):
        report("age_from" if band.age_from < 0 else "age_to", "ages must not be negative")
    if band.lln is not None and not 0 <= band.lln < band.uln:
        report("lln", "lln must be from 0 to below uln")
    if band.menopause not in MENOPAUSE:
        report("menopause", f'menopause "{band.menopause}" is not one of: {", ".join(MENOPAUSE)}')
    elif band.menopause != "any" and band.sex != "female":
        report("menopause", "a pre- or postmenopausal band must be for sex female")
    if band.trimester not in TRIMESTERS:
        report("trimester", f'trimester "{band.trimester}" is not one of: first, second, third')
    if band.gestational_week_from is None:
        if band.gestational_week_to is not None or band.trimester:
            report("gestational_week_from", "a pregnancy band needs gestational_week_from")
    else:
        if band.sex == "male":
            report("sex", "a pregnancy band cannot be for sex male")
        if band.gestational_week_from < 1 or (
            band.gestational_week_to is not None
            and band.gestational_week_to <= band.gestational_week_from
        ):
            week_field = (
                "gestational_week_from" if band.gestational_week_from < 1 else "gestational_week_to"
            )
            report(
                week_field, "gestational weeks must start at 1 or later and end after they start"
            )
    return problems


def _validate_uln_bands(rule_set: RuleSet, report: Callable[[str, str], None]) -> None:
    for index, band in enumerate(rule_set.uln_bands):
        for _, message in uln_band_problems(band):
            report(f"uln band {index + 1}", message)
    alp_bands = [band for band in rule_set.uln_bands if band.test == "alp"]
    birth = date(2000, 1, 1)
    for sex in SEXES:
        ages = [(f"{days} days", birth + timedelta(days=days)) for days in _COVERAGE_DAYS]
        ages += [(f"{years} years", add_months(birth, 12 * years)) for years in _COVERAGE_YEARS]
        for label, on in ages:
            if select_uln_band(alp_bands, "alp", sex, birth, on) is None:
                report("uln bands", f"no total ALP band for a {sex} aged {label}")
                break


def run_examples(rule_set: RuleSet) -> list[ExampleOutcome]:
    """Assess every rule's examples and compare with `fires` (the publish gate)."""
    outcomes: list[ExampleOutcome] = []
    for rule in rule_set.rules:
        # A disabled rule's examples still document it: test the rule as if it were enabled.
        tested = rule_set
        if not rule.enabled:
            rules = tuple(replace(r, enabled=True) if r is rule else r for r in rule_set.rules)
            tested = replace(rule_set, rules=rules)
        for example in rule.examples:
            actual, failure = False, None
            try:
                result = assess(parse_case(example.case), tested)
                actual = any(item.code == rule.code for item in result.recommendations)
            except CaseInvalid as invalid:
                failure = "invalid case: " + "; ".join(str(e) for e in invalid.errors)
            except Exception as problem:  # a broken rule must be reported, not crash the admin
                failure = f"{type(problem).__name__}: {problem}"
            outcomes.append(
                ExampleOutcome(
                    rule=rule.code,
                    example=example.name,
                    expected=example.fires,
                    actual=actual,
                    error=failure,
                    passed=failure is None and actual == example.fires,
                )
            )
    return outcomes
