"""CEL conditions: compile, check against the fact vocabulary, and find `fired` dependencies."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import cel

from .fact_specs import FACT_NAMES, FACTS, FACTS_BY_NAME

PARAMS_VARIABLE = "params"
FIRED_VARIABLE = "fired"
# Codes of the rules stood down so far (their condition held, a suppression too).
SUPPRESSED_VARIABLE = "suppressed"

_STRING_RE = re.compile(r""""(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'""")
# A plain (or raw) string literal only: b"code" is bytes, never equal to a code in `fired`.
_CODE_LITERAL = r"""(?<![\w"'])[rR]?(["'])([^"'\\\n]*)\1"""
_FIRED_RE = re.compile(_CODE_LITERAL + r"\s+in\s+fired\b")
_PARAM_RE = re.compile(r"\bparams\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")
_MACRO_RE = re.compile(
    r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,"
)
_MACRO_OVER_RE = re.compile(
    r"\b([A-Za-z_][A-Za-z0-9_]*)\s*\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*"
    r"([A-Za-z_][A-Za-z0-9_]*)\s*,"
)
_SUPPRESSED_RE = re.compile(_CODE_LITERAL + r"\s+in\s+suppressed\b")
_WORD_RE = re.compile(r"\bfired\b")
_SUPPRESSED_WORD_RE = re.compile(r"\bsuppressed\b")
_ATTRIBUTE_RE = re.compile(r"\.\s*([A-Za-z_][A-Za-z0-9_]*)")
# CEL type names that may appear as identifiers (type(x) == int).
_TYPE_NAMES = frozenset({"int", "uint", "double", "string", "bool", "bytes", "list", "map", "type"})
_FUNCTIONS = frozenset(
    {
        "size",
        "int",
        "uint",
        "double",
        "string",
        "bytes",
        "type",
        "dyn",
        "timestamp",
        "duration",
        "contains",
        "startsWith",
        "endsWith",
        "matches",
    }
)


@dataclass
class ConditionCheck:
    """What checking one expression found: the program (if it compiles) and any errors."""

    program: cel.Program | None
    errors: list[str] = field(default_factory=list)
    fired_codes: tuple[str, ...] = ()
    suppressed_codes: tuple[str, ...] = ()
    parameters: tuple[str, ...] = ()


def _blank_strings(source: str) -> str:
    """The source with string literals blanked, so that words inside them are not read as code."""
    return _STRING_RE.sub(lambda match: '""', source)


def attribute_names(source: str) -> set[str]:
    """Every `.name` selected anywhere in the source (outside string literals)."""
    return set(_ATTRIBUTE_RE.findall(_blank_strings(source)))


def fired_references(source: str) -> tuple[str, ...]:
    """Rule codes referenced as `"code" in fired`, in order of appearance."""
    return tuple(dict.fromkeys(match.group(2) for match in _FIRED_RE.finditer(source)))


def suppressed_references(source: str) -> tuple[str, ...]:
    """Rule codes referenced as `"code" in suppressed`, in order of appearance."""
    return tuple(dict.fromkeys(match.group(2) for match in _SUPPRESSED_RE.finditer(source)))


def parameter_references(source: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_PARAM_RE.findall(_blank_strings(source))))


def inline_parameters(source: str, params: Mapping[str, float]) -> str:
    """`params.x` replaced by its value as a CEL double literal, outside string literals.

    A published rule set's parameters are constants, and converting the params map into every
    assessment's CEL context costs more than all the rules' evaluation: fold them in instead.
    Undeclared names are left alone (validation reports them).
    """

    def fold(code: str) -> str:
        def literal(match: re.Match[str]) -> str:
            if match.group(1) not in params:
                return match.group(0)
            text = repr(float(params[match.group(1)]))
            return f"({text})" if text.startswith("-") else text

        return _PARAM_RE.sub(literal, code)

    pieces, last = [], 0
    for match in _STRING_RE.finditer(source):
        pieces += [fold(source[last : match.start()]), match.group(0)]
        last = match.end()
    pieces.append(fold(source[last:]))
    return "".join(pieces)


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _probe_context(
    parameter_names: Iterable[str], fired: list[str], suppressed: list[str] | None = None
) -> cel.Context:
    variables: dict[str, Any] = {spec.name: spec.example for spec in FACTS}
    variables[PARAMS_VARIABLE] = {name: 1.0 for name in parameter_names}
    variables[FIRED_VARIABLE] = fired
    variables[SUPPRESSED_VARIABLE] = suppressed or []
    return cel.Context(variables)


