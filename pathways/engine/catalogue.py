"""Load the shipped catalogue (pathways/catalogue/catalogue.toml) into a RuleSet.

The file is the reviewed, declarative source of every rule, parameter, follow-up, reference
table and citation. Unknown keys are errors here too: a typo must not silently drop a rule's
condition. Examples may name a `base` case plus a deep-merge `patch` (and `add_labs`, `unset`,
since TOML has no null); they are expanded to full case documents.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .case import CaseInvalid, case_to_document, parse_case
from .ruleset import (
    ULN_BAND_R2_FIELDS,
    Citation,
    DoseBand,
    Example,
    FollowUpRule,
    Parameter,
    Rule,
    RuleSet,
    Suppression,
    UlnBand,
)

CATALOGUE_PATH = Path(__file__).resolve().parents[1] / "catalogue" / "catalogue.toml"
# Revision 1 of the clinical contract, frozen: migration 0002 installs it as the first version.
CATALOGUE_R1_PATH = CATALOGUE_PATH.with_name("catalogue_r1.toml")


class CatalogueError(ValueError):
    """The catalogue file is malformed; the message says where."""


def _fields(
    table: object, where: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise CatalogueError(f"{where}: must be a table")
    unknown = sorted(set(table) - set(required) - set(optional))
    if unknown:
        raise CatalogueError(f"{where}: unknown key(s) {', '.join(unknown)}")
    missing = [key for key in required if key not in table]
    if missing:
        raise CatalogueError(f"{where}: missing key(s) {', '.join(missing)}")
    return table


def _rows(
    data: dict[str, Any],
    table: str,
    what: str,
    required: tuple[str, ...],
    optional: tuple[str, ...],
    *,
    named_by: str | None = None,
) -> Iterator[dict[str, Any]]:
    """The rows of one table, each checked by _fields as it is read; an error names the row by
    its `named_by` key when it has one, else by position ("parameter rcv_z", "uln band 3")."""
    for i, item in enumerate(data[table]):
        name = item.get(named_by, i + 1) if named_by else i + 1
        yield _fields(item, f"{what} {name}", required, optional)


def _merge(target: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: tables merge key by key, anything else (lists included) replaces."""
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def _unset(document: dict[str, Any], dotted: str) -> None:
    *parents, last = dotted.split(".")
    node = document
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = None


def _base(
    bases: Mapping[str, Any], name: str, where: str, seen: tuple[str, ...] = ()
) -> dict[str, Any]:
    if name not in bases:
        raise CatalogueError(f'{where}: unknown base "{name}"')
    if name in seen:
        raise CatalogueError(f"{where}: bases extend each other in a cycle: {', '.join(seen)}")
    body = copy.deepcopy(dict(bases[name]))
    parent = body.pop("base", None)
    if parent is None:
        return body
    return _merge(_base(bases, parent, where, (*seen, name)), body)


