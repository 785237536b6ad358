"""Case documents and stored patients named for the clinical case they are."""

from __future__ import annotations

import io
import json
import re
from datetime import date, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.core.management import call_command
from django.db.models import Min

from pathways import engine
from pathways.case_post import as_browser_json, form_data
from pathways.models import AssessmentSnapshot, Clinic, FollowUp, Patient, WorklistTally
from pathways.services import patient_save_case

__all__ = ["TODAY", "as_browser_json", "form_data", "stored_patient"]

TODAY = date(2026, 11, 22)


def paget_on_alendronate_document(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "as_of": TODAY.isoformat(),
        "patient": {
            "birth_date": "1950-03-02",
            "sex": "female",
            "pregnant": False,
            "weight_kg": 64,
        },
        "labs": [
            {
                "test": "alp",
                "value": 412,
                "unit": "U/L",
                "collected_at": "2026-06-01T08:15",
                "reference_high": 129,
            },
            {"test": "alp", "value": 260, "unit": "U/L", "collected_at": "2026-10-01T08:40"},
        ],
        "clinical": {
            "diagnoses": ["paget"],
            "therapies": [{"agent": "alendronate", "start": "2026-06-10", "end": None}],
        },
    }
    document.update(overrides)
    return document


def myeloma_on_zoledronic_acid_14_months_document() -> dict[str, Any]:
    return {
        "as_of": TODAY.isoformat(),
        "patient": {"birth_date": "1956-11-04", "sex": "male", "weight_kg": 78},
        "labs": [
            {"test": "alp", "value": 150, "unit": "U/L", "collected_at": "2025-09-01T08:00"},
            {"test": "alp", "value": 205, "unit": "U/L", "collected_at": "2025-10-10T08:00"},
            {"test": "alp", "value": 140, "unit": "U/L", "collected_at": "2026-10-20T08:00"},
            {"test": "bone_alp", "value": 31, "unit": "ug/L", "collected_at": "2025-09-01"},
            {"test": "crcl", "value": 78, "unit": "mL/min", "collected_at": "2025-09-01"},
        ],
        "clinical": {
            "diagnoses": ["multiple_myeloma"],
            "dental_exam_done": True,
            "myeloma": {
                "requires_therapy": True,
                "bone_disease": True,
                "response": "VGPR",
                "treatment_start": "2025-09-05",
                "bortezomib_start": "2025-09-05",
            },
            "therapies": [{"agent": "zoledronic_acid", "start": "2025-09-10", "end": None}],
        },
    }


def pregnant_third_trimester_document(today: date = TODAY, **patient: Any) -> dict[str, Any]:
    """Week 30 of a pregnancy, bone pain and a raised bone ALP: the bone scan's condition holds,
    and pregnancy stands it down (spec §4.2); ALP 260 U/L is above the third trimester's 229."""
    drawn = (today - timedelta(days=12)).isoformat()
    return {
        "as_of": today.isoformat(),
        "patient": {
            "birth_date": "1992-05-14",
            "sex": "female",
            "pregnant": True,
            "gestational_weeks": 30,
            "weight_kg": 71,
            **patient,
        },
        "labs": [
            {"test": "alp", "value": 260, "unit": "U/L", "collected_at": f"{drawn}T09:00"},
            {"test": "ggt", "value": 18, "unit": "U/L", "collected_at": f"{drawn}T09:00"},
            {"test": "bone_alp", "value": 30, "unit": "ug/L", "collected_at": f"{drawn}T09:00"},
        ],
        "clinical": {"bone_pain": True},
    }


def revision_2_inputs_document(today: date = TODAY) -> dict[str, Any]:
    """Every input revision 2 added (spec §1), each with a value that is not its default."""

    def day(days_before: int) -> str:
        return (today - timedelta(days=days_before)).isoformat()

    return {
        "as_of": today.isoformat(),
        "patient": {
            "birth_date": "1958-07-21",
            "sex": "female",
            "postmenopausal": False,
            "weight_kg": 58.5,
        },
        "labs": [
            {
                "test": "alp",
                "value": 198,
                "unit": "U/L",
                "collected_at": f"{day(20)}T08:10",
                "reference_low": 35,
                "reference_high": 105,
            },
            {"test": "alt", "value": 0.4, "unit": "ukat/L", "collected_at": f"{day(20)}T08:10"},
            {"test": "albumin", "value": 33, "unit": "g/L", "collected_at": f"{day(20)}T08:10"},
            {"test": "calcium", "value": 2.3, "unit": "mmol/L", "collected_at": f"{day(20)}T08:10"},
            {
                "test": "phosphate",
                "value": 0.7,
                "unit": "mmol/L",
                "collected_at": f"{day(20)}T08:10",
                "reference_low": 0.8,
                "reference_high": 1.5,
            },
            {"test": "pth", "value": 9.1, "unit": "pmol/L", "collected_at": f"{day(20)}T08:10"},
            {"test": "creatinine", "value": 88, "unit": "umol/L", "collected_at": day(20)},
        ],
        "clinical": {
            "diagnoses": ["osteoporosis", "mgus"],
            "fracture": "healing",
            "fracture_date": day(53),
            "creatinine_baseline": 0.9,
            "myeloma": {"whole_body_imaging_done": True},
            "therapies": [{"agent": "zoledronic_acid", "start": day(38), "end": day(38)}],
        },
    }


def stored_patient(
    clinic: Clinic,
    user: User,
    document: dict[str, Any] | None = None,
    *,
    mrn: str = "MRN-1",
    name: str = "Margaret Ellis",
) -> Patient:
    case = engine.parse_case(document or paget_on_alendronate_document())
    return patient_save_case(user=user, case=case, mrn=mrn, name=name, clinic=clinic)


