"""Server-side SVG charts: the ALP trend of one patient and its B-ALP / CrCl small multiples.

Pure functions from the engine's facts (never recomputed here) to small dataclasses that
templates/pathways/_chart.html draws. Everything a colour says is also said by a shape, a
dash pattern or a text label, so the chart reads in black and white on paper.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, time, timedelta

from pathways import engine
from pathways.engine import declaration

WIDTH = 720
# A phone's chart (below 700 px): drawn about as wide as the phone shows it, so that its text
# keeps its size instead of shrinking to half (the page sends both; CSS shows one).
NARROW_WIDTH = 360
HEIGHT = 280
SMALL_HEIGHT = 150
MARGIN_LEFT = 52
MARGIN_RIGHT = 16
MARGIN_TOP = 18
MARGIN_BOTTOM = 58  # room for the date axis and the therapy track
PLOT_HEIGHT = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
LABEL_ALL_POINTS_UP_TO = 16  # beyond this, only first, last and significant points get labels
# Text layout: labels are placed so that no two overlap (therapy names can be long). Widths are
# estimated generously from the font size, as the server cannot measure the browser's font.
GLYPH_WIDTH = 0.62  # average advance of a glyph, as a share of the font size (upper bound)
DATE_LABEL_ROOM = 90  # the least room per date on the time axis ("Oct 2025" takes about 55)
LANE = 13  # one lane of therapy labels above the plot
# Every label's size, as the template draws it (the svg's font-size) and as the layout measures
# it: one number, so that the browser draws no label larger than the box kept clear for it.
TEXT_SIZE = 11
TRACK_ROW = 24  # one row of the course track below the date axis
TIMES = "\u00d7"  # the multiplication sign of "3.2 x ULN"
EN_DASH = "\u2013"


@dataclass(frozen=True)
class TextBox:
    """Where a text label is drawn: its extent in the SVG's coordinates."""

    x1: float
    y1: float
    x2: float
    y2: float
    text: str

    def overlaps(self, other: TextBox) -> bool:
        return (
            self.x1 < other.x2 and other.x1 < self.x2 and self.y1 < other.y2 and other.y1 < self.y2
        )


def text_box(text: str, x: float, y: float, anchor: str = "middle") -> TextBox:
    """The box of `text` drawn at (x, y) (y is the baseline), at TEXT_SIZE."""
    width = text_width(text)
    x1 = x if anchor == "start" else x - width if anchor == "end" else x - width / 2
    return TextBox(x1, y - TEXT_SIZE * 0.85, x1 + width, y + TEXT_SIZE * 0.25, text)


def text_width(text: str) -> float:
    """The width `text` takes at TEXT_SIZE (estimated generously: see GLYPH_WIDTH)."""
    return len(text) * TEXT_SIZE * GLYPH_WIDTH


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
    label_x: float = 0.0
    label_y: float = 0.0


@dataclass(frozen=True)
class Marker:
    x: float
    label: str
    title: str
    kind: str  # "start" or "end"
    label_x: float = 0.0  # the label sits in a lane above the plot, clear of the points
    label_y: float = 0.0
    anchor: str = "start"
    y1: float = MARGIN_TOP  # the marker line runs from under its label to the plot's bottom


