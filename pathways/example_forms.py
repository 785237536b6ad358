"""Rule examples edited as a structured form of the case document (not raw JSON).

The fields are the case document's own (spec §1), from the case declaration
(engine/declaration.py), as on the case-entry page: a field added there is on this form too.
Lab results and therapies are one per line. The form builds the document and validates it with
the engine's parser, so the errors name the field they belong to; the publish gate is unchanged.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from django import forms

from pathways import engine
from pathways.engine.declaration import CLINICAL, MYELOMA, PATIENT, PATIENT_GROUPS, Group
from pathways.forms import declared_form_fields
from pathways.models import RuleExample

LAB_HELP = (
    "One result per line: test, value, unit, collected at (YYYY-MM-DD or YYYY-MM-DDTHH:MM), "
    "and optionally the lab's upper and lower reference limits (leave the upper one empty to "
    "give only the lower one: alp, 80, U/L, 2026-01-05, , 30). Tests: "
    + ", ".join(engine.TESTS)
    + "."
)
THERAPY_HELP = (
    "One course per line: agent, start date, and the end date if it ended. Agents: "
    + ", ".join(engine.AGENTS)
    + "."
)
LAB_PARTS = ("test", "value", "unit", "collected_at", "reference_high", "reference_low")
THERAPY_PARTS = ("agent", "start", "end")


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text  # the parser names the field and says what is wrong


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value else None


def _names(group: Group) -> list[str]:
    return [group.prefix + item.name for item in group.fields]


class RuleExampleCaseForm(forms.ModelForm):
    """A rule example: a freely written name, whether the rule must fire, and its case."""

    as_of = forms.DateField(label="Assessed as of", widget=forms.DateInput(attrs={"type": "date"}))
    labs = forms.CharField(
        label="Lab results",
        widget=forms.Textarea(attrs={"rows": 6, "class": "vLargeTextField"}),
        help_text=LAB_HELP,
        required=False,
    )
    therapies = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "class": "vLargeTextField"}),
        help_text=THERAPY_HELP,
        required=False,
    )

    # The admin's sections, in document order.
    FIELDSETS = (
        ("Patient", ["as_of", *_names(PATIENT)]),
        ("Lab results", ["labs"]),
        ("Clinical context", _names(CLINICAL)),
        ("Myeloma", _names(MYELOMA)),
        ("Therapies", ["therapies"]),
    )
    CASE_FIELDS = tuple(name for _, names in FIELDSETS for name in names)

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
        for name, parts, read in (
            ("labs", LAB_PARTS, "test, value, unit, collected at, upper and lower limits"),
            ("therapies", THERAPY_PARTS, "agent, start date, end date"),
        ):
            for problem in extra_part_problems(cleaned.get(name, ""), len(parts), read):
                self.add_error(name, problem)
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


# Declared on the class as if written in it: the admin builds its form as a subclass.
RuleExampleCaseForm.declared_fields.update(declared_form_fields(PATIENT_GROUPS))
RuleExampleCaseForm.base_fields.update(RuleExampleCaseForm.declared_fields)


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


def extra_part_problems(text: str, most: int, read: str) -> list[str]:
    """A line with more comma-separated parts than are read: the rest would be dropped unseen."""
    return [
        f'line {n} "{line.strip()}" has {len(line.split(","))} parts; at most {most} are read '
        f"({read})"
        for n, line in enumerate((text or "").splitlines(), start=1)
        if len(line.split(",")) > most
    ]


def case_document(cleaned: dict[str, Any]) -> dict[str, Any]:
    """The case document (spec §1) the form's fields describe; a field not given is left out
    (the engine applies its default)."""
    labs = []
    for parts in _lines(cleaned.get("labs", "")):
        parts += [""] * (len(LAB_PARTS) - len(parts))
        lab: dict[str, Any] = {"test": parts[0], "value": _number(parts[1])}
        lab.update(unit=parts[2], collected_at=parts[3])
        for name, text in zip(LAB_PARTS[4:], parts[4:], strict=False):
            if text:
                lab[name] = _number(text)
        labs.append(lab)
    therapies = []
    for parts in _lines(cleaned.get("therapies", "")):
        parts += [""] * (len(THERAPY_PARTS) - len(parts))
        therapies.append({"agent": parts[0], "start": parts[1], "end": parts[2] or None})
    document: dict[str, Any] = {"as_of": _iso(cleaned.get("as_of")), "labs": labs}
    for group in PATIENT_GROUPS:
        part = _part(document, group)
        for item in group.fields:
            value = cleaned.get(group.prefix + item.name)
            if isinstance(value, date):
                value = value.isoformat()
            elif item.kind == "bool" and item.default is not None:
                value = bool(value)
            elif item.kind == "choices":
                value = list(value or [])
            if value is not None and value != "":
                part[item.name] = value
    _part(document, CLINICAL)["therapies"] = therapies
    return document


def _part(document: dict[str, Any], group: Group) -> dict[str, Any]:
    """The object at the group's path in ``document`` ("clinical.myeloma"), made if absent."""
    part = document
    for key in group.path.split("."):
        part = part.setdefault(key, {})
    return part


def case_initial(document: dict[str, Any]) -> dict[str, Any]:
    """The form's initial values from a stored case document (canonicalised by the engine)."""
    canonical = engine.case_to_document(engine.parse_case(document))

    def text(value: Any) -> str:
        if value is None:
            return ""
        return str(value)  # a float's shortest exact form: it reads back as the same number

    def lab_line(lab: dict[str, Any]) -> str:
        parts = [text(lab.get(name)) for name in LAB_PARTS]
        while parts and not parts[-1]:  # no trailing empty limits
            parts.pop()
        return ", ".join(parts)

    initial: dict[str, Any] = {
        "as_of": canonical["as_of"],
        "labs": "\n".join(lab_line(lab) for lab in canonical["labs"]),
        "therapies": "\n".join(
            ", ".join(text(t[key]) for key in ("agent", "start", "end") if t[key])
            for t in canonical["clinical"]["therapies"]
        ),
    }
    for group in PATIENT_GROUPS:
        part = canonical
        for key in group.path.split("."):
            part = part[key]
        for item in group.fields:
            value = part.get(item.name)
            blank = value is None and item.kind == "choice"
            initial[group.prefix + item.name] = "" if blank else value
    return initial


def _form_field(path: str) -> str | None:
    """The form field an engine error path belongs to (None: shown above the form)."""
    if path.startswith("labs"):
        return "labs"
    if path.startswith("clinical.therapies"):
        return "therapies"
    for group in sorted(PATIENT_GROUPS, key=lambda g: -len(g.path)):  # the most specific first
        if path.startswith(group.path + "."):
            name = group.prefix + path[len(group.path) + 1 :].split(".", 1)[0].split("[", 1)[0]
            return name if name in RuleExampleCaseForm.CASE_FIELDS else None
    return "as_of" if path == "as_of" else None