def expand_example_case(
    spec: Mapping[str, Any], bases: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """A full case document from base + patch + add_labs + unset (or an inline `case`)."""
    if "case" in spec and "base" in spec:
        raise CatalogueError(f"{where}: give either case or base, not both")
    document = copy.deepcopy(dict(spec["case"])) if "case" in spec else {}
    if "base" in spec:
        document = _base(bases, spec["base"], where)
    _merge(document, spec.get("patch", {}))
    if "add_labs" in spec:
        document["labs"] = [*document.get("labs", []), *copy.deepcopy(spec["add_labs"])]
    for dotted in spec.get("unset", []):
        _unset(document, dotted)
    if "as_of" not in document:
        raise CatalogueError(f"{where}: examples must fix as_of")
    try:
        return case_to_document(parse_case(document))
    except CaseInvalid:
        return document  # kept as written: run_examples reports why it is invalid


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _parameter(fields: dict[str, Any]) -> Parameter:
    return Parameter(
        name=fields["name"],
        value=float(fields["value"]),
        unit=fields["unit"],
        minimum=float(fields["minimum"]),
        maximum=float(fields["maximum"]),
        description=fields["description"],
        rule=fields.get("rule"),
    )


def _uln_band(fields: dict[str, Any]) -> UlnBand:
    return UlnBand(
        test=fields["test"],
        sex=fields["sex"],
        age_from=fields["age_from"],
        age_from_unit=fields["age_from_unit"],
        age_to=fields.get("age_to"),
        age_to_unit=fields.get("age_to_unit", fields["age_from_unit"]),
        uln=float(fields["uln"]),
        unit=fields["unit"],
        source=fields.get("source", ""),
        lln=_optional_float(fields.get("lln")),
        label=fields.get("label", ""),
        menopause=fields.get("menopause", "any"),
        gestational_week_from=fields.get("gestational_week_from"),
        gestational_week_to=fields.get("gestational_week_to"),
        trimester=fields.get("trimester", ""),
    )


def _dose_band(fields: dict[str, Any]) -> DoseBand:
    return DoseBand(
        crcl_from=_optional_float(fields.get("crcl_from")),
        crcl_to=_optional_float(fields.get("crcl_to")),
        dose_mg=_optional_float(fields.get("dose_mg")),
        source=fields.get("source", ""),
    )


def load_catalogue(path: Path | None = None, *, version: str = "catalogue") -> RuleSet:
    path = path or CATALOGUE_PATH
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise CatalogueError(f"{path}: {error}") from None
    _fields(
        data,
        str(path),
        ("citations", "parameters", "uln_bands", "za_dose_bands", "rules", "follow_ups"),
        ("bases",),
    )
    bases = data.get("bases", {})

    citations = tuple(
        Citation(**fields)
        for fields in _rows(
            data, "citations", "citation", ("key", "text"), ("url", "kind", "grade"), named_by="key"
        )
    )
    parameters = tuple(
        _parameter(fields)
        for fields in _rows(
            data,
            "parameters",
            "parameter",
            ("name", "value", "unit", "minimum", "maximum", "description"),
            ("rule",),
            named_by="name",
        )
    )
    uln_bands = tuple(
        _uln_band(fields)
        for fields in _rows(
            data,
            "uln_bands",
            "uln band",
            ("test", "sex", "age_from", "age_from_unit", "uln", "unit"),
            ("age_to", "age_to_unit", "source", *ULN_BAND_R2_FIELDS),
        )
    )
    za_dose_bands = tuple(
        _dose_band(fields)
        for fields in _rows(
            data, "za_dose_bands", "za dose band", (), ("crcl_from", "crcl_to", "dose_mg", "source")
        )
    )

    rules = []
    for fields in _rows(
        data,
        "rules",
        "rule",
        ("code", "pathway", "priority", "title", "rationale", "condition", "citations"),
        (
            "enabled",
            "escalate_when",
            "escalate_to",
            "examples",
            "suppressions",
            "evidence_note",
            "reviewed_on",
        ),
        named_by="code",
    ):
        where = f"rule {fields['code']}"
        suppressions = tuple(
            Suppression(condition=spec["condition"].strip(), reason=spec["reason"])
            for j, raw in enumerate(fields.get("suppressions", []))
            for spec in [_fields(raw, f"{where}: suppression {j + 1}", ("condition", "reason"))]
        )
        reviewed_on = fields.get("reviewed_on")
        examples = []
        for j, raw in enumerate(fields.get("examples", [])):
            example_where = f"{where}: example {raw.get('name', j + 1)!r}"
            spec = _fields(
                raw,
                example_where,
                ("name", "fires"),
                ("base", "patch", "case", "add_labs", "unset"),
            )
            examples.append(
                Example(
                    name=spec["name"],
                    case=expand_example_case(spec, bases, example_where),
                    fires=spec["fires"],
                )
            )
        rules.append(
            Rule(
                code=fields["code"],
                pathway=fields["pathway"],
                priority=fields["priority"],
                title=fields["title"],
                rationale=fields["rationale"],
                condition=fields["condition"].strip(),
                citations=tuple(fields["citations"]),
                enabled=fields.get("enabled", True),
                escalate_when=(fields.get("escalate_when") or "").strip() or None,
                escalate_to=fields.get("escalate_to"),
                examples=tuple(examples),
                suppressions=suppressions,
                evidence_note=(fields.get("evidence_note") or "").strip() or None,
                reviewed_on=None if reviewed_on is None else str(reviewed_on),
            )
        )

    follow_ups = []
    for fields in _rows(
        data,
        "follow_ups",
        "follow-up",
        ("code", "title", "anchor", "offset", "offset_unit"),
        ("rules", "when", "satisfied_by"),
        named_by="code",
    ):
        follow_ups.append(
            FollowUpRule(
                code=fields["code"],
                title=fields["title"],
                rules=tuple(fields.get("rules", ())),
                when=(fields.get("when") or "").strip() or None,
                anchor=fields["anchor"],
                offset=fields["offset"],
                offset_unit=fields["offset_unit"],
                satisfied_by=tuple(fields.get("satisfied_by", ())),
            )
        )

    return RuleSet(
        version=version,
        rules=tuple(rules),
        parameters=parameters,
        follow_ups=tuple(follow_ups),
        uln_bands=uln_bands,
        za_dose_bands=za_dose_bands,
        citations=citations,
    )
