"""The chart builder: pure functions from the engine's facts to SVG geometry (no database)."""

from __future__ import annotations

from typing import Any

import pytest

from pathways import engine
from pathways.charts import (
    NARROW_WIDTH,
    WIDTH,
    alp_chart,
    patient_charts,
    series_chart,
    sparkline_path,
)
from tests.factories import (
    myeloma_on_zoledronic_acid_14_months_document,
    paget_on_alendronate_document,
)


@pytest.fixture(scope="module")
def rule_set() -> engine.RuleSet:
    return engine.load_catalogue()


def _chart_inputs(document: dict[str, Any], rule_set: engine.RuleSet) -> Any:
    case = engine.parse_case(document)
    return case, engine.compute_facts(case, rule_set)


def test_one_point_per_alp_result_in_time_order(rule_set: engine.RuleSet) -> None:
    case, facts = _chart_inputs(myeloma_on_zoledronic_acid_14_months_document(), rule_set)
    chart = alp_chart(case, facts)
    assert chart is not None
    assert [p.value for p in chart.points] == [150, 205, 140]
    xs = [p.x for p in chart.points]
    assert xs == sorted(xs) and chart.left <= xs[0] and xs[-1] <= chart.right
    assert chart.path.startswith("M") and chart.path.count("L") == 2


def test_higher_values_are_drawn_higher(rule_set: engine.RuleSet) -> None:
    case, facts = _chart_inputs(myeloma_on_zoledronic_acid_14_months_document(), rule_set)
    chart = alp_chart(case, facts)
    assert chart is not None
    by_value = sorted(chart.points, key=lambda p: p.value)
    assert [p.y for p in by_value] == sorted((p.y for p in by_value), reverse=True)


def test_significant_changes_are_marked_by_shape(rule_set: engine.RuleSet) -> None:
    case, facts = _chart_inputs(myeloma_on_zoledronic_acid_14_months_document(), rule_set)
    chart = alp_chart(case, facts)
    assert chart is not None
    # The engine's facts decide significance (RCV); the chart only draws it.
    assert [p.significant for p in chart.points] == [
        point.significant_change for point in facts.alp_points
    ]
    assert [p.shape for p in chart.points] == ["circle", "rise", "fall"]
    assert all(p.polygon for p in chart.points if p.shape != "circle")
    assert "+37 %" in chart.points[1].label and "beyond the RCV" in chart.points[1].title


def test_uln_line_and_filled_points_above_it(rule_set: engine.RuleSet) -> None:
    case, facts = _chart_inputs(paget_on_alendronate_document(), rule_set)
    chart = alp_chart(case, facts)
    assert chart is not None and chart.reference is not None
    assert chart.reference.label.startswith("ULN")
    assert [p.filled for p in chart.points] == [p.elevated for p in facts.alp_points]
    assert "\u00d7 ULN" in chart.points[0].title


def test_therapy_markers_and_bortezomib_window_sit_at_their_dates(
    rule_set: engine.RuleSet,
) -> None:
    case, facts = _chart_inputs(myeloma_on_zoledronic_acid_14_months_document(), rule_set)
    chart = alp_chart(case, facts)
    assert chart is not None
    start = next(m for m in chart.markers if m.kind == "start")
    assert "zoledronic acid" in start.label and "2025-09-10" in start.title
    first, second = chart.points[0], chart.points[1]  # 2025-09-01 and 2025-10-10
    assert first.x < start.x < second.x
    window = next(s for s in chart.spans if s.kind == "window")
    assert window.x1 < second.x < window.x2  # day 35 of bortezomib is inside day 0-42
    assert "2025-09-05 to 2025-10-17" in window.title
    course = next(s for s in chart.spans if s.kind == "course")
    assert course.x1 == start.x and course.x2 <= chart.right
    assert chart.baseline is not None and "before bortezomib" in chart.baseline.title


