"""The bridge between rule sets stored in the database and the engine's RuleSet dataclasses."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

from django.db import connection, transaction

from pathways import engine
from pathways.models import (
    Citation,
    DoseBand,
    FollowUpRule,
    Parameter,
    Rule,
    RuleExample,
    RuleSet,
    UlnBand,
)

# Published sets never change: each is loaded once per process, by primary key. The engine
# keeps their compiled form beside it; clear_cache() empties both, the one way to reset.
_published_cache: dict[int, engine.RuleSet] = {}
_cache_lock = threading.Lock()


def clear_cache() -> None:
    """Forget every loaded and compiled rule set (tests; a restored database)."""
    with _cache_lock:
        _published_cache.clear()
    engine.clear_cache()


# The shipped versions of the catalogue (migrations 0002 and 0016_install_revision_2).
REVISION_1_VERSION = "2026-11-22.1"
REVISION_2_VERSION = "2026-11-29.1"
# The note of revision 2 as installed; the admin recognises the draft awaiting review by it.
REVISION_2_DRAFT_NOTE = (
    "Revision 2 of the clinical contract (spec/pathways.md, 2026-11-29), installed as a draft "
    "because the version in force is this site's own: review it, carry your tuning over, and "
    "publish it with four-eyes review."
)
REVISION_2_PUBLISHED_NOTE = "Revision 2 of the clinical contract (spec/pathways.md, 2026-11-29)."


def revision_2_draft() -> RuleSet | None:
    """Revision 2 installed as a draft for the site's review and not yet published, if any."""
    return (
        RuleSet.objects.filter(note=REVISION_2_DRAFT_NOTE)
        .exclude(status=RuleSet.Status.PUBLISHED)
        .order_by("pk")
        .first()
    )


class NoPublishedRuleSet(Exception):
    pass


def current_rule_set_row() -> RuleSet:
    """The stored row of the rule set in force (for callers that need more than its rules)."""
    row = RuleSet.objects.filter(is_current=True).first()
    if row is None:
        raise NoPublishedRuleSet("No rule set is published: run `python manage.py migrate`.")
    return row


def current_rule_set() -> engine.RuleSet:
    """The published rule set in force, loaded once per process (published sets never change).

    Which set is in force is read from the database on every call, so that a publication or
    a rollback in another process (another gunicorn worker) counts from its next request.
    """
    pk = current_rule_set_pk()
    with _cache_lock:
        cached = _published_cache.get(pk)
    return cached if cached is not None else rule_set_for(RuleSet.objects.get(pk=pk))


def rule_fault_text(rule_set: engine.RuleSet, fault: engine.RuleEvaluationError) -> str:
    """Why no advice can be given: the rule set in force fails on this case (every screen, the
    API and the CDS cards say it alike)."""
    return (
        f"rule set {rule_set.version} could not assess this case ({fault}). The rule set in "
        "force has a fault: a clinical lead corrects it or rolls it back."
    )


