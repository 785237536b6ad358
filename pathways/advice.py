"""What the clinician sees of a result (spec/pathways.md §0 "Show the working", issue 11).

The patient page and the case-entry page's live assessment show one partial
(``templates/pathways/_advice.html``) built from here: the context line above the advice
(pregnant, child, under 5, renal function unknown, hypercalcaemia, an old ALP), the working
behind it (the ULN and its source, the ALP source with the GGT and bone ALP behind it, the
corrected calcium, the CrCl with its method and date), the recommendations grouped by priority
with their citations (kind and full text) and evidence notes, and the rules that were
considered but stood down, with their reasons. Codes become words here; nothing clinical is
decided here (the engine did that).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from functools import lru_cache
from typing import Any, TypedDict

from django.template.loader import render_to_string
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe

from pathways import engine
from pathways.assessment import with_marked_done
from pathways.card_actions import ActiveActions
from pathways.engine.declaration import unit_shown
from pathways.engine.templates import format_number
from pathways.models import CardAction, FollowUp

PRIORITY_HEADINGS = {
    "urgent": "Urgent",
    "high": "High priority",
    "routine": "Routine",
    "info": "For information",
}
ACTION_GROUPS = {"override": "Overridden", "snooze": "Snoozed"}
# Cards about a window that has passed: kept, collapsed, under "History" (spec §4:
# mm-alp-rise-favourable is display-only history once as_of is past bortezomib_start + 90 days).
HISTORY_GROUP = {"history": "History (a window that has passed)"}
COLLAPSED_GROUPS = ("info", "history")  # shown closed; the clinician opens them

# spec §8: the kind of every citation, shown beside it.
SOURCE_KINDS = {
    "seed": "seed summary (machine-written, pending review)",
    "guideline": "clinical guideline",
    "label": "prescribing information (drug label)",
    "study": "published study",
    "reference": "laboratory reference interval",
    "local": "local choice, to be confirmed by the site",
}

# spec §2: the ALP source, in words.
ALP_SOURCES = {
    "hepatic": "liver (hepatic)",
    "mixed": "mixed: liver and bone both possible",
    "bone": "bone",
    "likely_bone": "likely bone",
    "not_bone": "not bone",
    "unknown": "unknown",
}
_STATES = {"elevated": "raised", "normal": "normal", "unknown": "not measured"}
TIMES = "\u00d7"  # the multiplication sign of "3.2 x ULN"
EN_DASH = "\u2013"
CRCL_METHODS = {
    "measured": "measured",
    "cockcroft-gault": f"Cockcroft{EN_DASH}Gault",
    "cockcroft_gault": f"Cockcroft{EN_DASH}Gault",
    "clinical": "entered as the baseline",
    "unknown": "unknown",
}


class CitationText(TypedDict):
    key: str
    kind: str  # spec §8: seed, guideline, label, study, reference, local ("" when not given)
    kind_label: str
    text: str
    grade: str
    url: str


class CitedRecommendation(TypedDict):
    """A recommendation as the panel shows it, with the full text of its citations."""

    code: str
    priority: str
    title: str
    rationale: str
    sources_html: SafeString  # pathways/_sources.html for its code and citations
    evidence_note: str
    action: CardAction | None  # the clinician's action in force on it, if any
    # The whole card, rendered once per rule with its rationale filled in, where the card has no
    # action and no forms (no ``actions`` given); None where _card.html renders it in full.
    card_html: SafeString | None


class PriorityGroup(TypedDict):
    priority: str  # a priority, an action group ("override", "snooze") or "history"
    heading: str
    recommendations: list[CitedRecommendation]
    collapsed: bool  # shown closed (for information, history)


class ContextItem(TypedDict):
    code: str
    text: str


class WorkingRow(TypedDict):
    name: str  # a stable name for tests and tools (data-working)
    label: str
    text: str


class Considered(TypedDict):
    code: str
    title: str
    reason: str


# ---------------------------------------------------------------------------------------------
# Reading the result and the facts (a value not computed reads as None: not shown).


def _known(result: engine.Result, facts: engine.Facts | None, *names: str) -> Any:
    """The first of ``names`` the result's findings (spec §6), else the facts, hold a value for
    (None when none does: not shown)."""
    for name in names:
        value = getattr(result.findings, name, None)
        if value is None and facts is not None:
            value = facts.values.get(name)
        if value is not None:
            return value
    return None


def _number(value: Any, digits: int = 1) -> str:
    """412.0 -> "412", 3.194 -> "3.2" (digits after the point, trailing zeros dropped)."""
    text = f"{float(value):.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _day(value: Any) -> str:
    if isinstance(value, date):
        return value.isoformat()
    return str(value) if value else ""


# ---------------------------------------------------------------------------------------------
# Citations and recommendations.


def _citation_index(result: engine.Result, rule_set: engine.RuleSet) -> dict[str, Any]:
    """Every citation the result can name: the result's own ``sources`` (spec §6) over the
    rule set's citations."""
    return {**{citation.key: citation for citation in rule_set.citations}, **result.sources}


