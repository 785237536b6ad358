"""Rule examples edited as a structured form of the case document (not raw JSON).

The fields are the case document's own (spec §1): the patient, the clinical context, one lab
result and one therapy per line. The form builds the document and validates it with the
engine's parser, so the errors name the field they belong to; the publish gate is unchanged.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from django import forms

from pathways import engine
from pathways.models import RuleExample

LAB_HELP = (
    "One result per line: test, value, unit, collected at (YYYY-MM-DD or YYYY-MM-DDTHH:MM), "
    "and optionally the lab's upper reference limit. Tests: " + ", ".join(engine.TESTS) + "."
)
THERAPY_HELP = (
    "One course per line: agent, start date, and the end date if it ended. Agents: "
    + ", ".join(engine.AGENTS)
    + "."
)


def _choices(values: tuple[str, ...], *, blank: bool = False) -> list[tuple[str, str]]:
    options = [(value, value.replace("_", " ")) for value in values]
    return [("", "—"), *options] if blank else options


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text  # the parser names the field and says what is wrong


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value else None


class RuleExampleCaseForm(forms.ModelForm):
    """A rule example: a freely written name, whether the rule must fire, and its case."""

    as_of = forms.DateField(label="Assessed as of", widget=forms.DateInput(attrs={"type": "date"}))
    birth_date = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))
    sex = forms.ChoiceField(choices=_choices(engine.SEXES))
    pregnant = forms.BooleanField(required=False)
    weight_kg = forms.FloatField(label="Weight (kg)", required=False)
    labs = forms.CharField(
        label="Lab results",
        widget=forms.Textarea(attrs={"rows": 6, "class": "vLargeTextField"}),
        help_text=LAB_HELP,
        required=False,
    )
    diagnoses = forms.MultipleChoiceField(
        choices=_choices(engine.DIAGNOSES), required=False, widget=forms.CheckboxSelectMultiple
    )
    cancer = forms.ChoiceField(choices=_choices(engine.CANCERS, blank=True), required=False)
    cancer_treated = forms.BooleanField(required=False)
    bone_pain = forms.BooleanField(required=False)
    osteolytic_pain = forms.BooleanField(required=False)
    bone_scan = forms.ChoiceField(choices=_choices(engine.BONE_SCANS))
    fracture = forms.ChoiceField(choices=_choices(engine.FRACTURES))
    dental_exam_done = forms.BooleanField(required=False)
    crcl_baseline = forms.FloatField(label="CrCl baseline (mL/min)", required=False)
    myeloma_requires_therapy = forms.BooleanField(label="Myeloma requires therapy", required=False)
    myeloma_bone_disease = forms.BooleanField(label="Myeloma bone disease", required=False)
    myeloma_active_bone_disease = forms.BooleanField(
        label="Active myeloma bone disease", required=False
    )
    myeloma_response = forms.ChoiceField(
        label="Myeloma response", choices=_choices(engine.RESPONSES, blank=True), required=False
    )
    myeloma_treatment_start = forms.DateField(
        label="Myeloma treatment start",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    myeloma_bortezomib_start = forms.DateField(
        label="Bortezomib start", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    therapies = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "class": "vLargeTextField"}),
        help_text=THERAPY_HELP,
        required=False,
    )

    CASE_FIELDS = (
        "as_of",
        "birth_date",
        "sex",
        "pregnant",
        "weight_kg",
        "labs",
        "diagnoses",
        "cancer",
        "cancer_treated",
        "bone_pain",
        "osteolytic_pain",
        "bone_scan",
        "fracture",
        "dental_exam_done",
        "crcl_baseline",
        "myeloma_requires_therapy",
        "myeloma_bone_disease",
        "myeloma_active_bone_disease",
        "myeloma_response",
        "myeloma_treatment_start",
        "myeloma_bortezomib_start",
        "therapies",
    )

    class Meta:
        model = RuleExample
        fields = ["rule_set", "rule", "name", "fires"]
        help_texts = {"name": "Say what the case shows in words; it need not repeat numbers."}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initial_case: Any = None
        if self.instance.pk is not None and self.instance.case:
            self.initial_case = self.instance.case
            self.initial.update(case_initial(self.instance.case))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        from pathways.rules_admin import _require_draft  # the admin's own draft check

        _require_draft(self)
        if any(name in self.errors for name in self.CASE_FIELDS):
            return cleaned
        document = case_document(cleaned)
        try:
            engine.parse_case(document)
        except engine.CaseInvalid as invalid:
            for error in invalid.errors:
                self.add_error(_form_field(error.field), f"{error.field}: {error.message}")
            return cleaned
        self.instance.case = document
        self._case_changed = _canonical(document) != _canonical(self.initial_case)
        return cleaned

    def has_changed(self) -> bool:
        """A real change only: the name, whether it fires, or what the case says (a Save that
        changes nothing must not make the user an editor of the draft)."""
        if self.instance.pk is None:
            return True
        if any(
            self[name].field.has_changed(self.initial.get(name), self[name].data)
            for name in ("name", "fires")
        ):
            return True
        return getattr(self, "_case_changed", super().has_changed())


def _canonical(document: Any) -> Any:
    try:
        return engine.case_to_document(engine.parse_case(document))
    except engine.CaseInvalid:
        return document


def _lines(text: str) -> list[list[str]]:
    return [
        [part.strip() for part in line.split(",")]
        for line in (text or "").splitlines()
        if line.strip()
    ]


def case_document(cleaned: dict[str, Any]) -> dict[str, Any]:
    """The case document (spec §1) the form's fields describe."""
    labs = []
    for parts in _lines(cleaned.get("labs", "")):
        parts += [""] * (5 - len(parts))
        lab: dict[str, Any] = {
            "test": parts[0],
            "value": _number(parts[1]),
            "unit": parts[2],
            "collected_at": parts[3],
        }
        if parts[4]:
            lab["reference_high"] = _number(parts[4])
        labs.append(lab)
    therapies = []
    for parts in _lines(cleaned.get("therapies", "")):
        parts += [""] * (3 - len(parts))
        therapies.append({"agent": parts[0], "start": parts[1], "end": parts[2] or None})
    return {
        "as_of": _iso(cleaned.get("as_of")),
        "patient": {
            "birth_date": _iso(cleaned.get("birth_date")),
            "sex": cleaned.get("sex"),
            "pregnant": bool(cleaned.get("pregnant")),
            "weight_kg": cleaned.get("weight_kg"),
        },
        "labs": labs,
        "clinical": {
            "diagnoses": list(cleaned.get("diagnoses") or []),
            "cancer": cleaned.get("cancer") or None,
            "cancer_treated": bool(cleaned.get("cancer_treated")),
            "bone_pain": bool(cleaned.get("bone_pain")),
            "osteolytic_pain": bool(cleaned.get("osteolytic_pain")),
            "bone_scan": cleaned.get("bone_scan"),
            "fracture": cleaned.get("fracture"),
            "dental_exam_done": bool(cleaned.get("dental_exam_done")),
            "crcl_baseline": cleaned.get("crcl_baseline"),
            "myeloma": {
                "requires_therapy": bool(cleaned.get("myeloma_requires_therapy")),
                "bone_disease": bool(cleaned.get("myeloma_bone_disease")),
                "active_bone_disease": bool(cleaned.get("myeloma_active_bone_disease")),
                "response": cleaned.get("myeloma_response") or None,
                "treatment_start": _iso(cleaned.get("myeloma_treatment_start")),
                "bortezomib_start": _iso(cleaned.get("myeloma_bortezomib_start")),
            },
            "therapies": therapies,
        },
    }


