"""Rationale templates: `{fact}` and `{params.name}` placeholders, `[[ … ]]` optional segments.

Templates are edited by administrators, so this is a plain regex substitution over known names
(never str.format, never eval): an unknown name is left as written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from .fact_specs import FACT_NAMES, FACTS_BY_NAME

PLACEHOLDER_RE = re.compile(r"\{(params\.[A-Za-z_][A-Za-z0-9_]*|[A-Za-z_][A-Za-z0-9_]*)\}")
SEGMENT_RE = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)
_PIECE_RE = re.compile(rf"\[\[(?P<segment>.*?)\]\]|{PLACEHOLDER_RE.pattern}", re.DOTALL)
UNKNOWN = "unknown"

# (found, value, unit) for a placeholder name.
Resolver = Callable[[str], tuple[bool, Any, str]]


def format_number(value: float) -> str:
    """Sensible rounding for a rationale: 412 U/L, 45.3 mL/min, 3.19 x ULN."""
    if isinstance(value, int):
        return str(value)
    decimals = 1 if abs(value) >= 10 else 2
    text = f"{value:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def format_value(value: Any, unit: str = "") -> str:
    if value is None:
        return UNKNOWN
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        text = format_number(value)
        return f"{text} {unit}" if unit else text
    if isinstance(value, list | tuple):
        return ", ".join(format_value(item) for item in value) if value else "none"
    if isinstance(value, str):
        return value.replace("_", " ")  # vocabulary codes read as words: not_done → not done
    return str(value)


def fact_resolver(
    values: Mapping[str, Any], parameters: Mapping[str, tuple[float, str]]
) -> Resolver:
    def resolve(name: str) -> tuple[bool, Any, str]:
        if name.startswith("params."):
            parameter = parameters.get(name[len("params.") :])
            return (False, None, "") if parameter is None else (True, parameter[0], parameter[1])
        if name not in values or name not in FACT_NAMES:
            return False, None, ""
        spec = FACTS_BY_NAME[name]
        unit = str(values.get(spec.unit_fact) or "") if spec.unit_fact else spec.unit
        return True, values[name], unit

    return resolve


def render(template: str, resolve: Resolver) -> str:
    """Fill placeholders; drop a [[ … ]] segment when any placeholder in it is null."""

    def one(match: re.Match[str]) -> str:
        found, value, unit = resolve(match.group(match.lastindex or 1))
        return format_value(value, unit) if found else match.group(0)

    def piece(match: re.Match[str]) -> str:
        inner = match.group("segment")
        if inner is None:
            return one(match)
        for name in PLACEHOLDER_RE.findall(inner):
            found, value, _ = resolve(name)
            if found and value is None:
                return ""
        return PLACEHOLDER_RE.sub(one, inner)

    # One pass over segments and bare placeholders: substituted text is never re-read.
    return _PIECE_RE.sub(piece, template).strip()


def template_names(template: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(PLACEHOLDER_RE.findall(template)))
