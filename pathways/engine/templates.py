"""Rationale templates: `{fact}` and `{params.name}` placeholders, `[[ … ]]` optional segments.

Templates are edited by administrators, so this is a plain regex substitution over known names
(never str.format, never eval): an unknown name is left as written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from .declaration import CHOICE_LABELS
from .fact_specs import FACTS_BY_NAME

PLACEHOLDER_RE = re.compile(r"\{(params\.[A-Za-z_][A-Za-z0-9_]*|[A-Za-z_][A-Za-z0-9_]*)\}")
SEGMENT_RE = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)
UNKNOWN = "unknown"

# (found, value, unit) for a placeholder name.
Resolver = Callable[[str], tuple[bool, Any, str]]


def format_number(value: float) -> str:
    """Sensible rounding for a rationale: 412 U/L, 45.3 mL/min, 3.19 x ULN. A value that rounds
    onto a rounder number (59.96 onto 60) keeps the decimals that tell them apart, up to 4:
    the thresholds it is read against are round ("CrCl 60 mL/min ... renal impairment: yes"
    read as a contradiction when CrCl < 60 defines the impairment)."""
    if isinstance(value, int):
        return str(value)
    decimals = 1 if abs(value) >= 10 else 2
    text = _rounded(value, decimals)
    while decimals < 4 and _decimals(text) < decimals and float(text) != value:
        decimals += 1
        text = _rounded(value, decimals)
    return text


def _rounded(value: float, decimals: int) -> str:
    text = f"{value:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _decimals(text: str) -> int:
    return len(text.partition(".")[2])


def format_value(value: Any, unit: str = "") -> str:
    if value is None:
        return UNKNOWN
    if isinstance(value, bool):
        return "yes" if value else "no"
    # Tuples rather than `int | float`: isinstance() checks a union more slowly, per placeholder.
    if isinstance(value, (int, float)):
        text = format_number(value)
        return f"{text} {unit}" if unit else text
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(item) for item in value) if value else "none"
    if isinstance(value, str):
        # Coded values read as words: paget → Paget's disease of bone, not_done → not done.
        return CHOICE_LABELS.get(value) or value.replace("_", " ")
    return str(value)


def fact_resolver(
    values: Mapping[str, Any], parameters: Mapping[str, tuple[float, str]]
) -> Resolver:
    def resolve(name: str) -> tuple[bool, Any, str]:
        if name.startswith("params."):
            parameter = parameters.get(name[len("params.") :])
            return (False, None, "") if parameter is None else (True, parameter[0], parameter[1])
        spec = FACTS_BY_NAME.get(name)
        if spec is None or name not in values:
            return False, None, ""
        unit = str(values.get(spec.unit_fact) or "") if spec.unit_fact else spec.unit
        return True, values[name], unit

    return resolve


# A parsed template: text, ("name", placeholder, as written) and ("segment", parts) pieces.
_Piece = tuple[str, Any, str]


@lru_cache(maxsize=4096)
def _parse(template: str) -> tuple[_Piece, ...]:
    """Split a template once; rendering then only looks values up (templates repeat a lot)."""

    def placeholders(text: str) -> list[_Piece]:
        pieces: list[_Piece] = []
        last = 0
        for match in PLACEHOLDER_RE.finditer(text):
            pieces.append(("text", text[last : match.start()], ""))
            pieces.append(("name", match.group(1), match.group(0)))
            last = match.end()
        pieces.append(("text", text[last:], ""))
        return [piece for piece in pieces if piece[0] != "text" or piece[1]]

    pieces: list[_Piece] = []
    last = 0
    for match in SEGMENT_RE.finditer(template):
        pieces += placeholders(template[last : match.start()])
        pieces.append(("segment", tuple(placeholders(match.group(1))), ""))
        last = match.end()
    pieces += placeholders(template[last:])
    return tuple(pieces)


def _fill(pieces: tuple[_Piece, ...] | list[_Piece], resolve: Resolver) -> str:
    out = []
    for kind, content, written in pieces:
        if kind == "text":
            out.append(content)
        elif kind == "name":
            found, value, unit = resolve(content)
            out.append(format_value(value, unit) if found else written)
        else:
            # A segment disappears when any placeholder in it is null.
            resolved = (resolve(name) for kind, name, _ in content if kind == "name")
            if any(found and value is None for found, value, _ in resolved):
                continue
            out.append(_fill(content, resolve))
    return "".join(out)


def render(template: str, resolve: Resolver) -> str:
    """Fill placeholders; drop a [[ … ]] segment when any placeholder in it is null.

    Substituted values are never read again, so a value cannot inject a placeholder.
    """
    return _fill(_parse(template), resolve).strip()


def template_names(template: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(PLACEHOLDER_RE.findall(template)))
