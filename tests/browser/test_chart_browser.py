"""The charts as the browser draws them: no label over another or outside its chart."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.browser.conftest import log_in
from tests.browser.test_clinician_flow import ensure_published_rule_set
from tests.factories import stored_patient
from tests.test_charts import _crowded_myeloma_document

TEXTS = """() => [...document.querySelectorAll('figure.chart svg')]
  .filter(svg => svg.getBoundingClientRect().width > 0)
  .map(svg => {
    const vb = svg.viewBox.baseVal;
    const scale = svg.getScreenCTM().a;
    return {
      chart: svg.closest('figure').dataset.chart, vb: [vb.width, vb.height], scale,
      texts: [...svg.querySelectorAll('text')].filter(t => t.textContent.trim()).map(t => {
        // Widths as drawn (getBBox); heights from the glyphs' ink (cap height above the
        // baseline, descenders below), not the taller line box getBBox gives.
        const b = t.getBBox();
        const fs = parseFloat(getComputedStyle(t).fontSize);
        const y = t.y.baseVal[0].value;
        const middle = t.getAttribute('dominant-baseline') === 'middle';
        return {text: t.textContent.trim(), x1: b.x, x2: b.x + b.width,
                y1: middle ? y - 0.4 * fs : y - 0.72 * fs,
                y2: middle ? y + 0.4 * fs : y + 0.22 * fs, px: fs * scale};
      }),
    };
  })"""


def stress_document() -> dict[str, Any]:
    """Many therapies with the longest agent names, results on the same day, very high and very
    low values, in every chart."""
    document = copy.deepcopy(_crowded_myeloma_document())
    document["labs"] += [
        {"test": "alp", "value": 9800, "unit": "U/L", "collected_at": "2026-06-10T08:00"},
        {"test": "alp", "value": 12, "unit": "U/L", "collected_at": "2026-06-10T15:00"},
        {"test": "alp", "value": 14, "unit": "U/L", "collected_at": "2026-06-11T08:00"},
        {"test": "alp", "value": 15, "unit": "U/L", "collected_at": "2026-06-11T09:00"},
        {"test": "bone_alp", "value": 900, "unit": "ug/L", "collected_at": "2026-06-10"},
        {"test": "bone_alp", "value": 2, "unit": "ug/L", "collected_at": "2026-06-11"},
        {"test": "bone_alp", "value": 3, "unit": "ug/L", "collected_at": "2026-06-12"},
        {"test": "crcl", "value": 140, "unit": "mL/min", "collected_at": "2026-06-10"},
        {"test": "crcl", "value": 8, "unit": "mL/min", "collected_at": "2026-06-11"},
        {"test": "crcl", "value": 9, "unit": "mL/min", "collected_at": "2026-06-12"},
    ]
    document["clinical"]["therapies"] += [
        {"agent": "other_bisphosphonate", "start": "2026-03-05", "end": "2026-04-20"},
        {"agent": "other_bisphosphonate", "start": "2026-03-12", "end": None},
        {"agent": "zoledronic_acid", "start": "2026-06-09", "end": "2026-06-20"},
    ]
    return document


def overlaps(a: dict[str, float], b: dict[str, float], air: float = 0.5) -> bool:
    return (
        a["x1"] + air < b["x2"]
        and b["x1"] + air < a["x2"]
        and a["y1"] + air < b["y2"]
        and b["y1"] + air < a["y2"]
    )


@pytest.mark.parametrize(
    ("document", "width"), [("crowded", 390), ("stress", 390), ("stress", 1280)]
)
def test_no_chart_label_overlaps_another_as_the_browser_draws_it(
    page: Any, live_server: Any, smoke_user: Any, document: str, width: int
) -> None:
    """No two labels overlap, with long therapy names, many therapies, results on the same day,
    very high and very low values, as drawn (not as estimated). The layout measured labels at
    9-10 px while the stylesheet drew them at 11 px: "zoledronic acid start" over "denosumab
    end", and a course's name cut at the phone chart's edge. Found by a defect hunt."""
    ensure_published_rule_set()
    clinic = smoke_user.memberships.get().clinic
    built = stress_document() if document == "stress" else _crowded_myeloma_document()
    patient = stored_patient(clinic, smoke_user, built, mrn="EF-STRESS")
    page.set_viewport_size({"width": width, "height": 900})
    log_in(page, live_server, "alice")
    page.goto(f"{live_server.url}/patients/{patient.pk}/")
    charts = page.evaluate(TEXTS)
    assert len(charts) == 3, [c["chart"] for c in charts]
    clashes, outside = [], []
    for chart in charts:
        texts = chart["texts"]
        w, h = chart["vb"]
        for i, a in enumerate(texts):
            if a["x1"] < -0.5 or a["x2"] > w + 0.5 or a["y1"] < -0.5 or a["y2"] > h + 0.5:
                outside.append((chart["chart"], a["text"]))
            for b in texts[i + 1 :]:
                if overlaps(a, b):
                    clashes.append((chart["chart"], a["text"], b["text"]))
    # What the layout measured (the attribute) against what the browser drew:
    drawn = page.locator("svg.alp-chart:visible text").first.evaluate(
        "t => [t.getAttribute('font-size'), getComputedStyle(t).fontSize]"
    )
    assert clashes == [] and outside == [], {
        "overlapping": clashes,
        "outside": outside,
        "font-size attr vs drawn": drawn,
    }