@dataclass(frozen=True)
class Span:
    x1: float
    x2: float
    y: float
    label: str
    title: str
    kind: str  # "window" (bortezomib day 0-42) or "course" (a bisphosphonate course)
    label_x: float = 0.0
    label_y: float = 0.0
    anchor: str = "start"

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
    top: float = MARGIN_TOP  # lower when therapy labels need lanes above the plot
    width: int = WIDTH  # WIDTH, or NARROW_WIDTH for a phone
    text_size: int = TEXT_SIZE  # every label's (the svg's font-size, which its text inherits)

    # A patient's charts share their width and side margins, so that the small multiples line
    # up under the ALP trend.
    left = MARGIN_LEFT

    @property
    def right(self) -> float:
        return self.width - MARGIN_RIGHT

    @property
    def key(self) -> str:
        """The chart's name in element ids: the phone's copy of a chart has its own."""
        return self.name if self.width == WIDTH else f"{self.name}-narrow"

    @property
    def plot_height(self) -> float:
        return self.bottom - self.top

    def text_boxes(self) -> list[TextBox]:
        """Every label the template draws, where it draws it (the layout tests read these)."""
        boxes = [text_box(t.label, t.position, self.bottom + 13) for t in self.x_ticks]
        boxes += [text_box(p.label, p.label_x, p.label_y) for p in self.points if p.label]
        boxes += [text_box(_marker_text(m), m.label_x, m.label_y, m.anchor) for m in self.markers]
        boxes += [text_box(s.label, s.label_x, s.label_y, s.anchor) for s in self.spans]
        boxes += [
            text_box(line.label, line.label_x, line.label_y, line.anchor)
            for line in (self.reference, self.baseline)
            if line is not None
        ]
        return boxes


def _marker_text(marker: Marker) -> str:
    return ("\u25b6 " if marker.kind == "start" else "\u25a0 ") + marker.label


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
        most = max(int(self.span // DATE_LABEL_ROOM), 3)
        step = next((s for s in (1, 2, 3, 6, 12, 24, 60) if months / s <= most), 120)
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


def _started(case: engine.Case) -> list[engine.Therapy]:
    """The courses started by the assessment date: a planned one (spec §2: "neither current
    nor past") has no start to mark yet."""
    return [therapy for therapy in case.clinical.therapies if therapy.start <= case.as_of]


def chart_days(case: engine.Case) -> list[date]:
    """The dates every chart of the patient spans, so the small multiples line up."""
    days = [lab.collected_on for lab in case.labs if lab.test in ("alp", "bone_alp", "crcl")]
    if not days:
        return []
    first = min(days)
    for therapy in _started(case):
        days.append(max(therapy.start, first - timedelta(days=60)))
        if therapy.end is not None and therapy.end >= first:
            days.append(min(therapy.end, case.as_of))
    bortezomib_start = case.clinical.myeloma.bortezomib_start
    if bortezomib_start is not None and bortezomib_start >= first - timedelta(days=60):
        days.append(bortezomib_start)
    days.append(max(days))
    return days


def alp_chart(case: engine.Case, facts: engine.Facts, *, width: int = WIDTH) -> Chart | None:
    """The ALP trend from the engine's facts; None when there is no ALP result."""
    alp_points = facts.alp_points
    if not alp_points:
        return None
    x_scale = _TimeScale.over(chart_days(case), Chart.left, width - MARGIN_RIGHT)
    # Horizontal layout first: therapy labels take lanes above the plot and course rows below
    # the date axis, as many as they need not to overlap; the plot keeps its height.
    markers, spans, lanes, rows = _therapy_marks(case, facts, x_scale, width)
    top = max(MARGIN_TOP, 4 + LANE * lanes + 8)
    bottom = top + PLOT_HEIGHT
    height = math.ceil(bottom + 22 + TRACK_ROW * max(rows, 1))
    spans = [
        replace(span, y=bottom + span.y, label_y=bottom + span.label_y)
        if span.kind == "course"
        else replace(span, y=top)
        for span in spans
    ]
    markers = [replace(marker, y1=marker.label_y + 3) for marker in markers]
    values = [p.value for p in alp_points] + [p.uln for p in alp_points if p.uln]
    y_scale = _ValueScale.over(values, top, bottom)
    label_all = len(alp_points) <= LABEL_ALL_POINTS_UP_TO
    # Significant as the cards judge it (spec §2): a rise beyond RCV↑, a fall beyond RCV↓.
    rcv_rise, rcv_fall = facts.values["rcv_rise_pct"], facts.values["rcv_fall_pct"]
    marked = [
        p.change_pct is not None and (p.change_pct > rcv_rise or -p.change_pct > rcv_fall)
        for p in alp_points
    ]

    points = []
    for index, point in enumerate(alp_points):
        x, y = x_scale(_moment(point.collected_on, point.collected_time)), y_scale(point.value)
        change = point.change_pct
        shape = "circle"
        if marked[index] and change is not None:
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
            if marked[index]:
                rcv = f"RCV↑ of {rcv_rise:.1f} %" if change > 0 else f"RCV↓ of {rcv_fall:.1f} %"
                parts.append(f"significant: beyond the {rcv}")
        show_label = label_all or marked[index] or index in (0, len(alp_points) - 1)
        label = _number(point.value)
        if change is not None and marked[index]:
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
                significant=marked[index],
            )
        )

    x_ticks = x_scale.ticks()
    taken = [text_box(t.label, t.position, bottom + 13) for t in x_ticks]
    taken += [text_box(_marker_text(m), m.label_x, m.label_y, m.anchor) for m in markers]
    taken += [text_box(s.label, s.label_x, s.label_y, s.anchor) for s in spans]
    reference = _place_line_label(_uln_line(alp_points, x_scale, y_scale), taken)
    baseline = _place_line_label(_baseline_line(facts, x_scale, y_scale), taken)
    points = _place_point_labels(points, taken, top, bottom, width)
    significant = sum(marked)
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
        height=height,
        bottom=bottom,
        points=tuple(points),
        path=_path([(p.x, p.y) for p in points]),
        reference=reference,
        baseline=baseline,
        markers=tuple(markers),
        spans=tuple(spans),
        x_ticks=x_ticks,
        y_ticks=y_scale.ticks(),
        description=description,
        top=top,
        width=width,
    )


