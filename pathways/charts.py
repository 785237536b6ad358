"""Server-side SVG charts: the ALP trend of one patient and its B-ALP / CrCl small multiples.

Pure functions from the engine's facts (never recomputed here) to small dataclasses that
templates/pathways/_chart.html draws. Everything a colour says is also said by a shape, a
dash pattern or a text label, so the chart reads in black and white on paper.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, time, timedelta

from pathways import engine

WIDTH = 720
HEIGHT = 280
SMALL_HEIGHT = 150
MARGIN_LEFT = 52
MARGIN_RIGHT = 16
MARGIN_TOP = 18
MARGIN_BOTTOM = 58  # room for the date axis and the therapy track
LABEL_ALL_POINTS_UP_TO = 16  # beyond this, only first, last and significant points get labels
TIMES = "\u00d7"  # the multiplication sign of "3.2 x ULN"
EN_DASH = "\u2013"


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class ChartPoint:
    x: float
    y: float
    value: float
    label: str  # the value as printed beside the point ("" when crowded)
    title: str  # hover text: date, value, times ULN, % change
    shape: str  # "circle", "rise" (triangle up) or "fall" (triangle down): significant change
    polygon: str  # the triangle's points when shape is not a circle
    filled: bool  # above the ULN
    significant: bool


@dataclass(frozen=True)
class Marker:
    x: float
    label: str
    title: str
    kind: str  # "start" or "end"


@dataclass(frozen=True)
class Span:
    x1: float
    x2: float
    y: float
    label: str
    title: str
    kind: str  # "window" (bortezomib day 0-42) or "course" (a bisphosphonate course)

    @property
    def width(self) -> float:
        return max(self.x2 - self.x1, 1.0)


@dataclass(frozen=True)
class Line:
    path: str
    label: str
    label_x: float
    label_y: float
    title: str
    anchor: str = "end"  # text-anchor of the label


@dataclass(frozen=True)
class Chart:
    name: str  # "alp", "bone_alp", "crcl": for element ids
    title: str
    unit: str
    height: int
    bottom: float  # the plot's bottom edge; the date axis and the therapy track sit below it
    points: tuple[ChartPoint, ...]
    path: str  # the line joining the points
    reference: Line | None  # ULN (or the renal-impairment threshold for CrCl)
    baseline: Line | None
    markers: tuple[Marker, ...]
    spans: tuple[Span, ...]
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    description: str  # the chart in one sentence, for screen readers

    # Every chart has the same width and side margins, so that the small multiples line up.
    width = WIDTH
    left = MARGIN_LEFT
    top = MARGIN_TOP
    right = WIDTH - MARGIN_RIGHT

    @property
    def plot_height(self) -> float:
        return self.bottom - self.top


# ---------------------------------------------------------------------------------------------
# Scales.


def _moment(day: date, at: time | None = None) -> float:
    """Days since the epoch, with the time of day as a fraction (unknown time: midnight)."""
    seconds = 0 if at is None else at.hour * 3600 + at.minute * 60 + at.second
    return day.toordinal() + seconds / 86400


@dataclass(frozen=True)
class _TimeScale:
    start: float
    end: float
    left: float
    right: float

    @classmethod
    def over(cls, days: Sequence[date], left: float, right: float) -> _TimeScale:
        start = min(days).toordinal()
        end = max(days).toordinal() + 1
        pad = max((end - start) * 0.03, 2)
        return cls(start - pad, end + pad, left, right)

    def __call__(self, moment: float) -> float:
        return round(self.left + (moment - self.start) / (self.end - self.start) * self.span, 2)

    @property
    def span(self) -> float:
        return self.right - self.left

    def clamp(self, x: float) -> float:
        return min(max(x, self.left), self.right)

    def ticks(self) -> tuple[Tick, ...]:
        first = date.fromordinal(math.ceil(self.start))
        last = date.fromordinal(math.floor(self.end))
        months = (last.year - first.year) * 12 + last.month - first.month
        step = next(s for s in (1, 2, 3, 6, 12, 24, 60) if months / s <= 7)
        ticks = []
        year, month = first.year, first.month
        if first.day != 1:
            year, month = (year, month + 1) if month < 12 else (year + 1, 1)
        while date(year, month, 1) <= last:
            if (month - 1) % step == 0 or step == 1:
                label = f"{date(year, month, 1):%b %Y}" if step < 12 else str(year)
                ticks.append(Tick(self(date(year, month, 1).toordinal()), label))
            year, month = (year, month + 1) if month < 12 else (year + 1, 1)
        return tuple(ticks)


@dataclass(frozen=True)
class _ValueScale:
    low: float
    high: float
    top: float
    bottom: float

    @classmethod
    def over(cls, values: Sequence[float], top: float, bottom: float) -> _ValueScale:
        high = max(values) if values else 1.0
        step = _nice_step(high * 1.15 / 4)
        return cls(0.0, step * math.ceil(high * 1.15 / step), top, bottom)

    def __call__(self, value: float) -> float:
        span = (self.high - self.low) or 1.0
        return round(self.bottom - (value - self.low) / span * (self.bottom - self.top), 2)

    def ticks(self) -> tuple[Tick, ...]:
        step = _nice_step((self.high - self.low) / 4)
        ticks, value = [], self.low
        while value <= self.high + step / 1000:
            ticks.append(Tick(self(value), _number(value)))
            value += step
        return tuple(ticks)


def _nice_step(rough: float) -> float:
    if rough <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(rough))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= rough)


def _number(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 10 or float(value).is_integer() else f"{value:.1f}"


def _when(day: date, at: time | None) -> str:
    return day.isoformat() + ("" if at is None else f" {at:%H:%M}")


def _path(points: Sequence[tuple[float, float]]) -> str:
    return " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(points))


def _triangle(x: float, y: float, up: bool, size: float = 6.5) -> str:
    tip = y - size if up else y + size
    base = y + size * 0.7 if up else y - size * 0.7
    return f"{x:.1f},{tip:.1f} {x - size:.1f},{base:.1f} {x + size:.1f},{base:.1f}"


# ---------------------------------------------------------------------------------------------
# The ALP trend.


def chart_days(case: engine.Case) -> list[date]:
    """The dates every chart of the patient spans, so the small multiples line up."""
    days = [lab.collected_on for lab in case.labs if lab.test in ("alp", "bone_alp", "crcl")]
    if not days:
        return []
    first = min(days)
    for therapy in case.clinical.therapies:
        days.append(max(therapy.start, first - timedelta(days=60)))
        if therapy.end is not None and therapy.end >= first:
            days.append(min(therapy.end, case.as_of))
    bortezomib_start = case.clinical.myeloma.bortezomib_start
    if bortezomib_start is not None and bortezomib_start >= first - timedelta(days=60):
        days.append(bortezomib_start)
    days.append(max(days))
    return days


def alp_chart(case: engine.Case, facts: engine.Facts) -> Chart | None:
    """The ALP trend from the engine's facts; None when there is no ALP result."""
    alp_points = facts.alp_points
    if not alp_points:
        return None
    bottom = HEIGHT - MARGIN_BOTTOM
    x_scale = _TimeScale.over(chart_days(case), Chart.left, Chart.right)
    values = [p.value for p in alp_points] + [p.uln for p in alp_points if p.uln]
    y_scale = _ValueScale.over(values, Chart.top, bottom)
    label_all = len(alp_points) <= LABEL_ALL_POINTS_UP_TO

    points = []
    for index, point in enumerate(alp_points):
        x, y = x_scale(_moment(point.collected_on, point.collected_time)), y_scale(point.value)
        change = point.change_pct
        shape = "circle"
        if point.significant_change and change is not None:
            shape = "rise" if change > 0 else "fall"
        parts = [
            f"{_when(point.collected_on, point.collected_time)}: ALP {_number(point.value)} U/L"
        ]
        if point.x_uln is not None and point.uln is not None:
            parts.append(
                f"{point.x_uln:.2f} {TIMES} ULN (ULN {_number(point.uln)}, {point.uln_source})"
            )
        if change is not None:
            parts.append(f"{change:+.0f} % from the previous result")
            if point.significant_change:
                parts.append(f"significant: beyond the RCV of {facts.rcv_pct:.0f} %")
        show_label = label_all or point.significant_change or index in (0, len(alp_points) - 1)
        label = _number(point.value)
        if change is not None and point.significant_change:
            label += f" ({change:+.0f} %)"
        points.append(
            ChartPoint(
                x=x,
                y=y,
                value=point.value,
                label=label if show_label else "",
                title="; ".join(parts),
                shape=shape,
                polygon="" if shape == "circle" else _triangle(x, y, shape == "rise"),
                filled=point.elevated,
                significant=point.significant_change,
            )
        )

    reference = _uln_line(alp_points, x_scale, y_scale)
    baseline = _baseline_line(facts, x_scale, y_scale)
    markers, spans = _therapy_marks(case, facts, x_scale, bottom)
    significant = sum(1 for p in alp_points if p.significant_change)
    latest = alp_points[-1]
    description = (
        f"ALP trend: {len(alp_points)} results from {alp_points[0].collected_on} to "
        f"{latest.collected_on}; latest {_number(latest.value)} U/L"
        + (f", {latest.x_uln:.1f} {TIMES} ULN" if latest.x_uln else "")
        + f"; {significant} change(s) beyond the RCV."
    )
    return Chart(
        name="alp",
        title="Total ALP",
        unit="U/L",
        height=HEIGHT,
        bottom=bottom,
        points=tuple(points),
        path=_path([(p.x, p.y) for p in points]),
        reference=reference,
        baseline=baseline,
        markers=markers,
        spans=spans,
        x_ticks=x_scale.ticks(),
        y_ticks=y_scale.ticks(),
        description=description,
    )


