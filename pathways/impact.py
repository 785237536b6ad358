"""What a rule set does to patients: the impact preview of a draft over every stored patient,
how many patients each rule fires for, and the "try it" box for one pasted case."""

from __future__ import annotations

import bisect
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from django.utils import timezone

from pathways import engine
from pathways.cases import patient_to_case, stored_rows
from pathways.models import AssessmentSnapshot, Clinic, Patient, RuleSet, parameter_label
from pathways.rules import current_rule_set_row, rule_set_for

# ---------------------------------------------------------------------------------------------
# Impact preview: the draft and the set in force over every stored patient, in memory.


DRAFT_FAULT = "under the draft: "  # how a patient's error under the draft begins


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
    # Kept but changed: "code: routine → urgent", "code: 2027-01-10 → 2027-04-10".
    reprioritised: list[str] = field(default_factory=list)
    follow_ups_moved: list[str] = field(default_factory=list)
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
    changed: int = 0  # patients who keep it with another priority (a follow-up: due date)


@dataclass
class ParameterImpact:
    """Where the editor's patients lie against a changed numeric parameter: the fact it is
    compared with, as a histogram, the count on each side of each threshold, the nearest."""

    name: str
    label: str
    unit: str
    minimum: float
    maximum: float
    fact: str
    old: float
    new: float
    patients: int = 0  # the editor's patients with a value for the fact
    above_old: int = 0
    above_new: int = 0
    low: float = 0.0
    high: float = 0.0
    bins: list[int] = field(default_factory=list)
    nearest: list[tuple[str, float]] = field(default_factory=list)  # (MRN, value)

    @property
    def below_old(self) -> int:
        return self.patients - self.above_old

    @property
    def below_new(self) -> int:
        return self.patients - self.above_new


@dataclass
class Preview:
    draft_label: str
    published_label: str
    patients: int = 0
    changed: list[PatientImpact] = field(default_factory=list)
    rules: list[CodeImpact] = field(default_factory=list)
    follow_ups: list[CodeImpact] = field(default_factory=list)
    errors: list[PatientImpact] = field(default_factory=list)
    parameters: list[ParameterImpact] = field(default_factory=list)
    priorities: dict[str, str] = field(default_factory=dict)  # rule code -> priority (draft)
    # Cards gained and lost per priority as the patients have them (a rule's escalation
    # included): {"high": {"appear": n, "disappear": n}}; None in a preview stored before.
    priority_counts: dict[str, dict[str, int]] | None = None
    seconds: float = 0.0
    # The clinics whose patients it names (the requester's when it was computed); None in a
    # preview stored before this was kept. Shown only while the requester is still in each.
    named_clinics: list[int] | None = None

    def names_only_clinics_of(self, clinics: set[int]) -> bool:
        return self.named_clinics is not None and set(self.named_clinics) <= clinics

    @property
    def hidden_changed(self) -> int:
        return sum(1 for impact in self.changed if not impact.visible)


def member_clinics(user: Any) -> set[int]:
    """The clinics whose patients a preview may name for ``user``."""
    return set(Clinic.objects.filter(memberships__user=user).values_list("pk", flat=True))


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
            "parameters": [
                ParameterImpact(**{**row, "nearest": [tuple(n) for n in row["nearest"]]})
                for row in data.get("parameters", [])
            ],
            "priorities": data.get("priorities", {}),
            "priority_counts": data.get("priority_counts"),
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


HISTOGRAM_BINS = 24
NEAREST = 8
_COMPARISON = r"(?:>=|<=|>|<|==)"


def compared_fact(rule_set: engine.RuleSet, parameter: str) -> str | None:
    """The fact a parameter is compared with in a rule condition (``alp_latest > params.x``)."""
    name = re.escape(parameter)
    patterns = (
        re.compile(rf"(?<![\w.])(\w+)\s*{_COMPARISON}\s*params\.{name}\b"),
        re.compile(rf"params\.{name}\s*{_COMPARISON}\s*(\w+)(?![\w.(])"),
    )
    for rule in rule_set.rules:
        for expression in (rule.condition, rule.escalate_when or ""):
            for pattern in patterns:
                for match in pattern.finditer(expression):
                    if match.group(1) in _NUMERIC_FACTS:
                        return match.group(1)
    return None


_NUMERIC_FACTS = frozenset(
    spec.name for spec in engine.FACTS if spec.type in ("number", "int", "float", "double")
)


def _changed_parameters(old: engine.RuleSet, new: engine.RuleSet) -> list[ParameterImpact]:
    before = {parameter.name: parameter for parameter in old.parameters}
    impacts = []
    for parameter in new.parameters:
        was = before.get(parameter.name)
        if was is None or was.value == parameter.value:
            continue
        fact = compared_fact(new, parameter.name)
        if fact is None:
            continue
        impacts.append(
            ParameterImpact(
                name=parameter.name,
                label=parameter_label(parameter.description, parameter.name),
                unit=parameter.unit,
                minimum=parameter.minimum,
                maximum=parameter.maximum,
                fact=fact,
                old=was.value,
                new=parameter.value,
            )
        )
    return impacts