def _place_line_label(line: Line | None, taken: list[TextBox]) -> Line | None:
    """A reference line's label above its line, else below it; left out when both collide."""
    if line is None:
        return None
    for dy in (0.0, 16.0):
        box = text_box(line.label, line.label_x, line.label_y + dy, line.anchor)
        if not any(box.overlaps(other) for other in taken):
            taken.append(box)
            return replace(line, label_y=line.label_y + dy)
    return replace(line, label="")


def _place_point_labels(
    points: list[ChartPoint], taken: list[TextBox], top: float, bottom: float, width: int
) -> list[ChartPoint]:
    """Value labels above each point (else below), most important first: the latest, the
    significant changes, the first, then the rest; a label that would overlap another is left
    out (the point's tooltip still gives its date and value)."""
    order = sorted(
        range(len(points)),
        key=lambda i: (i != len(points) - 1, not points[i].significant, i != 0, -i),
    )
    marks = [
        TextBox(p.x - 7, p.y - 7, p.x + 7, p.y + 7, "") for p in points
    ]  # the points themselves: a label must not cover another point
    placed = list(points)
    for index in order:
        point = points[index]
        if not point.label:
            continue
        room = text_width(point.label)
        x = min(max(point.x, Chart.left + room / 2 + 1), width - room / 2 - 1)
        chosen = None
        for y in (point.y - 9, point.y + 18):
            box = text_box(point.label, x, y)
            if box.y1 < top - 6 or box.y2 > bottom:
                continue
            others = [m for j, m in enumerate(marks) if j != index]
            if not any(box.overlaps(other) for other in taken + others):
                chosen = (box, y)
                break
        if chosen is None:
            placed[index] = replace(point, label="")
            continue
        taken.append(chosen[0])
        placed[index] = replace(point, label_x=x, label_y=chosen[1])
    return placed


def _lane_of(lanes: list[list[tuple[float, float]]], x1: float, x2: float) -> int:
    """The first lane where [x1, x2] (with a little air) overlaps nothing; a new one if none."""
    for index, lane in enumerate(lanes):
        if all(x2 + 4 <= a or b + 4 <= x1 for a, b in lane):
            lane.append((x1, x2))
            return index
    lanes.append([(x1, x2)])
    return len(lanes) - 1


