"""The engine is a pure-Python core: importing and using it must not pull in Django."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
import pathways.engine as engine
case = engine.parse_case(json.loads(sys.argv[1]))
engine.render_result_json(engine.assess(case, engine.load_catalogue()))
print(json.dumps(sorted(m for m in sys.modules if m.startswith(("django", "pathways")))))
"""


def test_importing_and_running_the_engine_imports_no_django() -> None:
    case = {"as_of": "2026-11-22", "patient": {"birth_date": "1950-03-02", "sex": "female"}}
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(case)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "", "PYTHONPATH": str(REPO)},
    )
    modules = json.loads(completed.stdout)
    assert not [name for name in modules if name.startswith("django")]
    # Nothing from the rest of the app either: only the package and its engine.
    assert all(name == "pathways" or name.startswith("pathways.engine") for name in modules)


def test_the_pathways_package_init_stays_empty() -> None:
    assert (REPO / "pathways" / "__init__.py").read_text(encoding="utf-8").strip() == ""
