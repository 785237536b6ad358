"""Rule tuning: drafts, the publish gate, impact preview, four-eyes publishing, rollback, diff.

Services are keyword-only ``<entity>_<action>`` functions; the admin (rules_admin.py) only calls
them. A published rule set is never changed: a draft is a copy, published as a new version.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any, cast

from django.db import transaction
from django.utils import timezone

from pathways import engine
from pathways.cases import patient_to_case, stored_rows
from pathways.models import (
    AssessmentSnapshot,
    Citation,
    Clinic,
    DoseBand,
    FollowUpRule,
    Parameter,
    Patient,
    Rule,
    RuleExample,
    RuleSet,
    RuleSetPublication,
    UlnBand,
)
from pathways.rules import current_rule_set_row, install_rule_set, load_rule_set, rule_set_for

PUBLISH_PERMISSION = "pathways.publish_ruleset"
# The models a rule editor edits; publishers also hold PUBLISH_PERMISSION.
RULE_SET_MODELS = (
    "ruleset",
    "rule",
    "ruleexample",
    "parameter",
    "followuprule",
    "ulnband",
    "doseband",
    "citation",
)
DRAFT_COPY_REASON = "copied into the draft"
_PART_MODELS: tuple[Any, ...] = (
    Rule,
    RuleExample,
    Parameter,
    FollowUpRule,
    UlnBand,
    DoseBand,
    Citation,
)


class TuningError(Exception):
    """A tuning step that is refused; the message is shown to the editor as it is."""


# ---------------------------------------------------------------------------------------------
# Drafts.


@transaction.atomic
def ruleset_start_draft(*, user: Any, base: RuleSet | None = None) -> RuleSet:
    """A new draft: a full copy of ``base`` (default: the version in force)."""
    base = base or current_rule_set_row()
    if base.is_draft:
        raise TuningError("A draft is started from a published version.")
    now = timezone.now()
    draft = RuleSet.objects.create(
        status=RuleSet.Status.DRAFT,
        based_on=base,
        created_by=user,
        created_at=now,
        # Starting a draft is an edit: its author is not the second pair of eyes.
        last_edited_by=user,
        last_edited_at=now,
        note="",
    )
    install_rule_set(load_rule_set(base), into=draft)
    # bulk_create leaves no history: record the copy as each part's first version, so that the
    # first edit of a part shows what it changed (these baseline rows are not listed as edits).
    for model in _PART_MODELS:
        model.history.bulk_history_create(
            list(model.objects.filter(rule_set=draft)),
            default_user=user,
            default_change_reason=DRAFT_COPY_REASON,
            default_date=now,
        )
    return draft


def ruleset_touch(*, rule_set: RuleSet, user: Any) -> None:
    """Record the draft's last editor (four-eyes compares the publisher with it)."""
    if not rule_set.is_draft:
        raise TuningError(f"Rule set {rule_set.label} is published and cannot be modified.")
    rule_set.last_edited_by = user
    rule_set.last_edited_at = timezone.now()
    rule_set.save(update_fields=["last_edited_by", "last_edited_at"])


# ---------------------------------------------------------------------------------------------
# The publish gate: conditions compile, parameters within range, every example passes.


@dataclass(frozen=True)
class RuleSetCheck:
    errors: tuple[engine.RuleSetError, ...]
    examples: tuple[engine.ExampleOutcome, ...]

    @property
    def failing_examples(self) -> tuple[engine.ExampleOutcome, ...]:
        return tuple(outcome for outcome in self.examples if not outcome.passed)

    @property
    def publishable(self) -> bool:
        return not self.errors and not self.failing_examples

    def problems(self) -> list[str]:
        """Every reason the set cannot be published, one line each."""
        lines = [str(error) for error in self.errors]
        for outcome in self.failing_examples:
            lines.append(
                f"rule {outcome.rule}: example {outcome.example!r}: {example_why(outcome)}"
            )
        return lines


def example_why(outcome: engine.ExampleOutcome) -> str:
    if outcome.error:
        return outcome.error
    if outcome.passed:
        return "passes"
    expected = "fire" if outcome.expected else "not fire"
    actual = "fired" if outcome.actual else "did not fire"
    return f"must {expected}, {actual}"


def ruleset_check(*, rule_set: RuleSet) -> RuleSetCheck:
    data = rule_set_for(rule_set)
    errors = engine.validate_rule_set(data) + _missing_examples(data)
    return RuleSetCheck(errors=tuple(errors), examples=tuple(_run_examples_safely(data)))