def test_a_finished_course_has_an_end_marker(rule_set: engine.RuleSet) -> None:
    document = paget_on_alendronate_document()
    document["clinical"]["therapies"] = [
        {"agent": "alendronate", "start": "2026-06-10", "end": "2026-09-10"}
    ]
    case, facts = _chart_inputs(document, rule_set)
    chart = alp_chart(case, facts)
    assert chart is not None
    kinds = [m.kind for m in chart.markers]
    assert kinds == ["start", "end"]
    start, end = chart.markers
    assert start.x < end.x


def test_no_alp_no_chart_and_small_multiples_only_when_measured(
    rule_set: engine.RuleSet,
) -> None:
    document = paget_on_alendronate_document()
    document["labs"] = [{"test": "ggt", "value": 40, "unit": "U/L", "collected_at": "2026-10-01"}]
    case, facts = _chart_inputs(document, rule_set)
    assert alp_chart(case, facts) is None
    assert patient_charts(case, facts, renal_impairment_crcl=60) == []
    case, facts = _chart_inputs(myeloma_on_zoledronic_acid_14_months_document(), rule_set)
    names = [c.name for c in patient_charts(case, facts, renal_impairment_crcl=60)]
    assert names == ["alp", "bone_alp", "crcl"]


def test_crcl_below_the_renal_threshold_is_flagged(rule_set: engine.RuleSet) -> None:
    document = myeloma_on_zoledronic_acid_14_months_document()
    document["labs"].append(
        {"test": "crcl", "value": 45, "unit": "mL/min", "collected_at": "2026-10-20"}
    )
    case, _ = _chart_inputs(document, rule_set)
    chart = series_chart(
        case, test="crcl", title="CrCl", reference=60, reference_label="renal impairment below"
    )
    assert chart is not None
    assert [(p.value, p.filled) for p in chart.points] == [(78, False), (45, True)]
    assert chart.reference is not None and "60" in chart.reference.label


def test_many_points_keep_labels_for_first_last_and_significant(
    rule_set: engine.RuleSet,
) -> None:
    document = paget_on_alendronate_document()
    document["labs"] = [
        {"test": "alp", "value": 300, "unit": "U/L", "collected_at": f"2026-0{m}-{d:02d}"}
        for m in range(1, 7)
        for d in (1, 10, 20, 28)
    ]
    document["labs"][10]["value"] = 600  # a jump beyond the RCV, then back
    case, facts = _chart_inputs(document, rule_set)
    chart = alp_chart(case, facts)
    assert chart is not None and len(chart.points) == 24
    labelled = [i for i, p in enumerate(chart.points) if p.label]
    assert labelled == [0, 10, 11, 23]
    assert all(p.title for p in chart.points)  # every point still has its hover text


def test_sparkline() -> None:
    assert sparkline_path([]) == ""
    path = sparkline_path([100, 200, 150], width=80, height=20)
    points = [tuple(map(float, pair.split(","))) for pair in path.split()]
    assert [x for x, _ in points] == [0.0, 40.0, 80.0]
    assert points[1][1] < points[2][1] < points[0][1]  # 200 highest (smallest y)


def test_dates_outside_the_results_do_not_stretch_the_axis(rule_set: engine.RuleSet) -> None:
    document = paget_on_alendronate_document()
    document["clinical"]["therapies"] = [{"agent": "alendronate", "start": "2001-01-01"}]
    case, facts = _chart_inputs(document, rule_set)
    chart = alp_chart(case, facts)
    assert chart is not None
    first, last = chart.points[0].x, chart.points[-1].x
    assert last - first > (chart.right - chart.left) / 2


