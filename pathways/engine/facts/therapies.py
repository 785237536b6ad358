"""Therapies: which are current, months on them, and the ALP landmarks around each course
(spec §2: "current", months on IV bisphosphonate, the alendronate course)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

from ..case import Clinical, Therapy
from ..dates import add_months, iso_date, whole_months_between
from ..vocabulary import BISPHOSPHONATES, BONE_TARGETED_AGENTS, IV_BISPHOSPHONATES
from .alp import AlpPoint
from .spec import FactSpec as _F
from .spec import in_spec_order, pct_change

ALENDRONATE_COURSE_MONTHS = 6  # S0 6: alendronate 40 mg daily for six months
# spec §5 paget-evaluation: a course without an end is taken to end 6 months after its start.
COURSE_WITHOUT_END_MONTHS = 6
# spec §2: oncology IV bisphosphonate (monthly dosing) with one of these or a known cancer.
ONCOLOGY_DIAGNOSES = frozenset({"multiple_myeloma", "bone_metastases"})

THERAPY_FIELDS: Final = (
    _F(
        "summary",
        "string",
        "",
        "one line for a rationale: agent, dates, months, ALP landmarks",
        "alendronate since 2026-01-10 (10 months since start)",
    ),
    _F(
        "agent",
        "string",
        "",
        "alendronate, zoledronic_acid, pamidronate, denosumab, …",
        "alendronate",
    ),
    _F("start", "date", "", "start date", "2026-01-10"),
    _F("end", "date", "", "end date, null while ongoing", "2026-07-10"),
    _F("started", "bool", "", "start on or before as_of (current or past)", True),
    _F("current", "bool", "", "started and not ended before as_of (spec §2)", True),
    _F("completed", "bool", "", "has an end before as_of", False),
    _F("bisphosphonate", "bool", "", "alendronate, zoledronic acid, pamidronate or other", True),
    _F("iv_bisphosphonate", "bool", "", "zoledronic acid or pamidronate", False),
    _F("bone_targeted", "bool", "", "a bisphosphonate or denosumab", True),
    _F("months_since_start", "int", "months", "whole calendar months start → as_of", 10),
    _F("months_since_end", "int", "months", "whole calendar months end → as_of", 4),
    _F("alp_baseline", "double", "U/L", "the last ALP on or before the start", 412.0),
    _F("alp_baseline_date", "date", "", "date of alp_baseline", "2026-01-02"),
    _F("alp_baseline_elevated", "bool", "", "alp_baseline above its ULN", True),
    _F("alp_elevated_since_start", "bool", "", "any ALP after the start above its ULN", True),
    _F(
        "alp_fall_from_baseline_pct",
        "double",
        "%",
        "how far the latest ALP is below alp_baseline, % of alp_baseline (negative: above)",
        30.0,
    ),
    _F("alp_lowest_since_start", "double", "U/L", "lowest ALP after the start", 98.0),
    _F("alp_latest_after_end", "double", "U/L", "the latest ALP after the end", 150.0),
    _F("alp_latest_after_end_date", "date", "", "date of alp_latest_after_end", "2027-02-01"),
    _F("alp_latest_after_end_elevated", "bool", "", "alp_latest_after_end above its ULN", True),
    _F(
        "alp_rise_after_end_pct",
        "double",
        "%",
        "alp_latest_after_end above alp_lowest_since_start, % of the lowest",
        53.1,
    ),
)

_THERAPY_LIST_EXAMPLE = [{field.name: field.example for field in THERAPY_FIELDS}]
_SUMMARY_EXAMPLE = "alendronate since 2026-01-10 (10 months since start)"

SPECS: Final[tuple[_F, ...]] = (
    _F(
        "therapies",
        "list<therapy>",
        "",
        "every therapy, e.g. therapies.exists(t, t.bisphosphonate && t.started)",
        _THERAPY_LIST_EXAMPLE,
        fields=THERAPY_FIELDS,
    ),
    _F(
        "current_therapies",
        "list<therapy>",
        "",
        "the current therapies (same keys as therapies)",
        _THERAPY_LIST_EXAMPLE,
        fields=THERAPY_FIELDS,
    ),
    _F(
        "therapies_summary",
        "string",
        "",
        'the summaries of every therapy, for rationales ("none" when there are none)',
        _SUMMARY_EXAMPLE,
    ),
    _F(
        "current_therapies_summary",
        "string",
        "",
        'the summaries of the current therapies ("none" when there are none)',
        _SUMMARY_EXAMPLE,
    ),
    _F("on_therapy", "bool", "", "any current therapy", True),
    _F("on_bisphosphonate", "bool", "", "a current bisphosphonate", True),
    _F("on_iv_bisphosphonate", "bool", "", "current zoledronic acid or pamidronate", False),
    _F("on_bone_targeted_agent", "bool", "", "a current bisphosphonate or denosumab", True),
    _F("on_denosumab", "bool", "", "current denosumab", False),
    _F("on_zoledronic_acid", "bool", "", "current zoledronic acid", False),
    _F("on_pamidronate", "bool", "", "current pamidronate", False),
    _F("on_alendronate", "bool", "", "current alendronate", True),
    _F("bisphosphonate_ever", "bool", "", "a bisphosphonate course, current or past", True),
    _F(
        "iv_bisphosphonate_start",
        "date",
        "",
        "start of the current IV bisphosphonate",
        "2025-09-15",
    ),
    _F(
        "months_on_iv_bisphosphonate",
        "int",
        "months",
        "whole calendar months from iv_bisphosphonate_start to as_of",
        14,
    ),
    _F(
        "iv_bisphosphonate_next_anniversary",
        "date",
        "",
        "first monthly anniversary of iv_bisphosphonate_start on or after as_of",
        "2026-12-15",
    ),
    _F(
        "oncology_iv_bisphosphonate",
        "bool",
        "",
        "on IV bisphosphonate with multiple_myeloma, bone_metastases or a known cancer",
        False,
    ),
    _F("denosumab_started", "bool", "", "a denosumab course started on or before as_of", False),
    _F(
        "denosumab_stopped_without_follow_on",
        "bool",
        "",
        "a denosumab course ended before as_of, none current, and no bisphosphonate started "
        "on or after that end (and on or before as_of)",
        False,
    ),
    _F(
        "denosumab_last_end",
        "date",
        "",
        "end (last injection) of the latest-ending denosumab course that ended before as_of",
        "2026-05-01",
    ),
    _F(
        "bisphosphonate_course_end",
        "date",
        "",
        "the most recent bisphosphonate course (latest start): its end, else start + 6 months",
        "2026-07-10",
    ),
    _F(
        "alendronate_course_end",
        "date",
        "",
        "end of the latest alendronate course (start + 6 months when no end)",
        "2026-07-10",
    ),
)


@dataclass(frozen=True)
class TherapyFacts:
    therapy: Therapy
    current: bool
    started: bool
    months_since_start: int | None
    months_since_end: int | None
    alp_baseline: float | None  # the last ALP on or before the start
    alp_baseline_date: date | None


def _ends(therapy: Therapy) -> date:
    return therapy.end or date.max  # an ongoing course ends last


def _most_recent(therapy: Therapy) -> tuple[date, date]:
    """Spec §2: the most recent course is the one with the latest start; of two started the
    same day, the one ending last (an ongoing one last of all), whatever their listed order."""
    return therapy.start, _ends(therapy)


def therapies_facts(
    therapies: Sequence[Therapy],
    as_of: date,
    points: Sequence[AlpPoint],
    clinical: Clinical | None = None,
) -> tuple[dict[str, Any], tuple[TherapyFacts, ...]]:
    """The therapy facts, and each therapy's own facts, by start (then agent and end): the
    same whatever order the courses are listed in, so a stored patient and its document agree."""
    latest = points[-1] if points else None
    per_therapy: list[TherapyFacts] = []
    therapy_maps: list[dict[str, Any]] = []
    for therapy in sorted(therapies, key=lambda t: (t.start, t.agent, _ends(t))):
        facts, therapy_map = _therapy_facts(therapy, as_of, points, latest)
        per_therapy.append(facts)
        therapy_maps.append(therapy_map)
    current = [t.therapy for t in per_therapy if t.current]
    current_agents = {therapy.agent for therapy in current}
    current_iv = [therapy for therapy in current if therapy.agent in IV_BISPHOSPHONATES]
    # Two overlapping IV bisphosphonates: the earliest start counts (longest exposure).
    iv_start = min((therapy.start for therapy in current_iv), default=None)
    months_on_iv = None if iv_start is None else whole_months_between(iv_start, as_of)
    next_anniversary = None
    if iv_start is not None and months_on_iv is not None:
        months = months_on_iv if add_months(iv_start, months_on_iv) >= as_of else months_on_iv + 1
        next_anniversary = add_months(iv_start, months)
    alendronate = [therapy for therapy in therapies if therapy.agent == "alendronate"]
    alendronate_course_end = None
    if alendronate:
        course = max(alendronate, key=_most_recent)
        alendronate_course_end = course.end or add_months(course.start, ALENDRONATE_COURSE_MONTHS)
    # spec §2: denosumab stopped without a follow-on bisphosphonate.
    denosumab_ended = [
        therapy.end
        for therapy in therapies
        if therapy.agent == "denosumab" and therapy.end is not None and therapy.end < as_of
    ]
    denosumab_last_end = max(denosumab_ended, default=None)
    stopped_without_follow_on = (
        denosumab_last_end is not None
        and "denosumab" not in current_agents
        and not any(
            therapy.agent in BISPHOSPHONATES and denosumab_last_end <= therapy.start <= as_of
            for therapy in therapies
        )
    )
    bisphosphonate_courses = [
        therapy
        for therapy in therapies
        if therapy.agent in BISPHOSPHONATES and therapy.start <= as_of
    ]
    bisphosphonate_course_end = None
    if bisphosphonate_courses:
        course = max(bisphosphonate_courses, key=_most_recent)
        bisphosphonate_course_end = course.end or add_months(
            course.start, COURSE_WITHOUT_END_MONTHS
        )
    oncology = clinical is not None and (
        not ONCOLOGY_DIAGNOSES.isdisjoint(clinical.diagnoses) or clinical.cancer is not None
    )
    values = {
        "oncology_iv_bisphosphonate": bool(current_iv) and oncology,
        "denosumab_started": any(
            therapy.agent == "denosumab" and therapy.start <= as_of for therapy in therapies
        ),
        "denosumab_stopped_without_follow_on": stopped_without_follow_on,
        "denosumab_last_end": denosumab_last_end,
        "bisphosphonate_course_end": bisphosphonate_course_end,
        "therapies": therapy_maps,
        "current_therapies": [m for m in therapy_maps if m["current"]],
        "therapies_summary": "; ".join(m["summary"] for m in therapy_maps) or "none",
        "current_therapies_summary": "; ".join(m["summary"] for m in therapy_maps if m["current"])
        or "none",
        "on_therapy": bool(current),
        "on_bisphosphonate": not current_agents.isdisjoint(BISPHOSPHONATES),
        "on_iv_bisphosphonate": bool(current_iv),
        "on_bone_targeted_agent": not current_agents.isdisjoint(BONE_TARGETED_AGENTS),
        "on_denosumab": "denosumab" in current_agents,
        "on_zoledronic_acid": "zoledronic_acid" in current_agents,
        "on_pamidronate": "pamidronate" in current_agents,
        "on_alendronate": "alendronate" in current_agents,
        "bisphosphonate_ever": any(
            t.started and t.therapy.agent in BISPHOSPHONATES for t in per_therapy
        ),
        "iv_bisphosphonate_start": iv_start,
        "months_on_iv_bisphosphonate": months_on_iv,
        "iv_bisphosphonate_next_anniversary": next_anniversary,
        "alendronate_course_end": alendronate_course_end,
    }
    return in_spec_order(SPECS, values), tuple(per_therapy)


def _therapy_facts(
    therapy: Therapy, as_of: date, points: Sequence[AlpPoint], latest: AlpPoint | None
) -> tuple[TherapyFacts, dict[str, Any]]:
    started = therapy.start <= as_of
    current = started and (therapy.end is None or therapy.end >= as_of)
    baseline: AlpPoint | None = None
    since_start: list[AlpPoint] = []
    after_end: AlpPoint | None = None
    for point in points:
        if point.collected_on <= therapy.start:
            baseline = point
        else:
            since_start.append(point)
        if therapy.end is not None and point.collected_on > therapy.end:
            after_end = point
    lowest_since_start = min((point.value for point in since_start), default=None)
    months_since_start = whole_months_between(therapy.start, as_of) if started else None
    ended = therapy.end is not None and therapy.end <= as_of
    months_since_end = (
        whole_months_between(therapy.end, as_of) if therapy.end is not None and ended else None
    )
    fall_from_baseline = None
    if baseline is not None and latest is not None:
        change = pct_change(latest.value, baseline.value)
        fall_from_baseline = None if change is None else -change
    rise_after_end = None
    if after_end is not None and lowest_since_start is not None:
        rise_after_end = pct_change(after_end.value, lowest_since_start)
    therapy_map = {
        "summary": _therapy_summary(
            therapy,
            months_since_start,
            months_since_end,
            baseline,
            fall_from_baseline,
            lowest_since_start,
            after_end,
            rise_after_end,
        ),
        "agent": therapy.agent,
        "start": therapy.start.isoformat(),
        "end": iso_date(therapy.end),
        "started": started,
        "current": current,
        "completed": therapy.end is not None and therapy.end < as_of,
        "bisphosphonate": therapy.agent in BISPHOSPHONATES,
        "iv_bisphosphonate": therapy.agent in IV_BISPHOSPHONATES,
        "bone_targeted": therapy.agent in BONE_TARGETED_AGENTS,
        "months_since_start": months_since_start,
        "months_since_end": months_since_end,
        "alp_baseline": baseline.value if baseline else None,
        "alp_baseline_date": baseline.collected_on.isoformat() if baseline else None,
        "alp_baseline_elevated": baseline.elevated if baseline else None,
        "alp_elevated_since_start": any(point.elevated for point in since_start),
        "alp_fall_from_baseline_pct": fall_from_baseline,
        "alp_lowest_since_start": lowest_since_start,
        "alp_latest_after_end": after_end.value if after_end else None,
        "alp_latest_after_end_date": after_end.collected_on.isoformat() if after_end else None,
        "alp_latest_after_end_elevated": after_end.elevated if after_end else None,
        "alp_rise_after_end_pct": rise_after_end,
    }
    facts = TherapyFacts(
        therapy=therapy,
        current=current,
        started=started,
        months_since_start=months_since_start,
        months_since_end=months_since_end,
        alp_baseline=baseline.value if baseline else None,
        alp_baseline_date=baseline.collected_on if baseline else None,
    )
    return facts, therapy_map


def _u(value: float) -> str:
    return f"{value:g} U/L"


def _therapy_summary(
    therapy: Therapy,
    months_since_start: int | None,
    months_since_end: int | None,
    baseline: AlpPoint | None,
    fall_from_baseline: float | None,
    lowest_since_start: float | None,
    after_end: AlpPoint | None,
    rise_after_end: float | None,
) -> str:
    """One line a rationale can quote: which therapy, since when, and its ALP landmarks."""
    agent = therapy.agent.replace("_", " ")
    if therapy.end is None:
        text = f"{agent} since {therapy.start.isoformat()}"
    else:
        text = f"{agent} {therapy.start.isoformat()} to {therapy.end.isoformat()}"
    timing = []
    if months_since_start is not None:
        timing.append(f"{months_since_start} months since start")
    if months_since_end is not None:
        timing.append(f"{months_since_end} months since end")
    if timing:
        text += f" ({', '.join(timing)})"
    details = []
    if baseline is not None:
        state = "elevated" if baseline.elevated else "not elevated"
        details.append(f"ALP before start {_u(baseline.value)}, {state}")
        if fall_from_baseline is not None:
            direction = "below" if fall_from_baseline >= 0 else "above"
            details.append(f"latest ALP {abs(fall_from_baseline):.1f} % {direction} it")
    if lowest_since_start is not None:
        details.append(f"lowest ALP since start {_u(lowest_since_start)}")
    if after_end is not None:
        state = "elevated" if after_end.elevated else "not elevated"
        line = f"latest ALP after end {_u(after_end.value)}, {state}"
        if rise_after_end is not None:
            line += f", {rise_after_end:.1f} % above the lowest"
        details.append(line)
    return f"{text}: {'; '.join(details)}" if details else text
