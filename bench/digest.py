"""Behaviour fingerprint: SHA-256 digests of assess() results and of the computed facts over a
fixed set of cases (demo patients at three dates, seeded synthetic cases, the engine
tests' Paget and heavy myeloma cases).

    DJANGO_DEBUG=1 .venv/bin/python bench/digest.py [--synthetic 3000]

Run it before and after a change that must not alter behaviour (a refactoring, a speed-up):
the digests must be the same. A change to the rules or the facts changes them on purpose.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alpcare.settings")

import django

django.setup()  # pathways.demo reads the user model

from pathways.demo import demo_patients, synthetic_case  # noqa: E402
from pathways.engine import (  # noqa: E402
    assess,
    compute_facts,
    load_catalogue,
    parse_case,
    render_result_json,
)
from tests.engine.clinical_cases import (  # noqa: E402
    heavy_myeloma_case,
    paget_with_elevated_alp_on_alendronate,
)

DEMO_DATES = (date(2025, 3, 1), date(2026, 11, 22), date(2027, 6, 30))


def cases(synthetic: int) -> list[dict[str, Any]]:
    documents = [paget_with_elevated_alp_on_alendronate(), heavy_myeloma_case()]
    for today in DEMO_DATES:
        for patients in demo_patients(today).values():
            documents += [document for _, _, document in patients]
    rng = random.Random(42)
    for _ in range(synthetic):
        documents.append(synthetic_case(rng, DEMO_DATES[1], results=rng.randint(0, 40)))
    return documents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--synthetic", type=int, default=3000, help="seeded synthetic cases")
    arguments = parser.parse_args()
    rule_set = load_catalogue()
    results, facts = hashlib.sha256(), hashlib.sha256()
    documents = cases(arguments.synthetic)
    for document in documents:
        case = parse_case(document)
        results.update(render_result_json(assess(case, rule_set)).encode())
        computed = compute_facts(case, rule_set)
        facts.update(json.dumps(computed.values, sort_keys=True).encode())
        facts.update(repr((computed.dates, computed.alp_points, computed.therapies)).encode())
    print(f"{len(documents)} cases, rule set {rule_set.version!r}")
    print(f"assess() results  {results.hexdigest()}")
    print(f"facts             {facts.hexdigest()}")


if __name__ == "__main__":
    main()