def _crowded_myeloma_document() -> dict[str, Any]:
    """Ten ALP results a few weeks apart, four therapies starting and ending close together
    (the longest agent names there are) and the bortezomib window: the hardest layout."""
    document = myeloma_on_zoledronic_acid_14_months_document()
    document["labs"] = [lab for lab in document["labs"] if lab["test"] != "alp"] + [
        {
            "test": "alp",
            "value": value,
            "unit": "U/L",
            "collected_at": f"2026-{month:02d}-{day:02d}T08:00",
        }
        for month, day, value in [
            (1, 5, 180),
            (1, 19, 260),
            (2, 2, 150),
            (2, 16, 420),
            (3, 2, 415),
            (3, 16, 130),
            (4, 1, 135),
            (4, 15, 600),
            (5, 1, 610),
            (11, 2, 140),
        ]
    ]
    document["clinical"]["therapies"] = [
        {"agent": "other_bisphosphonate", "start": "2026-01-10", "end": "2026-02-20"},
        {"agent": "zoledronic_acid", "start": "2026-01-20", "end": None},
        {"agent": "pamidronate", "start": "2026-02-01", "end": "2026-03-01"},
        {"agent": "denosumab", "start": "2026-10-25", "end": "2026-11-20"},
    ]
    document["clinical"]["myeloma"]["bortezomib_start"] = "2026-11-01"
    return document


@pytest.mark.parametrize("width", [WIDTH, NARROW_WIDTH])
def test_no_two_labels_overlap_and_all_stay_inside_the_chart(
    rule_set: engine.RuleSet, width: int
) -> None:
    """At the page's width and at a phone's (NARROW_WIDTH, where each date label and each
    therapy name takes twice the share of the chart)."""
    case, facts = _chart_inputs(_crowded_myeloma_document(), rule_set)
    chart = alp_chart(case, facts, width=width)
    assert chart is not None and chart.width == width
    boxes = chart.text_boxes()
    assert len(chart.x_ticks) >= 2
    marker_texts = [b.text for b in boxes if "start" in b.text or "end" in b.text]
    assert len(marker_texts) == 7  # four starts, three ends: none dropped, none clipped
    assert any("other bisphosphonate start" in text for text in marker_texts)
    assert any(b.text == "bortezomib day 0\u201342" for b in boxes)
    for i, box in enumerate(boxes):
        assert box.x1 >= 0 and box.x2 <= chart.width, box
        assert box.y1 >= 0 and box.y2 <= chart.height, box
        for other in boxes[i + 1 :]:
            assert not box.overlaps(other), (box, other)
    # Therapy labels sit above the plot, never over the points.
    for marker in chart.markers:
        assert marker.label_y < chart.top
    # The latest value is always labelled; a crowded label is dropped, not drawn over another.
    assert chart.points[-1].label
    for point in chart.points:
        assert point.title.startswith(point.title[:10]) and "ALP" in point.title
    # The small multiples too.
    for small in patient_charts(case, facts, renal_impairment_crcl=60, width=width)[1:]:
        assert small.width == width
        boxes = small.text_boxes()
        for i, box in enumerate(boxes):
            assert box.x1 >= 0 and box.x2 <= small.width, (small.name, box)
            assert not any(box.overlaps(other) for other in boxes[i + 1 :]), (small.name, box)


def test_every_point_says_its_date_and_value(rule_set: engine.RuleSet) -> None:
    case, facts = _chart_inputs(_crowded_myeloma_document(), rule_set)
    charts = patient_charts(case, facts, renal_impairment_crcl=60)
    for chart in charts:
        for point in chart.points:
            assert point.title[:10].count("-") == 2  # an ISO date first
            assert _number_in(point.title, point.value)


def _number_in(text: str, value: float) -> bool:
    return f"{value:.0f}" in text or f"{value:.1f}" in text


def test_each_sparkline_point_gives_its_date_and_value() -> None:
    from datetime import date

    from pathways.charts import sparkline

    assert sparkline([(date(2026, 1, 1), 100.0)]) is None  # one result is not a trend
    line = sparkline([(date(2026, 1, 1), 100.0), (date(2026, 3, 1), 212.5)])
    assert line is not None
    assert [p.title for p in line.points] == ["2026-01-01: ALP 100 U/L", "2026-03-01: ALP 212 U/L"]
    assert line.summary == "ALP 100 \u2192 212 U/L"
    assert [p.x for p in line.points] == ["0.0", "80.0"]  # as in the polyline, unformatted