def _missing_examples(data: engine.RuleSet) -> list[engine.RuleSetError]:
    """Every rule documents both sides of its boundary, as the shipped catalogue does."""
    errors = []
    for rule in data.rules:
        if not any(example.fires for example in rule.examples):
            errors.append(engine.RuleSetError(f"rule {rule.code}", "no example where it fires"))
        if all(example.fires for example in rule.examples):
            errors.append(
                engine.RuleSetError(f"rule {rule.code}", "no example where it does not fire")
            )
    return errors


def _run_examples_safely(data: engine.RuleSet) -> list[engine.ExampleOutcome]:
    # A set whose conditions do not compile cannot run its examples; validation reports why.
    try:
        return engine.run_examples(data)
    except engine.RuleSetInvalid:
        return []


# ---------------------------------------------------------------------------------------------
# Publishing and rollback.


def _next_version_label(today: date) -> str:
    prefix = today.isoformat()
    number = RuleSet.objects.filter(version__startswith=f"{prefix}.").count() + 1
    while RuleSet.objects.filter(version=f"{prefix}.{number}").exists():
        number += 1
    return f"{prefix}.{number}"


def _put_in_force(rule_set: RuleSet) -> RuleSet | None:
    replaced = RuleSet.objects.select_for_update().filter(is_current=True).first()
    if replaced is not None and replaced.pk != rule_set.pk:
        replaced.is_current = False
        replaced.save(update_fields=["is_current"])
    return replaced


def _require_publisher(user: Any, note: str) -> str:
    if not user.has_perm(PUBLISH_PERMISSION):
        raise TuningError("Publishing needs the publisher permission.")
    note = note.strip()
    if not note:
        raise TuningError("A change note is required.")
    return note


def ruleset_publish(*, rule_set: RuleSet, user: Any, note: str, reassess: bool = True) -> RuleSet:
    """Publish a draft as a new version and put it in force (four-eyes, change note, gate)."""
    note = _require_publisher(user, note)
    with transaction.atomic():
        rule_set = RuleSet.objects.select_for_update().get(pk=rule_set.pk)
        if not rule_set.is_draft:
            raise TuningError(f"{rule_set.label} is already published.")
        last_editor_id = rule_set.last_edited_by_id or rule_set.created_by_id
        if last_editor_id == user.pk:
            raise TuningError(
                "Four-eyes: you edited this draft last; another publisher must publish it."
            )
        check = ruleset_check(rule_set=rule_set)
        if not check.publishable:
            problems = check.problems()
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            raise TuningError("The draft cannot be published: " + "; ".join(problems[:5]) + more)
        replaced = _put_in_force(rule_set)
        now = timezone.now()
        rule_set.version = _next_version_label(timezone.localdate())
        rule_set.status = RuleSet.Status.PUBLISHED
        rule_set.is_current = True
        rule_set.note = note
        rule_set.published_by = user
        rule_set.published_at = now
        rule_set.save()
        RuleSetPublication.objects.create(
            rule_set=rule_set,
            kind=RuleSetPublication.Kind.PUBLISH,
            by=user,
            at=now,
            note=note,
            replaced=replaced,
        )
    if reassess:
        _reassess_everyone()
    return rule_set


def ruleset_rollback(*, rule_set: RuleSet, user: Any, note: str, reassess: bool = True) -> RuleSet:
    """Put an earlier published version back in force (a publication of kind rollback)."""
    note = _require_publisher(user, note)
    with transaction.atomic():
        rule_set = RuleSet.objects.select_for_update().get(pk=rule_set.pk)
        if rule_set.is_draft:
            raise TuningError("Only a published version can be re-published; publish the draft.")
        if rule_set.is_current:
            raise TuningError(f"{rule_set.label} is already in force.")
        replaced = _put_in_force(rule_set)
        rule_set.is_current = True
        rule_set.save(update_fields=["is_current"])
        RuleSetPublication.objects.create(
            rule_set=rule_set,
            kind=RuleSetPublication.Kind.ROLLBACK,
            by=user,
            note=note,
            replaced=replaced,
        )
    if reassess:
        _reassess_everyone()
    return rule_set


def _reassess_everyone() -> None:
    # Imported here: services imports rules, and tuning must stay importable from the admin early.
    from pathways.services import patients_reassess_after_commit

    patients_reassess_after_commit()