def _distribution(impact: ParameterImpact, values: list[tuple[float, str]]) -> None:
    """Fill the histogram, the counts on each side and the nearest patients to the new value."""
    numbers = sorted(value for value, _ in values)
    impact.patients = len(numbers)
    # Facts above the threshold fire the usual "fact > params.x" rules.
    impact.above_old = len(numbers) - bisect.bisect_right(numbers, impact.old)
    impact.above_new = len(numbers) - bisect.bisect_right(numbers, impact.new)
    low = min([impact.old, impact.new, *numbers[:1]])
    high = max([impact.old, impact.new, *numbers[-1:]])
    if high == low:
        high = low + 1
    impact.low, impact.high = low, high
    width = (high - low) / HISTOGRAM_BINS
    bins = [0] * HISTOGRAM_BINS
    for number in numbers:
        bins[min(int((number - low) / width), HISTOGRAM_BINS - 1)] += 1
    impact.bins = bins
    nearest = sorted(values, key=lambda item: (abs(item[0] - impact.new), item[0]))[:NEAREST]
    impact.nearest = [(mrn, value) for value, mrn in nearest]


def _cards(result: engine.Result | None) -> tuple[dict[str, str], dict[str, str]]:
    """Recommendation code → priority, follow-up code → due date (ISO)."""
    if result is None:
        return {}, {}
    return (
        {r.code: r.priority for r in result.recommendations},
        {f.code: f.due.isoformat() for f in result.follow_ups},
    )


def _kept_but_changed(old: dict[str, str], new: dict[str, str]) -> dict[str, str]:
    """Code → "code: old → new" for each code kept with another value (a card's priority, a
    follow-up's due date)."""
    kept = sorted(old.keys() & new.keys())
    return {code: f"{code}: {old[code]} → {new[code]}" for code in kept if old[code] != new[code]}


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
    same_facts = engine.facts_inputs(new_rules) == engine.facts_inputs(old_rules)
    preview = Preview(draft_label=draft.label, published_label=published.label)
    preview.parameters = _changed_parameters(old_rules, new_rules)
    preview.priorities = {rule.code: rule.priority for rule in old_rules.rules} | {
        rule.code: rule.priority for rule in new_rules.rules
    }
    fact_values: dict[str, list[tuple[float, str]]] = {p.fact: [] for p in preview.parameters}
    visible_clinics = member_clinics(user)
    preview.named_clinics = sorted(visible_clinics)
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
    changed_rules: Counter[str] = Counter()
    changed_follow_ups: Counter[str] = Counter()
    priority_counts: dict[str, dict[str, int]] = {}
    preview.priority_counts = priority_counts

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
            old_result = new_result = old_facts = None
            try:
                case = patient_to_case(
                    patient, as_of=as_of, labs=labs[patient.pk], therapies=therapies[patient.pk]
                )
            except engine.CaseInvalid as err:  # under either version
                impact.error = f"its stored case: {_error_text(err)}"
                preview.errors.append(impact)
                continue
            # Codes only (no rationale text); the facts once when both versions read the same
            # reference tables and fact parameters (a threshold of one rule changed). Each
            # version on its own: a patient one of them fails on still counts under the other
            # (a draft that corrects a fault of the set in force counts the patients it fixes).
            try:
                old_result, old_facts = engine.assess_with_facts(case, old_rules, with_text=False)
            except (engine.RuleEvaluationError, engine.RuleSetInvalid) as err:
                impact.error = f"under {published.label} (in force): {_error_text(err)}"
            try:
                new_result, facts = engine.assess_with_facts(
                    case,
                    new_rules,
                    facts=old_facts if same_facts and old_facts is not None else None,
                    with_text=False,
                )
            except (engine.RuleEvaluationError, engine.RuleSetInvalid) as err:
                under_draft = f"{DRAFT_FAULT}{_error_text(err)}"
                impact.error = f"{impact.error}; {under_draft}" if impact.error else under_draft
            else:
                if visible:  # only the editor's clinics: values and MRNs are patient data
                    for fact, collected in fact_values.items():
                        value = facts.values.get(fact)
                        if isinstance(value, int | float) and not isinstance(value, bool):
                            collected.append((float(value), patient.mrn))
            if impact.error is not None:
                preview.errors.append(impact)
            old_cards, old_follow_ups = _cards(old_result)
            new_cards, new_follow_ups = _cards(new_result)
            if old_result is not None:
                before_rules.update(old_cards.keys())
                before_follow_ups.update(old_follow_ups.keys())
            if new_result is None or old_result is None:
                if new_result is not None:
                    after_rules.update(new_cards.keys())
                    after_follow_ups.update(new_follow_ups.keys())
                continue
            after_rules.update(new_cards.keys())
            after_follow_ups.update(new_follow_ups.keys())
            impact.appear = sorted(new_cards.keys() - old_cards.keys())
            impact.disappear = sorted(old_cards.keys() - new_cards.keys())
            for codes, cards, side in ((impact.appear, new_cards, "appear"),
                                       (impact.disappear, old_cards, "disappear")):  # fmt: skip
                for code in codes:
                    counts = priority_counts.setdefault(cards[code], {"appear": 0, "disappear": 0})
                    counts[side] += 1
            impact.follow_ups_appear = sorted(new_follow_ups.keys() - old_follow_ups.keys())
            impact.follow_ups_disappear = sorted(old_follow_ups.keys() - new_follow_ups.keys())
            reprioritised = _kept_but_changed(old_cards, new_cards)
            moved = _kept_but_changed(old_follow_ups, new_follow_ups)
            impact.reprioritised = list(reprioritised.values())
            impact.follow_ups_moved = list(moved.values())
            appear_rules.update(impact.appear)
            disappear_rules.update(impact.disappear)
            appear_follow_ups.update(impact.follow_ups_appear)
            disappear_follow_ups.update(impact.follow_ups_disappear)
            changed_rules.update(reprioritised.keys())
            changed_follow_ups.update(moved.keys())
            if (
                impact.appear
                or impact.disappear
                or impact.follow_ups_appear
                or impact.follow_ups_disappear
                or impact.reprioritised
                or impact.follow_ups_moved
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
        changed_rules,
    )
    preview.follow_ups = _code_impacts(
        [f.code for f in new_rules.follow_ups] + [f.code for f in old_rules.follow_ups],
        appear_follow_ups,
        disappear_follow_ups,
        before_follow_ups,
        after_follow_ups,
        changed_follow_ups,
    )
    for parameter in preview.parameters:
        _distribution(parameter, fact_values[parameter.fact])
    preview.seconds = time.perf_counter() - started
    return preview