def citation_text(key: str, source: engine.Citation | None) -> CitationText:
    """A citation as a card shows it: its key, kind (spec §8), full text, grade and link."""
    if source is None:
        return {"key": key, "kind": "", "kind_label": "", "text": key, "grade": "", "url": ""}
    return {
        "key": key,
        "kind": source.kind,
        "kind_label": SOURCE_KINDS.get(source.kind, source.kind),
        "text": source.text,
        "grade": source.grade,
        "url": source.url,
    }


@lru_cache(maxsize=4096)
def sources_html(code: str, sources: tuple[tuple[str, engine.Citation | None], ...]) -> SafeString:
    """A card's sources block. It depends only on the rule's code and its citations, not on the
    case, so each is rendered once per process (a third of the live update's rendering)."""
    citations = [citation_text(key, source) for key, source in sources]
    return render_to_string("pathways/_sources.html", {"code": code, "citations": citations})


# Stands for the rationale while a card's markup is rendered once per rule (``card_html``): no
# rule's title, note or source can hold a NUL, and escaping leaves it as it is.
_RATIONALE_SLOT = "\x00rationale\x00"


@lru_cache(maxsize=4096)
def _card_around_rationale(
    code: str,
    priority: str,
    title: str,
    evidence_note: str,
    sources: tuple[tuple[str, engine.Citation | None], ...],
) -> tuple[str, str]:
    """``pathways/_card.html`` for a card with no action and no forms, split where the
    rationale goes. Everything else on such a card is the rule's (escalation changes only
    its priority), so each is rendered once per process: the live update's ~10 cards then
    cost a concatenation each rather than ~15 template nodes each."""
    card = {
        "code": code,
        "priority": priority,
        "title": title,
        "rationale": _RATIONALE_SLOT,
        "sources_html": sources_html(code, sources),
        "evidence_note": evidence_note,
        "action": None,
    }
    before, after = render_to_string("pathways/_card.html", {"rec": card}).split(_RATIONALE_SLOT)
    return before, after


def card_html(
    recommendation: engine.Recommendation,
    sources: tuple[tuple[str, engine.Citation | None], ...],
) -> SafeString:
    """A card with no action in force and no action forms (the live update's cards)."""
    before, after = _card_around_rationale(
        recommendation.code,
        recommendation.priority,
        recommendation.title,
        recommendation.evidence_note or "",
        sources,
    )
    # Safe: the parts are rendered, escaped markup and the rationale is escaped here.
    return mark_safe(before + conditional_escape(recommendation.rationale) + after)


def history_codes(
    result: engine.Result,
    rule_set: engine.RuleSet,
    case: engine.Case | None,
    stored: Sequence[FollowUp] = (),
) -> set[str]:
    """Cards about a window that has passed: ``mm-alp-rise-favourable`` once as_of is past
    bortezomib_start + ``mm_alp_history_days``, and ``mm-alp-3-6-months`` once both of its
    follow-ups are done, by a result or marked done by hand (``stored``: the patient's
    follow-ups, as the schedule beside the advice shows them)."""
    codes: set[str] = set()
    days = rule_set.parameter_values().get("mm_alp_history_days")
    start = case.clinical.myeloma.bortezomib_start if case is not None else None
    if days is not None and start is not None and result.as_of > start + timedelta(days=days):
        codes.add("mm-alp-rise-favourable")
    statuses = {item.code: item.status for item in with_marked_done(result, stored).follow_ups}
    if statuses.get("alp-3-months") == statuses.get("alp-6-months") == "done":
        codes.add("mm-alp-3-6-months")
    return codes