def _lane_label(
    lanes: list[list[tuple[float, float]]], x: float, text: str, chart_width: int
) -> tuple[float, float, str]:
    """(label_x, label_y, anchor) for a label in the lanes above the plot: to the right of its
    mark, or to its left when it would run past the chart's right edge."""
    width = text_width(text)
    if x + 2 + width <= chart_width - 1:
        x1, label_x, anchor = x + 2, x + 2, "start"
    else:
        x1, label_x, anchor = max(x - 2 - width, 1), x - 2, "end"
        if x - 2 - width < 1:  # wider than the room on either side: start at the left edge
            x1, label_x, anchor = 1, 1, "start"
    lane = _lane_of(lanes, x1, x1 + width)
    return label_x, 4 + LANE * (lane + 1) - 3, anchor


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
        anchor="start",
        title=f"Baseline ALP {_number(baseline_value)} U/L on {baseline_date} ({what})",
    )


def _label(agent: str) -> str:
    return agent.replace("_", " ")


def _therapy_marks(
    case: engine.Case, facts: engine.Facts, x_scale: _TimeScale, chart_width: int
) -> tuple[list[Marker], list[Span], int, int]:
    """Therapy start/end markers and the bortezomib window, labelled in lanes above the plot,
    and bisphosphonate courses in rows of the track below the date axis (course y values are
    offsets from the plot's bottom). Returns them with the number of lanes and rows used."""
    markers: list[Marker] = []
    spans: list[Span] = []
    lanes: list[list[tuple[float, float]]] = []
    rows: list[list[tuple[float, float]]] = []
    marks: list[tuple[float, Marker]] = []
    for therapy in _started(case):
        start_x = x_scale.clamp(x_scale(_moment(therapy.start)))
        marks.append(
            (
                start_x,
                Marker(
                    x=start_x,
                    label=f"{_label(therapy.agent)} start",
                    title=f"{_label(therapy.agent)} started {therapy.start}",
                    kind="start",
                ),
            )
        )
        end_day = therapy.end or case.as_of
        end_x = x_scale.clamp(x_scale(_moment(end_day)))
        if therapy.end is not None:
            marks.append(
                (
                    end_x,
                    Marker(
                        x=end_x,
                        label=f"{_label(therapy.agent)} end",
                        title=f"{_label(therapy.agent)} ended {therapy.end}",
                        kind="end",
                    ),
                )
            )
        if therapy.agent in engine.BISPHOSPHONATES:
            ongoing = "ongoing" if therapy.end is None else f"to {therapy.end}"
            label = f"{_label(therapy.agent)} course"
            width = text_width(label)
            label_x = min(start_x + 2, chart_width - width - 1)
            row = _lane_of(rows, min(start_x, label_x), max(end_x, label_x + width))
            y = 22 + TRACK_ROW * row
            spans.append(
                Span(
                    x1=start_x,
                    x2=end_x,
                    y=y,
                    label=label,
                    title=f"{_label(therapy.agent)} course from {therapy.start} {ongoing}",
                    kind="course",
                    label_x=label_x,
                    label_y=y + 20,
                )
            )
    bortezomib_start = case.clinical.myeloma.bortezomib_start
    window: Span | None = None
    if bortezomib_start is not None:
        window_end = bortezomib_start + timedelta(days=engine.BORTEZOMIB_WINDOW_DAYS)
        rise = facts["mm_alp_rise_day42_pct"]
        rise_text = "" if rise is None else f"; ALP rise {rise:+.0f} % over baseline"
        window = Span(
            x1=x_scale.clamp(x_scale(_moment(bortezomib_start))),
            x2=x_scale.clamp(x_scale(_moment(window_end))),
            y=0,
            label=f"bortezomib day 0{EN_DASH}42",
            title=f"Bortezomib day-42 window: {bortezomib_start} to {window_end}{rise_text}",
            kind="window",
        )
    for x, marker in sorted(marks, key=lambda item: item[0]):
        label_x, label_y, anchor = _lane_label(lanes, x, _marker_text(marker), chart_width)
        markers.append(replace(marker, label_x=label_x, label_y=label_y, anchor=anchor))
    if window is not None:
        label_x, label_y, anchor = _lane_label(lanes, window.x1, window.label, chart_width)
        spans.append(replace(window, label_x=label_x, label_y=label_y, anchor=anchor))
    return markers, spans, len(lanes), len(rows)


