"""Engine benchmark: one in-process assess() for a small and a heavy case, on one core.

    .venv/bin/python bench/engine.py [--runs N]

Parsing is timed separately from assessment; "compiled once" reuses the rule set's cached CEL
programs (the normal path), "recompiled" passes use_cache=False. Target: heavy median < 1 ms.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pathways.engine import Case, assess, load_catalogue, parse_case


def paget_on_alendronate() -> dict[str, Any]:
    """Small: the spec's §1 example, one ALP result."""
    return {
        "as_of": "2026-11-22",
        "patient": {"birth_date": "1950-03-02", "sex": "female", "weight_kg": 64},
        "labs": [
            {
                "test": "alp",
                "value": 412,
                "unit": "U/L",
                "collected_at": "2026-10-01T08:15",
                "reference_high": 129,
            }
        ],
        "clinical": {
            "diagnoses": ["paget"],
            "therapies": [{"agent": "alendronate", "start": "2026-01-10", "end": None}],
        },
    }


def myeloma_on_zoledronic_acid_with_bortezomib() -> dict[str, Any]:
    """Heavy: myeloma on zoledronic acid with bortezomib, 30 results, all context filled."""

    def lab(test: str, value: float, unit: str, at: str, high: float | None = None) -> dict:
        return {
            "test": test,
            "value": value,
            "unit": unit,
            "collected_at": at,
            "reference_high": high,
        }

    labs = []
    for month in range(1, 11):
        labs.append(lab("alp", 100 + month * 7, "U/L", f"2026-{month:02d}-03T0{month % 3 + 7}:30"))
        labs.append(lab("creatinine", 88 + month, "umol/L", f"2026-{month:02d}-03"))
    labs += [
        lab("crcl", 82, "mL/min", "2025-09-10"),
        lab("crcl", 70, "mL/min", "2026-11-01"),
        lab("bone_alp", 26, "ug/L", "2026-10-03"),
        lab("ctx", 520, "pg/mL", "2026-10-03"),
        lab("calcium", 2.3, "mmol/L", "2026-10-03"),
        lab("vitamin_d", 60, "nmol/L", "2026-10-03"),
        lab("bilirubin", 12, "umol/L", "2026-10-03"),
        lab("ggt", 0.6, "ukat/L", "2026-10-03"),
        lab("alp", 4.2, "ukat/L", "2026-11-10T08:00", 2.15),
        lab("alp", 95, "U/L", "2026-08-31T08:00", 129),
    ]
    return {
        "as_of": "2026-11-22",
        "patient": {
            "birth_date": "1952-04-18",
            "sex": "female",
            "pregnant": False,
            "weight_kg": 61,
        },
        "labs": labs,
        "clinical": {
            "diagnoses": ["multiple_myeloma", "chronic_kidney_disease"],
            "cancer": None,
            "cancer_treated": False,
            "bone_pain": True,
            "osteolytic_pain": True,
            "bone_scan": "diffuse",
            "fracture": "impending",
            "dental_exam_done": False,
            "crcl_baseline": None,
            "myeloma": {
                "requires_therapy": True,
                "bone_disease": True,
                "active_bone_disease": True,
                "response": "PR",
                "treatment_start": "2026-09-01",
                "bortezomib_start": "2026-09-01",
            },
            "therapies": [
                {"agent": "zoledronic_acid", "start": "2025-09-15", "end": None},
                {"agent": "alendronate", "start": "2023-01-10", "end": "2023-07-10"},
            ],
        },
    }


def measure(action: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median and p95 in microseconds."""
    for _ in range(min(runs, 50)):
        action()  # warm up
    samples = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(runs):
            start = time.perf_counter_ns()
            action()
            samples.append((time.perf_counter_ns() - start) / 1000)
    finally:
        if gc_was_enabled:
            gc.enable()
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2000, help="timed runs per cached measure")
    arguments = parser.parse_args()
    rule_set = load_catalogue()
    print(
        f"python {sys.version.split()[0]}; rule set: {len(rule_set.rules)} rules, "
        f"{len(rule_set.follow_ups)} follow-ups; {arguments.runs} runs (recompiled: fewer)\n"
    )
    header = f"{'case':<8} {'step':<26} {'median µs':>10} {'p95 µs':>10} {'per second':>11}"
    print(header)
    print("-" * len(header))
    for name, document in (
        ("small", paget_on_alendronate()),
        ("heavy", myeloma_on_zoledronic_acid_with_bortezomib()),
    ):
        case: Case = parse_case(document)
        rows = [
            ("parse_case", lambda d=document: parse_case(d), arguments.runs),
            ("assess (compiled once)", lambda c=case: assess(c, rule_set), arguments.runs),
            (
                "assess (use_cache=False)",
                lambda c=case: assess(c, rule_set, use_cache=False),
                max(20, arguments.runs // 20),
            ),
        ]
        for step, action, runs in rows:
            median, p95 = measure(action, runs)
            print(f"{name:<8} {step:<26} {median:>10.1f} {p95:>10.1f} {1e6 / median:>11,.0f}")
    print("\nper second = 1 / median, one core, in process")


if __name__ == "__main__":
    main()