def recommendation_groups(
    result: engine.Result,
    rule_set: engine.RuleSet,
    actions: ActiveActions | None = None,
    *,
    case: engine.Case | None = None,
    stored: Sequence[FollowUp] = (),
) -> list[PriorityGroup]:
    """The recommendations by priority; citations are read from the result's sources and from
    ``rule_set``, the set that produced ``result``. Cards overridden or snoozed move to groups
    of their own, after the advice, and so do cards about a window that has passed (history);
    an acknowledged card stays in its group, marked. With ``actions`` (the patient page) each
    card is rendered in full with its action forms; without, from its rule's rendering."""
    citations = _citation_index(result, rule_set)
    past = history_codes(result, rule_set, case, stored)
    by_priority: dict[str, list[CitedRecommendation]] = {}
    for recommendation in result.recommendations:
        action = actions.get(recommendation.code) if actions is not None else None
        group = recommendation.priority
        if action is not None and action.kind in ACTION_GROUPS:
            group = action.kind
        elif recommendation.code in past:
            group = "history"
        sources = tuple((key, citations.get(key)) for key in recommendation.citations)
        by_priority.setdefault(group, []).append(
            {
                "code": recommendation.code,
                "priority": recommendation.priority,
                "title": recommendation.title,
                "rationale": recommendation.rationale,
                "sources_html": sources_html(recommendation.code, sources),
                "evidence_note": recommendation.evidence_note or "",
                "action": action,
                "card_html": card_html(recommendation, sources) if actions is None else None,
            }
        )
    headings = {**PRIORITY_HEADINGS, **ACTION_GROUPS, **HISTORY_GROUP}
    return [
        {
            "priority": group,
            "heading": headings[group],
            "recommendations": by_priority[group],
            "collapsed": group in COLLAPSED_GROUPS,
        }
        for group in (*engine.PRIORITIES, *ACTION_GROUPS, *HISTORY_GROUP)
        if group in by_priority
    ]


def do_today(groups: list[PriorityGroup]) -> list[CitedRecommendation]:
    """The urgent and high cards still in the advice (not overridden, snoozed or history): the
    one line the advice opens with."""
    return [
        recommendation
        for group in groups
        if group["priority"] in ("urgent", "high")
        for recommendation in group["recommendations"]
    ]


def considered_not_advised(result: engine.Result, rule_set: engine.RuleSet) -> list[Considered]:
    """The rules stood down by a context (spec §4: ``suppressed``), with their reasons."""
    rows: list[Considered] = []
    for item in result.suppressed:
        rule = rule_set.rule(item.code)
        rows.append(
            {"code": item.code, "title": rule.title if rule else item.code, "reason": item.reason}
        )
    return rows


# ---------------------------------------------------------------------------------------------
# The context line.


_TRIMESTERS = {1: "first", 2: "second", 3: "third"}


def _pregnancy_text(
    result: engine.Result, case: engine.Case | None, facts: engine.Facts | None
) -> str:
    """The week, the trimester and the ALP range used (reference-intervals.md, pregnancy)."""
    weeks = _known(result, facts, "gestational_weeks")
    if weeks is None and case is not None:
        weeks = case.patient.gestational_weeks
    text = "Pregnant" + (f", week {weeks}" if weeks is not None else ", week not given")
    trimester = _TRIMESTERS.get(_known(result, facts, "pregnancy_trimester"))
    if trimester:
        text += f" ({trimester} trimester)"
    uln = result.findings.alp_uln
    source = _uln_source_text(result.findings.alp_uln_source or "")
    if uln is not None and source:
        text += f": ALP range used {EN_DASH} ULN {_number(uln)} U/L, {source}"
        at_alp = _known(result, facts, "alp_gestational_week")
        if at_alp is not None and at_alp != weeks:
            text += f" (the latest ALP was drawn in week {at_alp})"
        return text
    if weeks is None:
        return f"{text}: the third-trimester ALP range applies to results of the last 40 weeks"
    return text