def _uln_line(
    alp_points: Sequence[engine.AlpPoint], x_scale: _TimeScale, y_scale: _ValueScale
) -> Line | None:
    """The ULN as a step line: each result's own ULN (lab or age/sex band) until the next."""
    steps: list[tuple[float, float]] = []
    with_uln = [p for p in alp_points if p.uln]
    if not with_uln:
        return None
    for index, point in enumerate(with_uln):
        assert point.uln is not None
        y = y_scale(point.uln)
        x = (
            x_scale.left
            if index == 0
            else x_scale(_moment(point.collected_on, point.collected_time))
        )
        if steps:
            steps.append((x, steps[-1][1]))
        steps.append((x, y))
    steps.append((x_scale.right, steps[-1][1]))
    latest = with_uln[-1]
    assert latest.uln is not None
    return Line(
        path=_path(steps),
        label=f"ULN {_number(latest.uln)}",
        label_x=x_scale.left + 4,
        label_y=steps[0][1] + 12,
        anchor="start",  # the latest points sit at the right: keep the label clear of them
        title=f"Upper limit of normal: {_number(latest.uln)} U/L ({latest.uln_source})",
    )


def _baseline_line(facts: engine.Facts, x_scale: _TimeScale, y_scale: _ValueScale) -> Line | None:
    """The ALP baseline before bortezomib (S3 5), else before the latest current therapy."""
    baseline_value: float | None = None
    baseline_date: date | None = None
    what = ""
    if facts.bortezomib_baseline_date is not None and facts["mm_baseline_alp"] is not None:
        baseline_value, baseline_date = facts["mm_baseline_alp"], facts.bortezomib_baseline_date
        what = "before bortezomib"
    else:
        current = [t for t in facts.therapies if t.current and t.alp_baseline is not None]
        if current:
            latest = max(current, key=lambda t: t.therapy.start)
            baseline_value, baseline_date = latest.alp_baseline, latest.alp_baseline_date
            what = f"before {_label(latest.therapy.agent)}"
    if baseline_value is None or baseline_date is None:
        return None
    x = x_scale(_moment(baseline_date))
    y = y_scale(baseline_value)
    return Line(
        path=_path([(x, y), (x_scale.right, y)]),
        label=f"baseline {_number(baseline_value)}",
        label_x=x + 4,
        label_y=y - 4,  # above its line; the ULN label sits below the ULN line
        title=f"Baseline ALP {_number(baseline_value)} U/L on {baseline_date} ({what})",
    )