def publish_reviewed(*, rule_set: Any, user: Any, note: str, **kwargs: Any) -> Any:
    """Submit a draft for review (as its starter) when it is not yet, then publish it."""
    from pathways import publishing
    from pathways.models import RuleSet

    rule_set.refresh_from_db()
    submitted = rule_set.status == RuleSet.Status.DRAFT
    if submitted:
        publishing.ruleset_submit(
            rule_set=rule_set, user=rule_set.created_by, rationale=rule_set.note or note
        )
    try:
        return publishing.ruleset_publish(rule_set=rule_set, user=user, note=note, **kwargs)
    except Exception:
        if submitted:  # a refused publication leaves the draft as the test had it
            RuleSet.objects.filter(pk=rule_set.pk).update(status=RuleSet.Status.DRAFT)
        raise


def edit_page_post(document: dict[str, Any], patient: Patient) -> dict[str, str]:
    """What the edit page posts for ``document``: the patient, clinical context and therapies
    (not the results, edited one at a time), with the patient's stored version."""
    data = form_data({**document, "labs": []}, mrn=patient.mrn, name=patient.name)
    for name in ("labs-TOTAL_FORMS", "labs-INITIAL_FORMS"):
        data.pop(name)
    data["version"] = str(Patient.objects.get(pk=patient.pk).version)
    return data


def post_as_shown(client: Any, url: str, data: dict[str, str], **kwargs: Any) -> Any:
    """POST a form with the hidden fields its page rendered (the publish page's version in
    force), as a browser submits it."""
    page = client.get(url).content.decode()
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page))
    hidden.pop("csrfmiddlewaretoken", None)
    return client.post(url, {**hidden, **data}, **kwargs)


class _FormParser(HTMLParser):
    """The values a browser would submit for the admin change form as rendered (or the form
    of id ``form_id``)."""

    def __init__(self, form_id: str | None = None) -> None:
        super().__init__()
        self.form_id = form_id
        self.data: list[tuple[str, str]] = []
        self._in_form = False
        self._textarea: str | None = None
        self._text = ""
        self._select: str | None = None
        self._select_multiple = False
        self._options: list[tuple[str, bool]] = []

    def handle_starttag(self, tag: str, attrs_list: list[tuple[str, str | None]]) -> None:
        attrs = {k: (v or "") for k, v in attrs_list}
        if tag == "form" and (
            attrs.get("id") == self.form_id
            if self.form_id
            else attrs.get("id", "").endswith("_form")
        ):
            self._in_form = True
        if not self._in_form:
            return
        name = attrs.get("name")
        if tag == "input" and name:
            kind = attrs.get("type", "text")
            if kind in ("submit", "button", "file"):
                return
            if kind in ("checkbox", "radio"):
                if "checked" in attrs:
                    self.data.append((name, attrs.get("value", "on")))
                return
            self.data.append((name, attrs.get("value", "")))
        elif tag == "textarea" and name:
            self._textarea, self._text = name, ""
        elif tag == "select" and name:
            self._select, self._options = name, []
            self._select_multiple = "multiple" in attrs
        elif tag == "option" and self._select is not None:
            self._options.append((attrs.get("value", ""), "selected" in attrs))

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False
        if tag == "textarea" and self._textarea is not None:
            text = self._text[1:] if self._text.startswith("\n") else self._text
            self.data.append((self._textarea, text.replace("\n", "\r\n")))
            self._textarea = None
        if tag == "select" and self._select is not None:
            chosen = [v for v, s in self._options if s]
            if not chosen and not self._select_multiple and self._options:
                chosen = [self._options[0][0]]
            for value in chosen:
                self.data.append((self._select, value))
            self._select = None


def form_as_shown(client: Any, url: str, form_id: str | None = None) -> dict[str, Any]:
    """An admin change form's values (or the form ``form_id``'s) as a browser submits them (a
    list per name)."""
    page = client.get(url)
    assert page.status_code == 200, url
    parser = _FormParser(form_id)
    parser.feed(page.content.decode())
    data: dict[str, Any] = {}
    for name, value in parser.data:
        if name == "csrfmiddlewaretoken":
            continue
        data.setdefault(name, []).append(value)
    return data


def run_assess_command(document: Any, tmp_path: Path) -> tuple[int, str, str]:
    """`manage.py assess CASE.json` as a user runs it: (exit status, stdout, stderr)."""
    path = tmp_path / "case.json"
    path.write_text(json.dumps(document))
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("assess", str(path), stdout=out, stderr=err)
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    return code, out.getvalue(), err.getvalue()


def worklist_counted() -> dict[tuple[Any, ...], int]:
    """Patients per key, from their open follow-ups and their highest card not acted on."""
    first_due = dict(
        FollowUp.objects.filter(completed_at__isnull=True)
        .values("patient_id")
        .annotate(first=Min("due"))
        .values_list("patient_id", "first")
    )
    counts: dict[tuple[Any, ...], int] = {}
    for snapshot in AssessmentSnapshot.objects.all():
        due = first_due.get(snapshot.patient_id)
        assert snapshot.next_due == due and snapshot.scheduled is (due is not None)
        if snapshot.action_rank <= 1 or due is not None:
            key = (snapshot.clinic_id, snapshot.pathway, snapshot.action_rank, due)
            counts[key] = counts.get(key, 0) + 1
    return counts


def worklist_tallied() -> dict[tuple[Any, ...], int]:
    return {
        (t.clinic_id, t.pathway, t.action_rank, t.next_due): t.patients
        for t in WorklistTally.objects.exclude(patients=0)
    }