def context_line(
    result: engine.Result,
    case: engine.Case | None = None,
    facts: engine.Facts | None = None,
) -> list[ContextItem]:
    """The contexts the result reports (spec §2 ``context``), each in words."""
    codes = list(result.context)
    items: list[ContextItem] = []
    age = _known(result, facts, "age_years")
    age_text = f" (age {age})" if age is not None else ""
    for code in codes:
        if code == "pregnant":
            text = _pregnancy_text(result, case, facts)
        elif code == "child":
            if "under_5" in codes:
                continue  # said once, by under_5
            text = (
                f"Child{age_text}: ALP limits for age and sex; advice meant for adults is "
                "stood down"
            )
        elif code == "under_5":
            text = (
                f"Child under 5{age_text}: ALP limits for age and sex; transient "
                "hyperphosphatasaemia is considered for a very high ALP"
            )
        elif code == "renal_function_unknown":
            text = (
                "Renal function unknown: no recent CrCl, nor a creatinine with a weight for "
                "Cockcroft\u2013Gault; a bisphosphonate's choice and dose need a number"
            )
        elif code == "hypercalcaemia":
            corrected = result.findings.calcium_corrected
            uln = _known(result, facts, "calcium_uln")
            text = "Hypercalcaemia"
            if corrected is not None:
                text += f": corrected calcium {_number(corrected, 2)} mg/dL"
                text += f" (ULN {_number(uln, 2)})" if uln is not None else ""
        elif code == "alp_not_recent":
            latest = _known(result, facts, "alp_latest_date")
            when = f" ({_day(latest)})" if latest else ""
            text = f"Latest ALP is not recent{when}: it drives no advice until repeated"
        else:
            text = code.replace("_", " ")
        items.append({"code": code, "text": text})
    return items


# ---------------------------------------------------------------------------------------------
# The working.


def _uln_source_text(source: str) -> str:
    if not source:
        return ""
    return "the lab's limit" if source == "lab" else source


def _alp_row(result: engine.Result, facts: engine.Facts | None) -> WorkingRow:
    latest = result.findings.alp_latest
    if latest is None:
        return {"name": "alp", "label": "Latest ALP", "text": "not measured"}
    parts = [f"{_number(latest)} U/L"]
    when = _known(result, facts, "alp_latest_date")
    if when:
        parts[0] += f" on {_day(when)}"
    uln = result.findings.alp_uln
    x_uln = result.findings.alp_x_uln
    if x_uln is not None and uln is not None:
        parts.append(f"{_number(x_uln, 2)} {TIMES} ULN")
    if _known(result, facts, "alp_recent") is False:  # spec §2: neither elevated nor normal
        parts.append("not recent: neither elevated nor normal until repeated")
    else:
        parts.append("elevated" if result.findings.alp_elevated else "not elevated")
    return {"name": "alp", "label": "Latest ALP", "text": " · ".join(parts)}


def _uln_row(result: engine.Result, facts: engine.Facts | None) -> WorkingRow | None:
    uln = result.findings.alp_uln
    if uln is None:
        return None
    source = _uln_source_text(
        result.findings.alp_uln_source or _known(result, facts, "alp_uln_source") or ""
    )
    text = f"{_number(uln)} U/L" + (f" — {source}" if source else "")
    return {"name": "uln", "label": "ALP ULN", "text": text}


def _lab_state(label: str, state: str | None, value: Any, unit: str, uln: Any = None) -> str:
    if state in (None, "unknown") and value is None:
        return f"{label} not measured"
    text = label
    if value is not None:
        text += f" {_number(value)} {unit}".rstrip()
    if state == "unknown":  # measured, with no limit to read it against (a child's, say)
        return f"{text} (no reference limit for this patient)"
    if state:
        text += f" ({_STATES.get(state, state)}"
        text += f", ULN {_number(uln)})" if uln is not None else ")"
    return text


def _source_row(result: engine.Result, facts: engine.Facts | None) -> WorkingRow | None:
    source = result.findings.alp_source or _known(result, facts, "alp_source")
    if source is None:
        return None
    ggt = _lab_state(
        "GGT",
        result.findings.ggt or _known(result, facts, "ggt"),
        _known(result, facts, "ggt_latest"),
        "U/L",
        _known(result, facts, "ggt_uln"),
    )
    bone = _lab_state(
        "B-ALP",
        result.findings.bone_alp or _known(result, facts, "bone_alp"),
        _known(result, facts, "bone_alp_latest"),
        unit_shown("bone_alp", _known(result, facts, "bone_alp_unit") or ""),
        _known(result, facts, "bone_alp_uln"),
    )
    behind = [ggt]
    alt_value = _known(result, facts, "alt_latest")
    if alt_value is not None:  # spec §2: ALT counts for a liver source when GGT is unknown
        alt = _known(result, facts, "alt")
        behind.append(_lab_state("ALT", alt, alt_value, "U/L", _known(result, facts, "alt_uln")))
    text = f"{ALP_SOURCES.get(source, source)} — {', '.join(behind)}; {bone}"
    return {"name": "alp_source", "label": "ALP source", "text": text}