def _label(agent: str) -> str:
    return agent.replace("_", " ")


def _therapy_marks(
    case: engine.Case, facts: engine.Facts, x_scale: _TimeScale, bottom: float
) -> tuple[tuple[Marker, ...], tuple[Span, ...]]:
    markers: list[Marker] = []
    spans: list[Span] = []
    track = bottom + 30  # the therapy track sits under the date axis
    for therapy in case.clinical.therapies:
        start_x = x_scale.clamp(x_scale(_moment(therapy.start)))
        markers.append(
            Marker(
                x=start_x,
                label=f"{_label(therapy.agent)} start",
                title=f"{_label(therapy.agent)} started {therapy.start}",
                kind="start",
            )
        )
        end_day = therapy.end or case.as_of
        end_x = x_scale.clamp(x_scale(_moment(end_day)))
        if therapy.end is not None:
            markers.append(
                Marker(
                    x=end_x,
                    label=f"{_label(therapy.agent)} end",
                    title=f"{_label(therapy.agent)} ended {therapy.end}",
                    kind="end",
                )
            )
        if therapy.agent in engine.BISPHOSPHONATES:
            ongoing = "ongoing" if therapy.end is None else f"to {therapy.end}"
            spans.append(
                Span(
                    x1=start_x,
                    x2=end_x,
                    y=track,
                    label=f"{_label(therapy.agent)} course",
                    title=f"{_label(therapy.agent)} course from {therapy.start} {ongoing}",
                    kind="course",
                )
            )
    bortezomib_start = case.clinical.myeloma.bortezomib_start
    if bortezomib_start is not None:
        window_end = bortezomib_start + timedelta(days=engine.BORTEZOMIB_WINDOW_DAYS)
        rise = facts["mm_alp_rise_day42_pct"]
        rise_text = "" if rise is None else f"; ALP rise {rise:+.0f} % over baseline"
        spans.append(
            Span(
                x1=x_scale.clamp(x_scale(_moment(bortezomib_start))),
                x2=x_scale.clamp(x_scale(_moment(window_end))),
                y=0,
                label=f"bortezomib day 0{EN_DASH}42",
                title=f"Bortezomib day-42 window: {bortezomib_start} to {window_end}{rise_text}",
                kind="window",
            )
        )
    return tuple(markers), tuple(spans)