def current_rule_set_pk() -> int:
    """The primary key of the rule set in force: one indexed lookup on a plain cursor.

    Every live case-entry update asks this; building the queryset each time cost 0.3-0.5 ms,
    the query itself 0.01 ms, so the ORM's SQL is compiled once per database backend.
    """
    sql, params = _current_pk_query(connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        raise NoPublishedRuleSet("No rule set is published: run `python manage.py migrate`.")
    return int(row[0])


@cache
def _current_pk_query(vendor: str) -> tuple[str, tuple[Any, ...]]:
    query = RuleSet.objects.filter(is_current=True).order_by().values_list("pk")[:1].query
    sql, params = query.get_compiler(connection=connection).as_sql()
    return sql, tuple(params)


def rule_set_for(row: RuleSet) -> engine.RuleSet:
    if row.is_draft:
        return load_rule_set(row)  # drafts change under the editor's hands: never cached
    with _cache_lock:
        cached = _published_cache.get(row.pk)
    if cached is None:
        cached = load_rule_set(row)
        with _cache_lock:
            _published_cache[row.pk] = cached
    return cached


def engine_uln_band(b: UlnBand) -> engine.UlnBand:
    """A stored reference interval as the engine reads it (also one being edited, unsaved)."""
    return engine.UlnBand(
        test=b.test,
        sex=b.sex,
        age_from=b.age_from,
        age_from_unit=b.age_from_unit,
        age_to=b.age_to,
        age_to_unit=b.age_to_unit,
        uln=b.uln,
        unit=b.unit,
        source=b.source,
        lln=b.lln,
        label=b.label,
        menopause=b.menopause,
        gestational_week_from=b.gestational_week_from,
        gestational_week_to=b.gestational_week_to,
        trimester=b.trimester,
    )


def engine_dose_band(d: DoseBand) -> engine.DoseBand:
    """A stored zoledronic acid dose band as the engine reads it (also one being edited)."""
    return engine.DoseBand(
        crcl_from=d.crcl_from, crcl_to=d.crcl_to, dose_mg=d.dose_mg, source=d.source
    )


def load_rule_set(row: RuleSet) -> engine.RuleSet:
    """The engine's RuleSet from the rows of one stored rule set, in a fixed number of queries."""
    examples: dict[int, list[engine.Example]] = defaultdict(list)
    for example in RuleExample.objects.filter(rule_set=row).order_by("pk"):
        examples[example.rule_id].append(
            engine.Example(name=example.name, case=example.case, fires=example.fires)
        )
    rules = tuple(
        engine.Rule(
            code=rule.code,
            pathway=rule.pathway,
            priority=rule.priority,
            title=rule.title,
            rationale=rule.rationale,
            condition=rule.condition,
            citations=tuple(rule.citations),
            enabled=rule.enabled,
            escalate_when=rule.escalate_when or None,
            escalate_to=rule.escalate_to or None,
            examples=tuple(examples[rule.pk]),
            suppressions=tuple(
                engine.Suppression(condition=item["condition"], reason=item["reason"])
                for item in rule.suppressions
            ),
            evidence_note=rule.evidence_note or None,
            reviewed_on=rule.reviewed_on.isoformat() if rule.reviewed_on else None,
        )
        for rule in Rule.objects.filter(rule_set=row).order_by("position", "pk")
    )
    parameters = tuple(
        engine.Parameter(
            name=p.name,
            value=p.value,
            unit=p.unit,
            minimum=p.minimum,
            maximum=p.maximum,
            description=p.description,
            rule=p.rule_code or None,
        )
        for p in Parameter.objects.filter(rule_set=row).order_by("pk")
    )
    follow_ups = tuple(
        engine.FollowUpRule(
            code=f.code,
            title=f.title,
            rules=tuple(f.rules),
            when=f.when or None,
            anchor=f.anchor,
            offset=f.offset_parameter or (f.offset_value or 0),
            offset_unit=f.offset_unit,
            satisfied_by=tuple(f.satisfied_by),
        )
        for f in FollowUpRule.objects.filter(rule_set=row).order_by("position", "pk")
    )
    uln_bands = tuple(
        engine_uln_band(b) for b in UlnBand.objects.filter(rule_set=row).order_by("pk")
    )
    dose_bands = tuple(
        engine_dose_band(d) for d in DoseBand.objects.filter(rule_set=row).order_by("pk")
    )
    citations = tuple(
        engine.Citation(key=c.key, text=c.text, url=c.url, kind=c.kind, grade=c.grade)
        for c in Citation.objects.filter(rule_set=row).order_by("pk")
    )
    return engine.RuleSet(
        version=row.label,
        rules=rules,
        parameters=parameters,
        follow_ups=follow_ups,
        uln_bands=uln_bands,
        za_dose_bands=dose_bands,
        citations=citations,
    )


def install_rule_set(
    data: engine.RuleSet,
    *,
    into: Any,
    get_model: Callable[[str], Any] | None = None,
) -> None:
    """Write every part of ``data`` into the (empty, draft) rule set row ``into``.

    ``get_model`` lets a data migration pass its historical models.
    """
    model = get_model or _current_model
    rules = model("Rule").objects.bulk_create(
        [
            model("Rule")(
                rule_set_id=into.pk,
                position=position,
                code=rule.code,
                pathway=rule.pathway,
                priority=rule.priority,
                title=rule.title,
                rationale=rule.rationale,
                condition=rule.condition,
                escalate_when=rule.escalate_when or "",
                escalate_to=rule.escalate_to or "",
                citations=list(rule.citations),
                enabled=rule.enabled,
                **_revision_2_rule_fields(rule, model("Rule")),
            )
            for position, rule in enumerate(data.rules)
        ]
    )
    rule_ids = {rule.code: rule.pk for rule in rules}
    if any(pk is None for pk in rule_ids.values()):  # backends without RETURNING
        rule_ids = dict(model("Rule").objects.filter(rule_set_id=into.pk).values_list("code", "pk"))
    model("RuleExample").objects.bulk_create(
        [
            model("RuleExample")(
                rule_set_id=into.pk,
                rule_id=rule_ids[rule.code],
                name=example.name,
                case=example.case,
                fires=example.fires,
            )
            for rule in data.rules
            for example in rule.examples
        ]
    )
    model("Parameter").objects.bulk_create(
        [
            model("Parameter")(
                rule_set_id=into.pk,
                name=p.name,
                value=p.value,
                unit=p.unit,
                minimum=p.minimum,
                maximum=p.maximum,
                description=p.description,
                rule_code=p.rule or "",
            )
            for p in data.parameters
        ]
    )
    model("FollowUpRule").objects.bulk_create(
        [
            model("FollowUpRule")(
                rule_set_id=into.pk,
                position=position,
                code=f.code,
                title=f.title,
                rules=list(f.rules),
                when=f.when or "",
                anchor=f.anchor,
                offset_value=f.offset if isinstance(f.offset, int) else None,
                offset_parameter=f.offset if isinstance(f.offset, str) else "",
                offset_unit=f.offset_unit,
                satisfied_by=list(f.satisfied_by),
            )
            for position, f in enumerate(data.follow_ups)
        ]
    )
    model("UlnBand").objects.bulk_create(
        [
            model("UlnBand")(
                rule_set_id=into.pk,
                test=b.test,
                sex=b.sex,
                age_from=b.age_from,
                age_from_unit=b.age_from_unit,
                age_to=b.age_to,
                age_to_unit=b.age_to_unit,
                uln=b.uln,
                unit=b.unit,
                source=b.source,
                **{
                    name: getattr(b, name)
                    for name in engine.ULN_BAND_R2_FIELDS
                    if _has_field(model("UlnBand"), name)
                },
            )
            for b in data.uln_bands
        ]
    )
    model("DoseBand").objects.bulk_create(
        [
            model("DoseBand")(
                rule_set_id=into.pk,
                crcl_from=d.crcl_from,
                crcl_to=d.crcl_to,
                dose_mg=d.dose_mg,
                source=d.source,
            )
            for d in data.za_dose_bands
        ]
    )
    model("Citation").objects.bulk_create(
        [
            model("Citation")(
                rule_set_id=into.pk,
                key=c.key,
                text=c.text,
                url=c.url,
                **_revision_2_citation_fields(c, model("Citation")),
            )
            for c in data.citations
        ]
    )


def _has_field(model_class: Any, name: str) -> bool:
    # Migration 0002 installs revision 1 with the historical models of that time, which have no
    # revision-2 columns yet: only what the model at hand has is written.
    return any(field.name == name for field in model_class._meta.get_fields())


def _revision_2_rule_fields(rule: engine.Rule, model_class: Any) -> dict[str, Any]:
    if not _has_field(model_class, "suppressions"):
        return {}
    return {
        "suppressions": [{"condition": s.condition, "reason": s.reason} for s in rule.suppressions],
        "evidence_note": rule.evidence_note or "",
        "reviewed_on": date.fromisoformat(rule.reviewed_on) if rule.reviewed_on else None,
    }


def _revision_2_citation_fields(citation: engine.Citation, model_class: Any) -> dict[str, Any]:
    if not _has_field(model_class, "kind"):
        return {}
    return {"kind": citation.kind, "grade": citation.grade}


def _current_model(name: str) -> Any:
    from django.apps import apps

    return apps.get_model("pathways", name)


@transaction.atomic
def install_catalogue(
    *,
    version: str,
    get_model: Callable[[str], Any] | None = None,
    path: Path | None = None,
    note: str = "The shipped catalogue.",
) -> Any:
    """Install a shipped catalogue as a published rule set in force (used by the migrations)."""
    model = get_model or _current_model
    rule_set_model = model("RuleSet")
    row = rule_set_model.objects.create(status="draft", note=note)
    install_rule_set(engine.load_catalogue(path, version=version), into=row, get_model=get_model)
    rule_set_model.objects.filter(is_current=True).update(is_current=False)
    row.version = version
    row.status = "published"
    row.is_current = True
    row.save()
    return row