def _calcium_row(result: engine.Result, facts: engine.Facts | None) -> WorkingRow | None:
    corrected = result.findings.calcium_corrected
    if corrected is None:
        corrected = _known(result, facts, "calcium_corrected")
    if corrected is None:
        return None
    calcium = _known(result, facts, "calcium_latest")
    albumin = _known(result, facts, "calcium_albumin")
    behind = []
    if calcium is not None:
        behind.append(f"calcium {_number(calcium, 2)} mg/dL")
    if albumin is not None:
        behind.append(f"albumin {_number(albumin, 2)} g/dL")
    elif calcium is not None:
        behind.append("not corrected: no albumin within 7 days")
    text = f"{_number(corrected, 2)} mg/dL" + (f" ({', '.join(behind)})" if behind else "")
    return {"name": "calcium", "label": "Corrected calcium", "text": text}


def _crcl_row(result: engine.Result, facts: engine.Facts | None) -> WorkingRow:
    current = result.findings.crcl_current
    method = result.findings.crcl_method or _known(result, facts, "crcl_method")
    if current is None:
        text = "unknown (no recent CrCl, or creatinine with weight for an adult)"
    else:
        # format_number, as the cards: 49.7 is not "50" (the next dose band), nor 29.6 "30".
        text = f"{format_number(current)} mL/min · {CRCL_METHODS.get(method or '', method or '')}"
        if method in ("cockcroft-gault", "cockcroft_gault"):
            creatinine = _known(result, facts, "crcl_creatinine")
            weight = _known(result, facts, "crcl_weight_kg")
            used = []
            if creatinine is not None:
                used.append(f"creatinine {_number(creatinine, 2)} mg/dL")
            if weight is not None:
                used.append(f"{_number(weight)} kg")
            if used:
                text += f" from {' and '.join(used)}"
        when = _known(result, facts, "crcl_current_date")
        if when:
            text += f" · {_day(when)}"
    baseline = result.findings.crcl_baseline
    if baseline is not None:
        text += f" · baseline {format_number(baseline)} mL/min"
    dosing = result.findings.za_dosing_crcl
    if dosing is not None:
        text += f" · zoledronic acid dosed at CrCl {format_number(dosing)} mL/min"
    return {"name": "crcl", "label": "CrCl", "text": text.strip(" ·")}


def working(result: engine.Result, facts: engine.Facts | None = None) -> list[WorkingRow]:
    """The findings behind the advice, each with where it came from."""
    rows: list[WorkingRow | None] = [
        {"name": "pathway", "label": "Pathway", "text": engine.PATHWAY_LABELS[result.pathway]},
        _alp_row(result, facts),
        _uln_row(result, facts),
        _source_row(result, facts),
        _calcium_row(result, facts),
        _crcl_row(result, facts),
    ]
    return [row for row in rows if row is not None]


def summary_line(groups: list[PriorityGroup]) -> str:
    """The advice in a few words, for the live region ("5 recommendations: 1 urgent, 2 high"):
    a screen reader hears this, not the whole panel, after each update. It counts the cards
    still in the advice, as the "do today" line does: not those overridden, snoozed or in the
    history."""
    shown = [
        (group["priority"], len(group["recommendations"]))
        for group in groups
        if group["priority"] in engine.PRIORITIES
    ]
    total = sum(n for _, n in shown)
    counts = [f"{n} {priority}" for priority, n in shown if priority in ("urgent", "high") and n]
    text = f"{total} recommendation{'' if total == 1 else 's'}"
    return f"{text}: {', '.join(counts)}" if counts else text


def advice_context(
    result: engine.Result,
    rule_set: engine.RuleSet,
    *,
    case: engine.Case | None = None,
    facts: engine.Facts | None = None,
    actions: ActiveActions | None = None,
    stored: Sequence[FollowUp] = (),
) -> dict[str, Any]:
    """The template context of ``pathways/_advice.html``. ``actions``: the patient's card actions,
    given where the clinician can act on the cards (the action forms are shown); ``stored``:
    the patient's follow-ups, with those marked done by hand."""
    return {
        "card_actions": actions is not None,
        "result": result,
        "pathway_label": engine.PATHWAY_LABELS[result.pathway],
        "context_items": context_line(result, case, facts),
        "working_rows": working(result, facts),
        "groups": (
            groups := recommendation_groups(result, rule_set, actions, case=case, stored=stored)
        ),
        "do_today": do_today(groups),
        "summary_line": summary_line(groups),
        "considered": considered_not_advised(result, rule_set),
    }
