"""Proof that a new lab test is a one-place change: run in a copy of the repository whose case
declaration (pathways/engine/declaration.py) has one more entry in LAB_TESTS and no other edit.

    python tests/scripts/new_lab_test_proof.py   (run by tests/test_declaration.py, in the copy)

Checks that the case document, its JSON Schema, the API's OpenAPI document, the case-entry form
and the model choices all accept the made-up test, and that the only other step a real test
needs is the migration of the new choices. Prints one line per check; exits non-zero on failure.
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alpcare.settings")
os.environ["DATABASE_URL"] = f"sqlite:///{ROOT}/proof.sqlite3"

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from pathways import engine  # noqa: E402
from pathways.api import api  # noqa: E402
from pathways.case_post import as_browser_json, form_data  # noqa: E402
from pathways.forms import LabForm, case_draft  # noqa: E402
from pathways.models import LabResult  # noqa: E402

TEST, UNIT, OTHER_UNIT = "made_up", "mmol/L", "mg/dL"


def check(what: str, ok: bool) -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {what}")
    if not ok:
        sys.exit(1)


document = {
    "as_of": "2026-11-22",
    "patient": {"birth_date": "1950-03-02", "sex": "female"},
    "labs": [
        {"test": "alp", "value": 412, "unit": "U/L", "collected_at": "2026-10-01"},
        {"test": TEST, "value": 3, "unit": OTHER_UNIT, "collected_at": "2026-10-01"},
    ],
}
case = engine.parse_case(document)
check("the case document accepts it, converted", case.labs[1].canonical_value == 1.5)
check("it exports back", engine.case_to_document(case)["labs"][1]["test"] == TEST)
engine.assess(case, engine.load_catalogue())
check("the engine assesses a case that has it", True)

schema = engine.case_json_schema()["$defs"]["LabDocument"]["properties"]
check("the document's JSON Schema lists it", TEST in schema["test"]["enum"])
check("... and its units", f"{TEST}: {UNIT}, {OTHER_UNIT}" in schema["unit"]["description"])
openapi = json.dumps(api.get_openapi_schema())
check("the OpenAPI document lists it", f'"{TEST}"' in openapi)

lab = {"test": TEST, "value": "3", "unit": UNIT, "collected_on": "2026-10-01"}
check("the result form accepts it", LabForm(lab).is_valid())
test_choices = LabForm().fields["test"].choices  # type: ignore[attr-defined]
check("the form labels it", ("made_up", "Made-up marker") in test_choices)
draft = case_draft(as_browser_json(form_data(document)))
from_form = engine.parse_case(draft.document, today=case.as_of)
check("the case-entry form carries it to the engine", from_form == case)

LabResult._meta.get_field("test").clean(TEST, None)
LabResult._meta.get_field("unit").clean(UNIT, None)
check("the model's choices accept it", True)

out = io.StringIO()
call_command("makemigrations", "pathways", "--dry-run", stdout=out)
check(
    "the one other step is a migration of the choices",
    "Alter field test on labresult" in out.getvalue(),
)
print("a made-up lab test went through with one edit to the declaration")