# ---------------------------------------------------------------------------------------------
# Small multiples: bone ALP and CrCl, on the same time axis.


def series_chart(
    case: engine.Case,
    *,
    test: str,
    title: str,
    reference: float | None,
    reference_label: str,
    width: int = WIDTH,
) -> Chart | None:
    """A small chart of one test's canonical values; None when the test was never measured."""
    measured = sorted(
        (lab for lab in case.labs if lab.test == test),
        key=lambda lab: (lab.collected_on, lab.collected_time or time.min),
    )
    if not measured:
        return None
    # One axis, one unit: a bone ALP measured as a mass (µg/L) and as an activity (U/L) are
    # not on one scale, and the reference line is the latest result's. The others are counted.
    labs = [lab for lab in measured if lab.canonical_unit == measured[-1].canonical_unit]
    left_out = len(measured) - len(labs)
    unit = declaration.unit_shown(test, labs[-1].canonical_unit)
    left, right = Chart.left, width - MARGIN_RIGHT
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
    x_ticks = x_scale.ticks()
    taken = [text_box(t.label, t.position, bottom + 13) for t in x_ticks]
    if reference:
        y = y_scale(reference)
        reference_line = _place_line_label(
            Line(
                path=_path([(left, y), (right, y)]),
                label=f"{reference_label} {_number(reference)}",
                label_x=right - 4,
                label_y=y - 4,
                title=f"{reference_label}: {_number(reference)} {unit}",
            ),
            taken,
        )
    points = _place_point_labels(points, taken, Chart.top, bottom, width)
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
        x_ticks=x_ticks,
        y_ticks=y_scale.ticks(),
        description=f"{title}: {len(labs)} result(s), latest "
        f"{_number(labs[-1].canonical_value)} {unit} on {labs[-1].collected_on}."
        + (f" {left_out} in another unit not shown." if left_out else ""),
        width=width,
    )


def patient_charts(
    case: engine.Case, facts: engine.Facts, *, renal_impairment_crcl: float, width: int = WIDTH
) -> list[Chart]:
    """The ALP trend, then B-ALP and CrCl small multiples when those were measured."""
    charts = [
        alp_chart(case, facts, width=width),
        series_chart(
            case,
            test="bone_alp",
            title="Bone ALP",
            reference=facts["bone_alp_uln"],
            reference_label="ULN",
            width=width,
        ),
        series_chart(
            case,
            test="crcl",
            title="CrCl",
            reference=renal_impairment_crcl,
            reference_label="renal impairment below",
            width=width,
        ),
    ]
    return [chart for chart in charts if chart is not None]


@dataclass(frozen=True)
class SparkPoint:
    x: str  # as in the polyline: the template prints it as it is (no number formatting)
    y: str
    title: str  # "2026-10-01: ALP 412 U/L"


@dataclass(frozen=True)
class Sparkline:
    path: str  # the polyline's points
    points: tuple[SparkPoint, ...]
    summary: str  # "ALP 300 → 412 U/L", the whole trend in words


def sparkline(
    series: Sequence[tuple[date, float]], *, width: int = 80, height: int = 20
) -> Sparkline | None:
    """A dashboard trend sparkline (oldest first), each point with its date and value; None
    with fewer than two results."""
    if len(series) < 2:
        return None
    path = sparkline_path([value for _, value in series], width=width, height=height)
    coords = [pair.split(",") for pair in path.split()]
    points = tuple(
        SparkPoint(x, y, f"{day.isoformat()}: ALP {_number(value)} U/L")
        for (x, y), (day, value) in zip(coords, series, strict=True)
    )
    summary = "ALP " + " \u2192 ".join(_number(value) for _, value in series) + " U/L"
    return Sparkline(path=path, points=points, summary=summary)


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
