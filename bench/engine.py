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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pathways.engine import Case, assess, load_catalogue, parse_case
from tests.engine.clinical_cases import heavy_myeloma_case, paget_with_elevated_alp_on_alendronate


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
        # small: the spec's §1 example, one ALP result; heavy: myeloma on zoledronic acid with
        # bortezomib, 30 results, every context field filled (the engine tests' named cases).
        ("small", paget_with_elevated_alp_on_alendronate()),
        ("heavy", heavy_myeloma_case()),
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
