"""Rule-set versions side by side: the diff between any two (drafts included), and who
changed what in one, from django-simple-history."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, cast

from pathways import engine
from pathways.models import RuleSet
from pathways.publishing import DRAFT_COPY_REASON, PART_MODELS
from pathways.rules import rule_set_for

# ---------------------------------------------------------------------------------------------
# Diff between any two versions (drafts included).


@dataclass(frozen=True)
class Change:
    section: str  # "rules", "parameters", …
    key: str  # the rule code, parameter name, …
    kind: str  # "added", "removed" or "changed"
    field: str = ""
    old: str = ""
    new: str = ""


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple | list):
        return ", ".join(_text(item) for item in value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, engine.Suppression):
        return f'{value.condition} ("{value.reason}")'
    return str(value)


def _examples_text(rule: engine.Rule) -> dict[str, str]:
    return {
        f"example {name}": f"{'fires' if example.fires else 'does not fire'}; case {example.case}"
        for name, example in _by_key(rule.examples, lambda example: repr(example.name)).items()
    }


def _by_key(items: Iterable[Any], key: Callable[[Any], str]) -> dict[str, Any]:
    """Items by their key. A key several share (two follow-ups of one code, the first whose
    condition holds applies) is told apart by its place: the second is "alp-recheck (2)", so
    that a change to either is compared, not only to the last."""
    keyed: dict[str, Any] = {}
    seen: Counter[str] = Counter()
    for item in items:
        name = key(item)
        seen[name] += 1
        keyed[name if seen[name] == 1 else f"{name} ({seen[name]})"] = item
    return keyed


def _fields(item: Any, names: Iterable[str]) -> dict[str, str]:
    return {name: _text(getattr(item, name)) for name in names}


_SECTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "rules",
        "code",
        (
            "pathway",
            "priority",
            "enabled",
            "title",
            "rationale",
            "condition",
            "escalate_when",
            "escalate_to",
            "citations",
            "suppressions",
            "evidence_note",
            "reviewed_on",
        ),
    ),
    ("parameters", "name", ("value", "unit", "minimum", "maximum", "description", "rule")),
    (
        "follow-ups",
        "code",
        ("title", "rules", "when", "anchor", "offset", "offset_unit", "satisfied_by"),
    ),
    ("citations", "key", ("kind", "text", "grade", "url")),
)


def ruleset_diff(*, old: RuleSet, new: RuleSet) -> list[Change]:
    """What changed from ``old`` to ``new``: rules (with their examples), parameters, follow-ups,
    citations, reference intervals and dose bands."""
    before, after = rule_set_for(old), rule_set_for(new)
    changes: list[Change] = []
    collections = {
        "rules": (before.rules, after.rules),
        "parameters": (before.parameters, after.parameters),
        "follow-ups": (before.follow_ups, after.follow_ups),
        "citations": (before.citations, after.citations),
    }
    # Rules are evaluated in order (the first fired of a priority tops a patient's cards): a
    # rule's place among the rules both versions hold, so that an added rule moves no other.
    both = {rule.code for rule in before.rules} & {rule.code for rule in after.rules}
    places = [
        {
            code: str(place)
            for place, code in enumerate((r.code for r in rules if r.code in both), 1)
        }
        for rules in (before.rules, after.rules)
    ]
    for section, key_name, names in _SECTIONS:
        old_items = _by_key(collections[section][0], attrgetter(key_name))
        new_items = _by_key(collections[section][1], attrgetter(key_name))
        for key in dict.fromkeys([*old_items, *new_items]):
            if key not in new_items:
                changes.append(Change(section, key, "removed"))
                continue
            if key not in old_items:
                changes.append(Change(section, key, "added"))
                continue
            old_fields = _fields(old_items[key], names)
            new_fields = _fields(new_items[key], names)
            if section == "rules":
                old_fields.update(_examples_text(cast(engine.Rule, old_items[key])))
                new_fields.update(_examples_text(cast(engine.Rule, new_items[key])))
                old_fields["place in the order"] = places[0].get(key, "")
                new_fields["place in the order"] = places[1].get(key, "")
            for name in dict.fromkeys([*old_fields, *new_fields]):
                if old_fields.get(name) != new_fields.get(name):
                    changes.append(
                        Change(
                            section,
                            key,
                            "changed",
                            name,
                            old_fields.get(name, "(none)"),
                            new_fields.get(name, "(none)"),
                        )
                    )
    for section, old_rows, new_rows in (
        ("reference intervals", before.uln_bands, after.uln_bands),
        ("zoledronic acid dose bands", before.za_dose_bands, after.za_dose_bands),
    ):
        old_lines = [_band_text(row) for row in old_rows]
        new_lines = [_band_text(row) for row in new_rows]
        for line in old_lines:
            if line not in new_lines:
                changes.append(Change(section, line, "removed"))
        for line in new_lines:
            if line not in old_lines:
                changes.append(Change(section, line, "added"))
    return changes


def _band_text(band: engine.UlnBand | engine.DoseBand) -> str:
    if isinstance(band, engine.UlnBand):
        upper = f"{band.age_to} {band.age_to_unit}" if band.age_to is not None else "any age"
        who = band.sex if band.menopause == "any" else f"{band.sex} ({band.menopause}menopausal)"
        if band.pregnancy:
            weeks = f"{band.gestational_week_to}" if band.gestational_week_to else "term"
            who += f", pregnancy weeks {band.gestational_week_from} to {weeks}"
        if band.trimester:
            who += f", {band.trimester} trimester"
        lower = f"LLN {band.lln:g}, " if band.lln is not None else ""
        # The label is shown to clinicians as the ULN's source: a change to it is a change.
        shown = f"; shown as {band.label!r}" if band.label else ""
        return (
            f"{band.test} {who} {band.age_from} {band.age_from_unit} to {upper}: "
            f"{lower}ULN {band.uln:g} {band.unit}{shown}{_source_text(band.source)}"
        )
    dose = f"{band.dose_mg:g} mg" if band.dose_mg is not None else "not recommended"
    crcl = f"CrCl {_text(band.crcl_from) or '…'} to {_text(band.crcl_to) or '…'}"
    return f"{crcl}: {dose}{_source_text(band.source)}"


def _source_text(source: str) -> str:
    return f"; source: {source}" if source else ""


# ---------------------------------------------------------------------------------------------
# Who changed what and when (django-simple-history rows of the set and of its parts).


@dataclass(frozen=True)
class ChangeEntry:
    at: Any
    user: Any
    kind: str  # "created", "changed" or "deleted"
    what: str  # "rule extreme-alp", "parameter extreme_alp = 1200 U/L", …
    fields: tuple[tuple[str, str, str], ...]  # (field, old, new)


_KINDS = {"+": "created", "~": "changed", "-": "deleted"}
_HIDDEN_FIELDS = {"last_edited_by", "last_edited_at", "rule_set"}


def ruleset_changes(*, rule_set: RuleSet) -> list[ChangeEntry]:
    """Every recorded change to the set and its parts, newest first.

    A draft's initial copy is one bulk insert (no per-row history): the set's own "created"
    entry stands for it; each later edit has its own entry with the fields it changed.
    """
    histories: list[tuple[str, Any]] = [
        (str(RuleSet._meta.verbose_name), RuleSet.history.filter(id=rule_set.pk))
    ]
    for model in PART_MODELS:
        records = model.history.filter(rule_set_id=rule_set.pk)
        histories.append((str(model._meta.verbose_name), records))
    entries: list[ChangeEntry] = []
    for label, records in histories:
        previous: dict[Any, Any] = {}
        for record in records.select_related("history_user").order_by("history_date", "pk"):
            before = previous.get(record.id)
            fields: tuple[tuple[str, str, str], ...] = ()
            if before is not None and record.history_type == "~":
                delta = record.diff_against(before)
                fields = tuple(
                    (change.field, _text(change.old), _text(change.new))
                    for change in delta.changes
                    if change.field not in _HIDDEN_FIELDS
                )
                if not fields:
                    previous[record.id] = record
                    continue
            previous[record.id] = record
            if record.history_change_reason == DRAFT_COPY_REASON:
                continue
            entries.append(
                ChangeEntry(
                    at=record.history_date,
                    user=record.history_user,
                    kind=_KINDS.get(record.history_type, record.history_type),
                    what=f"{label} {record.instance}",
                    fields=fields,
                )
            )
    entries.sort(key=lambda entry: entry.at, reverse=True)
    return entries