def rule_editor_grant(*, user: Any, publish: bool) -> None:
    """Make a staff user a rule editor (and a publisher when ``publish``)."""
    from django.contrib.auth.models import Permission

    codenames = [f"{a}_{m}" for m in RULE_SET_MODELS for a in ("view", "add", "change", "delete")]
    if publish:
        codenames.append(PUBLISH_PERMISSION.split(".")[1])
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="pathways", codename__in=codenames)
    )


# ---------------------------------------------------------------------------------------------
# Impact preview: the draft and the set in force over every stored patient, in memory.


@dataclass
class PatientImpact:
    patient_id: int
    clinic: str
    mrn: str | None  # None when the patient belongs to a clinic the editor is not a member of
    name: str | None
    appear: list[str] = field(default_factory=list)
    disappear: list[str] = field(default_factory=list)
    follow_ups_appear: list[str] = field(default_factory=list)
    follow_ups_disappear: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def visible(self) -> bool:
        return self.mrn is not None


@dataclass(frozen=True)
class CodeImpact:
    code: str
    appear: int
    disappear: int
    before: int  # patients it fires for (or who have it) under the set in force
    after: int  # … under the draft


@dataclass
class Preview:
    draft_label: str
    published_label: str
    patients: int = 0
    changed: list[PatientImpact] = field(default_factory=list)
    rules: list[CodeImpact] = field(default_factory=list)
    follow_ups: list[CodeImpact] = field(default_factory=list)
    errors: list[PatientImpact] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def hidden_changed(self) -> int:
        return sum(1 for impact in self.changed if not impact.visible)


def _patients_in_chunks(chunk_size: int) -> Iterator[list[Patient]]:
    """Every patient, one chunk at a time (its results and therapies: cases.stored_rows)."""
    last_pk = 0
    while True:
        chunk = list(
            Patient.objects.filter(pk__gt=last_pk)
            .defer("created_at", "updated_at")
            .order_by("pk")[:chunk_size]
        )
        if not chunk:
            return
        yield chunk
        last_pk = chunk[-1].pk


def _codes(result: engine.Result | None) -> tuple[set[str], set[str]]:
    if result is None:
        return set(), set()
    return {r.code for r in result.recommendations}, {f.code for f in result.follow_ups}


def ruleset_preview(
    *,
    draft: RuleSet,
    user: Any,
    published: RuleSet | None = None,
    as_of: date | None = None,
    chunk_size: int = 1000,
) -> Preview:
    """Which recommendations and follow-ups would appear or disappear, per rule and patient.

    Counts cover every patient (rule sets are global); names and MRNs are given only for the
    clinics ``user`` belongs to (patient data stays clinic-scoped).
    """
    started = time.perf_counter()
    published = published or current_rule_set_row()
    new_rules, old_rules = rule_set_for(draft), rule_set_for(published)
    preview = Preview(draft_label=draft.label, published_label=published.label)
    visible_clinics = set(
        Clinic.objects.filter(memberships__user=user).values_list("pk", flat=True)
    )
    clinic_names = dict(Clinic.objects.values_list("pk", "name"))
    as_of = as_of or timezone.localdate()
    before_rules: Counter[str] = Counter()
    after_rules: Counter[str] = Counter()
    before_follow_ups: Counter[str] = Counter()
    after_follow_ups: Counter[str] = Counter()
    appear_rules: Counter[str] = Counter()
    disappear_rules: Counter[str] = Counter()
    appear_follow_ups: Counter[str] = Counter()
    disappear_follow_ups: Counter[str] = Counter()

    for chunk in _patients_in_chunks(chunk_size):
        labs, therapies = stored_rows(chunk)
        for patient in chunk:
            preview.patients += 1
            visible = patient.clinic_id in visible_clinics
            impact = PatientImpact(
                patient_id=patient.pk,
                clinic=clinic_names.get(patient.clinic_id, ""),
                mrn=patient.mrn if visible else None,
                name=patient.name if visible else None,
            )
            old_result = new_result = None
            try:
                case = patient_to_case(
                    patient, as_of=as_of, labs=labs[patient.pk], therapies=therapies[patient.pk]
                )
                old_result = engine.assess(case, old_rules)
                new_result = engine.assess(case, new_rules)
            except (engine.CaseInvalid, engine.RuleEvaluationError, engine.RuleSetInvalid) as err:
                impact.error = _error_text(err)
                preview.errors.append(impact)
                if old_result is None:
                    continue
            old_codes, old_follow_ups = _codes(old_result)
            new_codes, new_follow_ups = _codes(new_result)
            before_rules.update(old_codes)
            after_rules.update(new_codes)
            before_follow_ups.update(old_follow_ups)
            after_follow_ups.update(new_follow_ups)
            if impact.error is not None:
                continue
            impact.appear = sorted(new_codes - old_codes)
            impact.disappear = sorted(old_codes - new_codes)
            impact.follow_ups_appear = sorted(new_follow_ups - old_follow_ups)
            impact.follow_ups_disappear = sorted(old_follow_ups - new_follow_ups)
            appear_rules.update(impact.appear)
            disappear_rules.update(impact.disappear)
            appear_follow_ups.update(impact.follow_ups_appear)
            disappear_follow_ups.update(impact.follow_ups_disappear)
            if (
                impact.appear
                or impact.disappear
                or impact.follow_ups_appear
                or impact.follow_ups_disappear
            ):
                preview.changed.append(impact)

    preview.rules = _code_impacts(
        [r.code for r in new_rules.rules] + [r.code for r in old_rules.rules],
        appear_rules,
        disappear_rules,
        before_rules,
        after_rules,
    )
    preview.follow_ups = _code_impacts(
        [f.code for f in new_rules.follow_ups] + [f.code for f in old_rules.follow_ups],
        appear_follow_ups,
        disappear_follow_ups,
        before_follow_ups,
        after_follow_ups,
    )
    preview.seconds = time.perf_counter() - started
    return preview