# ---------------------------------------------------------------------------------------------
# Small multiples: bone ALP and CrCl, on the same time axis.


def series_chart(
    case: engine.Case,
    *,
    test: str,
    title: str,
    reference: float | None,
    reference_label: str,
) -> Chart | None:
    """A small chart of one test's canonical values; None when the test was never measured."""
    labs = sorted(
        (lab for lab in case.labs if lab.test == test),
        key=lambda lab: (lab.collected_on, lab.collected_time or time.min),
    )
    if not labs:
        return None
    unit = labs[-1].canonical_unit
    left, right = Chart.left, Chart.right
    bottom = SMALL_HEIGHT - 28  # a date axis only, no therapy track
    x_scale = _TimeScale.over(chart_days(case), left, right)
    values = [lab.canonical_value for lab in labs] + ([reference] if reference else [])
    y_scale = _ValueScale.over(values, Chart.top, bottom)
    points = []
    for lab in labs:
        x = x_scale(_moment(lab.collected_on, lab.collected_time))
        y = y_scale(lab.canonical_value)
        above = reference is not None and lab.canonical_value > reference
        # CrCl is a concern below its threshold; bone ALP above its ULN.
        flagged = (lab.canonical_value < reference) if test == "crcl" and reference else above
        points.append(
            ChartPoint(
                x=x,
                y=y,
                value=lab.canonical_value,
                label=_number(lab.canonical_value),
                title=f"{_when(lab.collected_on, lab.collected_time)}: {title} "
                f"{_number(lab.canonical_value)} {unit}",
                shape="circle",
                polygon="",
                filled=flagged,
                significant=False,
            )
        )
    reference_line = None
    if reference:
        y = y_scale(reference)
        reference_line = Line(
            path=_path([(left, y), (right, y)]),
            label=f"{reference_label} {_number(reference)}",
            label_x=right - 4,
            label_y=y - 4,
            title=f"{reference_label}: {_number(reference)} {unit}",
        )
    return Chart(
        name=test,
        title=title,
        unit=unit,
        height=SMALL_HEIGHT,
        bottom=bottom,
        points=tuple(points),
        path=_path([(p.x, p.y) for p in points]),
        reference=reference_line,
        baseline=None,
        markers=(),
        spans=(),
        x_ticks=x_scale.ticks(),
        y_ticks=y_scale.ticks(),
        description=f"{title}: {len(labs)} result(s), latest "
        f"{_number(labs[-1].canonical_value)} {unit} on {labs[-1].collected_on}.",
    )


def patient_charts(
    case: engine.Case, facts: engine.Facts, *, renal_impairment_crcl: float
) -> list[Chart]:
    """The ALP trend, then B-ALP and CrCl small multiples when those were measured."""
    charts = [
        alp_chart(case, facts),
        series_chart(
            case,
            test="bone_alp",
            title="Bone ALP",
            reference=facts["bone_alp_uln"],
            reference_label="ULN",
        ),
        series_chart(
            case,
            test="crcl",
            title="CrCl",
            reference=renal_impairment_crcl,
            reference_label="renal impairment below",
        ),
    ]
    return [chart for chart in charts if chart is not None]


def sparkline_path(values: Sequence[float], *, width: int = 80, height: int = 20) -> str:
    """A polyline for a dashboard trend sparkline (oldest first)."""
    if not values:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = width / max(len(values) - 1, 1)
    coords = [
        (round(i * step, 1), round(height - 2 - (v - low) / span * (height - 4), 1))
        for i, v in enumerate(values)
    ]
    return " ".join(f"{x},{y}" for x, y in coords)
