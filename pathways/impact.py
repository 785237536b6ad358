"""What a rule set does to patients: the impact preview of a draft over every stored patient,
how many patients each rule fires for, and the "try it" box for one pasted case."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from django.utils import timezone

from pathways import engine
from pathways.cases import patient_to_case, stored_rows
from pathways.models import AssessmentSnapshot, Clinic, Patient, RuleSet
from pathways.rules import current_rule_set_row, rule_set_for

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


def preview_to_json(preview: Preview) -> dict[str, Any]:
    """The preview as JSON, stored by the background task that computed it."""
    return asdict(preview)


def preview_from_json(data: dict[str, Any]) -> Preview:
    return Preview(
        **{
            **data,
            "changed": [PatientImpact(**impact) for impact in data["changed"]],
            "errors": [PatientImpact(**impact) for impact in data["errors"]],
            "rules": [CodeImpact(**row) for row in data["rules"]],
            "follow_ups": [CodeImpact(**row) for row in data["follow_ups"]],
        }
    )


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
    progress: Callable[[int], None] | None = None,
) -> Preview:
    """Which recommendations and follow-ups would appear or disappear, per rule and patient.

    Counts cover every patient (rule sets are global); names and MRNs are given only for the
    clinics ``user`` belongs to (patient data stays clinic-scoped). ``progress`` is told the
    number of patients done after each chunk (the background task reports it).
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
        if progress is not None:
            progress(preview.patients)

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