def _code_impacts(
    codes: Iterable[str],
    appear: Counter[str],
    disappear: Counter[str],
    before: Counter[str],
    after: Counter[str],
    changed: Counter[str],
) -> list[CodeImpact]:
    return [
        CodeImpact(code, appear[code], disappear[code], before[code], after[code], changed[code])
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


# ---------------------------------------------------------------------------------------------
# The histogram as SVG geometry (drawn by the template with attributes, never style="…").


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    count: int
    start: float
    end: float


@dataclass(frozen=True)
class Histogram:
    width: int
    height: int
    bars: list[Bar]
    old_x: float
    new_x: float
    low: float
    high: float


def histogram(impact: ParameterImpact, *, width: int = 480, height: int = 140) -> Histogram:
    plot = height - 20  # room under the bars for the axis labels
    span = (impact.high - impact.low) or 1.0
    tallest = max(impact.bins, default=0) or 1
    bar_width = width / max(len(impact.bins), 1)
    step = span / max(len(impact.bins), 1)
    bars = []
    for index, count in enumerate(impact.bins):
        bar_height = plot * count / tallest
        bars.append(
            Bar(
                x=round(index * bar_width, 2),
                y=round(plot - bar_height, 2),
                width=round(max(bar_width - 1, 1), 2),
                height=round(bar_height, 2),
                count=count,
                start=impact.low + index * step,
                end=impact.low + (index + 1) * step,
            )
        )

    def x_of(value: float) -> float:
        return round((value - impact.low) / span * width, 2)

    return Histogram(
        width, height, bars, x_of(impact.old), x_of(impact.new), impact.low, impact.high
    )


def priority_totals(
    rows: Iterable[CodeImpact],
    priorities: dict[str, str],
    counts: dict[str, dict[str, int]] | None = None,
) -> list[dict[str, Any]]:
    """Patients gaining or losing a recommendation, summed per priority (most urgent first):
    the priority of the card each patient gains or loses (``counts``); for a preview stored
    before those were kept, the rule's own priority."""
    totals: dict[str, dict[str, Any]] = {}
    if counts is not None:
        totals = {priority: {"priority": priority, **count} for priority, count in counts.items()}
        rows = ()
    for row in rows:
        priority = priorities.get(row.code, "")
        total = totals.setdefault(priority, {"priority": priority, "appear": 0, "disappear": 0})
        total["appear"] += row.appear
        total["disappear"] += row.disappear
    return sorted(totals.values(), key=lambda t: engine.PRIORITY_RANK.get(t["priority"], 9))