def check_expression(
    expression: str,
    parameter_names: Iterable[str],
    rule_codes: Iterable[str],
    *,
    probe: bool = True,
) -> ConditionCheck:
    """Compile and check one condition; errors are messages fit for an admin form."""
    parameter_names = tuple(parameter_names)
    rule_codes = tuple(rule_codes)
    if not expression.strip():
        return ConditionCheck(None, ["empty expression"])
    try:
        program = cel.compile(expression)
    except ValueError as error:
        return ConditionCheck(None, [str(error)])
    except Exception as error:  # the CEL binding may raise other types for odd input
        return ConditionCheck(None, [f"cannot compile: {error}"])
    check = ConditionCheck(
        program,
        fired_codes=fired_references(expression),
        suppressed_codes=suppressed_references(expression),
        parameters=parameter_references(expression),
    )
    blanked = _blank_strings(expression)

    bound = set(_MACRO_RE.findall(blanked))
    for name in program.variables():
        if name in bound or name in _TYPE_NAMES:
            continue
        if name in (PARAMS_VARIABLE, FIRED_VARIABLE, SUPPRESSED_VARIABLE):
            continue
        if name not in FACT_NAMES:
            check.errors.append(f'unknown fact "{name}"{_suggest(name, FACT_NAMES)}')
    # Fields of the maps in list facts (therapies.exists(t, t.months_since_start >= 6)).
    for list_name, variable in _MACRO_OVER_RE.findall(blanked):
        spec = FACTS_BY_NAME.get(list_name)
        if spec is None or not spec.fields:
            continue
        known_fields = {sub.name for sub in spec.fields}
        for key in re.findall(rf"\b{re.escape(variable)}\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)", blanked):
            if key not in known_fields:
                check.errors.append(
                    f'unknown key "{key}" of {list_name}{_suggest(key, known_fields)}'
                )
    for name in check.parameters:
        if name not in parameter_names:
            check.errors.append(
                f'unknown parameter "params.{name}"{_suggest(name, parameter_names)}'
            )
    without_fired = _SUPPRESSED_RE.sub('""', _FIRED_RE.sub('""', expression))
    if _WORD_RE.search(_blank_strings(without_fired)):
        check.errors.append('"fired" may only be used as "rule-code" in fired')
    if _SUPPRESSED_WORD_RE.search(_blank_strings(without_fired)):
        check.errors.append('"suppressed" may only be used as "rule-code" in suppressed')
    for code in check.fired_codes:
        if code not in rule_codes:
            check.errors.append(f'unknown rule code "{code}" in fired{_suggest(code, rule_codes)}')
    for code in check.suppressed_codes:
        if code not in rule_codes:
            check.errors.append(
                f'unknown rule code "{code}" in suppressed{_suggest(code, rule_codes)}'
            )
    for function in program.functions():
        if function[0] in "_@!-" or function in _FUNCTIONS:
            continue
        check.errors.append(f'unknown function "{function}"')

    if probe and not check.errors:
        # Type errors (a string compared with a number) only show when the program runs.
        probes: list[tuple[list[str], list[str]]] = [
            ([], []),
            (list(check.fired_codes), list(check.suppressed_codes)),
        ]
        for fired, suppressed in probes:
            try:
                outcome = program.execute(_probe_context(parameter_names, fired, suppressed))
            except Exception as error:
                check.errors.append(f"cannot be evaluated: {error}")
                break
            if not isinstance(outcome, bool):
                check.errors.append(f"must give true or false, not {outcome!r}")
                break
    return check


def check_condition(
    expression: str, parameter_names: Iterable[str], rule_codes: Iterable[str]
) -> str | None:
    """The first problems with a condition as one message, or None (for admin form fields)."""
    errors = check_expression(expression, parameter_names, rule_codes).errors
    return "; ".join(errors) if errors else None