def _code_impacts(
    codes: Iterable[str],
    appear: Counter[str],
    disappear: Counter[str],
    before: Counter[str],
    after: Counter[str],
) -> list[CodeImpact]:
    return [
        CodeImpact(code, appear[code], disappear[code], before[code], after[code])
        for code in dict.fromkeys(codes)
    ]


def _error_text(error: Exception) -> str:
    if isinstance(error, engine.CaseInvalid):
        return "invalid stored case: " + "; ".join(str(e) for e in error.errors)
    return str(error)


# ---------------------------------------------------------------------------------------------
# Counts shown beside each rule, and the "try it" box.


def rule_fire_counts() -> Counter[str]:
    """How many patients each rule currently fires for (from the dashboard snapshots)."""
    counts: Counter[str] = Counter()
    for codes in AssessmentSnapshot.objects.values_list("recommendation_codes", flat=True):
        counts.update(set(codes or ()))
    return counts


@dataclass(frozen=True)
class TryOutcome:
    result: engine.Result | None
    errors: tuple[str, ...]
    document: str  # the result document as JSON text, empty on error

    def fired(self, code: str) -> bool:
        return self.result is not None and any(r.code == code for r in self.result.recommendations)


def rule_try_case(*, rule_set: RuleSet, text: str) -> TryOutcome:
    """Assess a pasted case document against ``rule_set`` (a draft: its current state)."""
    try:
        case = engine.parse_case_json(text, today=timezone.localdate())
    except engine.CaseInvalid as invalid:
        return TryOutcome(None, tuple(str(error) for error in invalid.errors), "")
    try:
        result = engine.assess(case, rule_set_for(rule_set))
    except (engine.RuleEvaluationError, engine.RuleSetInvalid) as error:
        return TryOutcome(None, (str(error),), "")
    return TryOutcome(result, (), engine.render_result_json(result))


def rule_example_outcomes(*, rule_set: RuleSet, code: str) -> list[engine.ExampleOutcome]:
    return [o for o in _run_examples_safely(rule_set_for(rule_set)) if o.rule == code]


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
    return str(value)


def _examples_text(rule: engine.Rule) -> dict[str, str]:
    return {
        f"example {example.name!r}": f"{'fires' if example.fires else 'does not fire'}; "
        f"case {example.case}"
        for example in rule.examples
    }


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
        ),
    ),
    ("parameters", "name", ("value", "unit", "minimum", "maximum", "description", "rule")),
    (
        "follow-ups",
        "code",
        ("title", "rules", "when", "anchor", "offset", "offset_unit", "satisfied_by"),
    ),
    ("citations", "key", ("text", "url")),
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
    for section, key_name, names in _SECTIONS:
        old_items = {getattr(i, key_name): i for i in collections[section][0]}
        new_items = {getattr(i, key_name): i for i in collections[section][1]}
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
        return (
            f"{band.test} {band.sex} {band.age_from} {band.age_from_unit} to {upper}: "
            f"ULN {band.uln:g} {band.unit}"
        )
    dose = f"{band.dose_mg:g} mg" if band.dose_mg is not None else "not recommended"
    return f"CrCl {_text(band.crcl_from) or '…'} to {_text(band.crcl_to) or '…'}: {dose}"


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
    for model in _PART_MODELS:
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