def case_initial(document: dict[str, Any]) -> dict[str, Any]:
    """The form's initial values from a stored case document (canonicalised by the engine)."""
    canonical = engine.case_to_document(engine.parse_case(document))
    patient, clinical = canonical["patient"], canonical["clinical"]
    myeloma = clinical["myeloma"]

    def text(value: Any) -> str:
        if value is None:
            return ""
        return f"{value:g}" if isinstance(value, float) else str(value)

    lab_lines = [
        ", ".join(
            text(part) for part in (lab["test"], lab["value"], lab["unit"], lab["collected_at"])
        )
        + (f", {text(lab['reference_high'])}" if lab.get("reference_high") is not None else "")
        for lab in canonical["labs"]
    ]
    therapy_lines = [
        ", ".join(text(t[key]) for key in ("agent", "start", "end") if t[key])
        for t in clinical["therapies"]
    ]
    return {
        "as_of": canonical["as_of"],
        "birth_date": patient["birth_date"],
        "sex": patient["sex"],
        "pregnant": patient["pregnant"],
        "weight_kg": patient["weight_kg"],
        "labs": "\n".join(lab_lines),
        "diagnoses": clinical["diagnoses"],
        "cancer": clinical["cancer"] or "",
        "cancer_treated": clinical["cancer_treated"],
        "bone_pain": clinical["bone_pain"],
        "osteolytic_pain": clinical["osteolytic_pain"],
        "bone_scan": clinical["bone_scan"],
        "fracture": clinical["fracture"],
        "dental_exam_done": clinical["dental_exam_done"],
        "crcl_baseline": clinical["crcl_baseline"],
        "myeloma_requires_therapy": myeloma["requires_therapy"],
        "myeloma_bone_disease": myeloma["bone_disease"],
        "myeloma_active_bone_disease": myeloma["active_bone_disease"],
        "myeloma_response": myeloma["response"] or "",
        "myeloma_treatment_start": myeloma["treatment_start"],
        "myeloma_bortezomib_start": myeloma["bortezomib_start"],
        "therapies": "\n".join(therapy_lines),
    }


_PATHS = (
    (re.compile(r"^labs"), "labs"),
    (re.compile(r"^clinical\.therapies"), "therapies"),
    (re.compile(r"^clinical\.myeloma\.(\w+)"), "myeloma_{0}"),
    (re.compile(r"^clinical\.(\w+)"), "{0}"),
    (re.compile(r"^patient\.(\w+)"), "{0}"),
    (re.compile(r"^(as_of)"), "{0}"),
)


def _form_field(path: str) -> str | None:
    """The form field an engine error path belongs to (None: shown above the form)."""
    for pattern, template in _PATHS:
        match = pattern.match(path)
        if match:
            name = template.format(*match.groups())
            return name if name in RuleExampleCaseForm.CASE_FIELDS else None
    return None
