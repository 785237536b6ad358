"""The case-entry form (patient, serial results, clinical context, therapies) and the one
conversion from its fields to the spec's case document.

The document goes through ``engine.parse_case`` like the API's, and the engine's field paths
(``labs[2].value``) are mapped back onto the form field that holds the value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, time
from typing import Any, cast

from crispy_forms.helper import FormHelper
from django import forms
from django.forms import BaseFormSet, formset_factory
from django.http import HttpRequest, QueryDict

from pathways import engine
from pathways.models import Clinic, Patient

_BLANK = ("", "—")


def _label(value: str) -> str:
    return value.replace("_", " ")


def _choices(values: Iterable[str], *, blank: str | None = None) -> list[tuple[str, str]]:
    choices = [("", blank)] if blank is not None else []
    return choices + [(value, _label(value)) for value in values]


ALL_UNITS: tuple[str, ...] = tuple(
    dict.fromkeys(unit for units in engine.UNITS.values() for unit in units)
)
_UNIT_LABELS = {"ug/L": "µg/L", "ukat/L": "µkat/L", "umol/L": "µmol/L"}
TEST_LABELS = {
    "alp": "ALP (total)",
    "bone_alp": "Bone ALP",
    "ggt": "GGT",
    "ctx": "CTX",
    "creatinine": "Creatinine",
    "crcl": "CrCl",
    "calcium": "Calcium",
    "vitamin_d": "25-OH vitamin D",
    "bilirubin": "Bilirubin",
}


def unit_label(unit: str) -> str:
    return _UNIT_LABELS.get(unit, unit)


class _DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="%Y-%m-%d", **kwargs)


class _TimeInput(forms.TimeInput):
    input_type = "time"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="%H:%M", **kwargs)


def _style(form: forms.BaseForm) -> None:
    """Bootstrap 5 classes on every widget (the case form renders its fields itself), each
    input described by its error slot (which the live assessment fills in)."""
    for name, form_field in form.fields.items():
        widget = form_field.widget
        if isinstance(form.auto_id, str) and "%s" in form.auto_id:
            widget.attrs["aria-describedby"] = f"{form.auto_id % form.add_prefix(name)}-error"
        if isinstance(widget, forms.CheckboxSelectMultiple):
            continue
        if isinstance(widget, forms.CheckboxInput):
            css = "form-check-input"
        elif isinstance(widget, forms.Select):
            css = "form-select"
        else:
            css = "form-control"
        widget.attrs["class"] = f"{widget.attrs.get('class', '')} {css}".strip()


class PatientCaseForm(forms.Form):
    """The patient and clinical parts of the case document (spec §1), plus MRN and name."""

    clinic = forms.ModelChoiceField(queryset=Clinic.objects.none(), required=True)
    mrn = forms.CharField(label="MRN", max_length=40)
    name = forms.CharField(max_length=200)
    birth_date = forms.DateField(widget=_DateInput())
    sex = forms.ChoiceField(choices=_choices(engine.SEXES, blank="—"))
    pregnant = forms.BooleanField(required=False)
    weight_kg = forms.FloatField(label="Weight (kg)", required=False)

    diagnoses = forms.MultipleChoiceField(
        choices=_choices(engine.DIAGNOSES),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    cancer = forms.ChoiceField(
        label="Known solid cancer", choices=_choices(engine.CANCERS, blank="none"), required=False
    )
    cancer_treated = forms.BooleanField(label="Cancer treated", required=False)
    bone_pain = forms.BooleanField(required=False)
    osteolytic_pain = forms.BooleanField(required=False)
    bone_scan = forms.ChoiceField(choices=_choices(engine.BONE_SCANS), initial="not_done")
    fracture = forms.ChoiceField(choices=_choices(engine.FRACTURES), initial="none")
    dental_exam_done = forms.BooleanField(label="Dental examination done", required=False)
    crcl_baseline = forms.FloatField(label="CrCl baseline (mL/min)", required=False)

    mm_requires_therapy = forms.BooleanField(label="Requires therapy", required=False)
    mm_bone_disease = forms.BooleanField(label="Bone disease (lytic lesions)", required=False)
    mm_active_bone_disease = forms.BooleanField(label="Active bone disease", required=False)
    mm_response = forms.ChoiceField(
        label="Response", choices=_choices(engine.RESPONSES, blank="not assessed"), required=False
    )
    mm_treatment_start = forms.DateField(
        label="Treatment start", required=False, widget=_DateInput()
    )
    mm_bortezomib_start = forms.DateField(
        label="Bortezomib start", required=False, widget=_DateInput()
    )

    # Optimistic locking: the version the form was loaded from (services.StaleVersion).
    version = forms.IntegerField(required=False, widget=forms.HiddenInput)

    PATIENT_FIELDS = ("mrn", "name", "birth_date", "sex", "pregnant", "weight_kg")
    CONTEXT_FIELDS = (
        "cancer",
        "cancer_treated",
        "bone_pain",
        "osteolytic_pain",
        "bone_scan",
        "fracture",
        "dental_exam_done",
        "crcl_baseline",
    )
    MYELOMA_FIELDS = (
        "mm_requires_therapy",
        "mm_bone_disease",
        "mm_active_bone_disease",
        "mm_response",
        "mm_treatment_start",
        "mm_bortezomib_start",
    )

    def __init__(self, *args: Any, clinics: Sequence[Clinic] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if len(clinics) > 1:
            clinic_field = cast(forms.ModelChoiceField, self.fields["clinic"])
            clinic_field.queryset = Clinic.objects.filter(pk__in=[c.pk for c in clinics])
        else:
            del self.fields["clinic"]  # one clinic (or editing): it is implied
        _style(self)
        self.helper = FormHelper()
        self.helper.form_tag = False
        self.helper.disable_csrf = True

    @classmethod
    def initial_for(cls, patient: Patient) -> dict[str, Any]:
        return {
            "mrn": patient.mrn,
            "name": patient.name,
            "birth_date": patient.birth_date,
            "sex": patient.sex,
            "pregnant": patient.pregnant,
            "weight_kg": patient.weight_kg,
            "diagnoses": list(patient.diagnoses),
            "cancer": patient.cancer,
            "cancer_treated": patient.cancer_treated,
            "bone_pain": patient.bone_pain,
            "osteolytic_pain": patient.osteolytic_pain,
            "bone_scan": patient.bone_scan,
            "fracture": patient.fracture,
            "dental_exam_done": patient.dental_exam_done,
            "crcl_baseline": patient.crcl_baseline,
            "mm_requires_therapy": patient.mm_requires_therapy,
            "mm_bone_disease": patient.mm_bone_disease,
            "mm_active_bone_disease": patient.mm_active_bone_disease,
            "mm_response": patient.mm_response,
            "mm_treatment_start": patient.mm_treatment_start,
            "mm_bortezomib_start": patient.mm_bortezomib_start,
            "version": patient.version,
        }


class LabForm(forms.Form):
    """One serial result as the lab reported it."""

    test = forms.ChoiceField(
        choices=[(test, TEST_LABELS[test]) for test in engine.TESTS], initial="alp"
    )
    value = forms.FloatField()
    unit = forms.ChoiceField(
        choices=[(unit, unit_label(unit)) for unit in ALL_UNITS], initial="U/L"
    )
    collected_on = forms.DateField(label="Collected on", widget=_DateInput())
    collected_time = forms.TimeField(label="at (time)", required=False, widget=_TimeInput())
    reference_high = forms.FloatField(label="Lab's upper limit", required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _style(self)
        self.helper = FormHelper()
        self.helper.form_tag = False
        self.helper.disable_csrf = True


class TherapyForm(forms.Form):
    agent = forms.ChoiceField(choices=_choices(engine.AGENTS))
    start = forms.DateField(widget=_DateInput())
    end = forms.DateField(required=False, widget=_DateInput(), help_text="blank: ongoing")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _style(self)


class _RowFormSet(BaseFormSet):
    def add_fields(self, form: forms.Form, index: int | None) -> None:
        super().add_fields(form, index)
        if "DELETE" in form.fields:
            form.fields["DELETE"].label = "Remove"
            form.fields["DELETE"].widget.attrs["class"] = "form-check-input"

    def new_row(self, index: int, **initial: Any) -> forms.Form:
        """An empty row at ``index``, as the formset would build it (htmx "add a row")."""
        form = self.form(
            prefix=self.add_prefix(index),
            initial=initial,
            empty_permitted=True,
            use_required_attribute=False,
        )
        self.add_fields(form, index)
        return form


LabFormSet = cast(
    type[_RowFormSet], formset_factory(LabForm, formset=_RowFormSet, extra=0, can_delete=True)
)
NewLabFormSet = cast(
    type[_RowFormSet], formset_factory(LabForm, formset=_RowFormSet, extra=1, can_delete=True)
)
TherapyFormSet = cast(
    type[_RowFormSet], formset_factory(TherapyForm, formset=_RowFormSet, extra=0, can_delete=True)
)
LAB_PREFIX = "labs"
THERAPY_PREFIX = "therapies"


def lab_initial(labs: Iterable[Any]) -> list[dict[str, Any]]:
    return [
        {
            "test": lab.test,
            "value": lab.value,
            "unit": lab.unit,
            "collected_on": lab.collected_on,
            "collected_time": lab.collected_time,
            "reference_high": lab.reference_high,
        }
        for lab in labs
    ]


def therapy_initial(therapies: Iterable[Any]) -> list[dict[str, Any]]:
    return [{"agent": t.agent, "start": t.start, "end": t.end} for t in therapies]


@dataclass
class CaseForms:
    """The three parts of the case-entry page, validated together."""

    patient: PatientCaseForm
    labs: _RowFormSet
    therapies: _RowFormSet

    @classmethod
    def bind(
        cls, data: Any | None, *, clinics: Sequence[Clinic] = (), patient: Patient | None = None
    ) -> CaseForms:
        if data is None and patient is not None:
            return cls(
                patient=PatientCaseForm(initial=PatientCaseForm.initial_for(patient)),
                labs=LabFormSet(
                    prefix=LAB_PREFIX,
                    initial=lab_initial(patient.lab_results.all()),
                ),
                therapies=TherapyFormSet(
                    prefix=THERAPY_PREFIX, initial=therapy_initial(patient.therapies.all())
                ),
            )
        if data is None:
            return cls(
                patient=PatientCaseForm(clinics=clinics),
                labs=NewLabFormSet(prefix=LAB_PREFIX),
                therapies=TherapyFormSet(prefix=THERAPY_PREFIX),
            )
        return cls(
            patient=PatientCaseForm(data, clinics=clinics if patient is None else ()),
            labs=LabFormSet(data, prefix=LAB_PREFIX),
            therapies=TherapyFormSet(data, prefix=THERAPY_PREFIX),
        )

    def all_forms(self) -> list[forms.Form]:
        return [self.patient, *self.labs.forms, *self.therapies.forms]

    def forms_valid(self) -> bool:
        # Evaluate all three so that every form carries its errors.
        results = [self.patient.is_valid(), self.labs.is_valid(), self.therapies.is_valid()]
        return all(results)

    def add_case_errors(self, errors: Iterable[engine.FieldError], draft: CaseDraft) -> None:
        """Put each of the engine's errors on the form field that holds the value."""
        rows = {LAB_PREFIX: self.labs.forms, THERAPY_PREFIX: self.therapies.forms}
        for error in errors:
            prefix, index, field_name = draft.locate(error.field)
            form: forms.Form = self.patient
            if prefix is not None and index is not None and index < len(rows[prefix]):
                form = rows[prefix][index]
            if field_name is not None and field_name in form.fields:
                if error.message not in form.errors.get(field_name, []):
                    form.add_error(field_name, error.message)
            else:
                form.add_error(None, f"{error.field}: {error.message}")


_ROW_PATH = re.compile(r"(?P<list>labs|clinical\.therapies)\[(?P<index>\d+)\](?:\.(?P<field>\w+))?")


def _iso(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _lab_document(data: dict[str, Any]) -> dict[str, Any]:
    collected_on: date = data["collected_on"]
    collected_time: time | None = data["collected_time"]
    collected_at = collected_on.isoformat()
    if collected_time is not None:
        collected_at += "T" + collected_time.isoformat(timespec="minutes")
    reference_high = data["reference_high"]
    return {
        "test": data["test"],
        "value": _number(data["value"]),
        "unit": data["unit"],
        "collected_at": collected_at,
        "reference_high": None if reference_high is None else _number(reference_high),
    }


class ResultForm(LabForm):
    """The patient page's inline "add a result" form."""

    def lab_document(self) -> dict[str, Any]:
        """This result as a lab of the case document (spec §1)."""
        return _lab_document(self.cleaned_data)

    def add_case_errors(self, errors: Iterable[engine.FieldError], index: int) -> None:
        """The engine's errors about ``labs[index]`` on their fields; others as form errors."""
        for error in errors:
            match = _ROW_PATH.fullmatch(error.field)
            if match and match["list"] == "labs" and int(match["index"]) == index:
                field = match["field"] or None
                field = "collected_on" if field == "collected_at" else field
                message = error.message
                if "same test and collected_at" in message:
                    message = "a result of this test is already recorded at this date and time"
                self.add_error(field if field in self.fields else None, message)
            elif not error.field.startswith("labs["):
                self.add_error(None, str(error))


# ---------------------------------------------------------------------------------------------
# The one conversion from the posted case-entry form to the case document. The live preview and
# the save both use it, and the engine's parser (the API's) validates what it produces: a value
# the form cannot convert is passed on as typed, so that the engine names the problem.


class JsonPostedForm(dict[str, Any]):
    """The case-entry form as the live preview posts it: one JSON object of field name to value
    (a list for a name posted more than once), read like a QueryDict by ``case_draft``. Values
    that are not strings are read as absent."""

    def getlist(self, key: str) -> list[str]:
        value = self.get(key)
        values = value if isinstance(value, list) else [value]
        return [item for item in values if isinstance(item, str)]


def posted_case_form(request: HttpRequest) -> QueryDict | JsonPostedForm:
    """The posted case-entry form: JSON from the live preview (reading one small document costs
    far less than parsing ~150 form fields on every pause in typing), else the form as posted.
    Raises ValueError when the JSON is not an object."""
    if request.content_type != "application/json":
        return request.POST
    data = json.loads(request.body)
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object of form fields")
    return JsonPostedForm(data)


@dataclass
class CaseDraft:
    document: dict[str, Any]
    lab_rows: list[int] = field(default_factory=list)  # labs[i] is form row lab_rows[i]
    therapy_rows: list[int] = field(default_factory=list)

    def locate(self, path: str) -> tuple[str | None, int | None, str | None]:
        """(row prefix, form row index, form field) for an engine field path."""
        match = _ROW_PATH.fullmatch(path)
        if match:
            rows, prefix = (
                (self.lab_rows, LAB_PREFIX)
                if match["list"] == "labs"
                else (self.therapy_rows, THERAPY_PREFIX)
            )
            index = int(match["index"])
            if index >= len(rows):
                return None, None, None
            field_name = match["field"]
            if field_name == "collected_at":
                field_name = "collected_on"
            return prefix, rows[index], field_name
        for document_prefix, form_prefix in _FIELD_PREFIXES:
            if path.startswith(document_prefix):
                return None, None, form_prefix + path[len(document_prefix) :]
        return None, None, None

    def slot_id(self, path: str) -> str:
        """The id of the element showing this path's errors on the case-entry page."""
        prefix, index, field_name = self.locate(path)
        if field_name is None:
            return "case-errors" if prefix is None else f"{prefix}-{index}-errors"
        name = field_name if prefix is None else f"{prefix}-{index}-{field_name}"
        return f"id_{name}-error"


_FIELD_PREFIXES = (("clinical.myeloma.", "mm_"), ("clinical.", ""), ("patient.", ""))
_MAX_ROWS = 500


def _text(data: Any, name: str) -> str | None:
    value = data.get(name)
    if not isinstance(value, str):
        return None
    return value.strip() or None


def _typed_number(data: Any, name: str) -> float | int | str | None:
    text = _text(data, name)
    if text is None:
        return None
    try:
        return _number(float(text))
    except ValueError:
        return text  # as typed: the engine reports "must be a number" on this field


def _checked(data: Any, name: str) -> bool:
    return data.get(name) not in (None, "", "false", "0", "off")


def _row_count(data: Any, prefix: str) -> int:
    try:
        return max(0, min(int(data.get(f"{prefix}-TOTAL_FORMS", 0)), _MAX_ROWS))
    except (TypeError, ValueError):
        return 0


def case_draft(data: Any) -> CaseDraft:
    """The case document (spec §1) of the posted case-entry form, with the row mapping.

    Empty rows and rows marked for removal are left out; a left-out required key is reported
    by the engine as "required".
    """
    diagnoses = [d for d in data.getlist("diagnoses") if d] if hasattr(data, "getlist") else []
    # One value per name in a plain dict: QueryDict.get raises and catches an exception for
    # each absent name (every unticked box, every row's "remove"), on every live keystroke.
    data = data.dict() if isinstance(data, QueryDict) else data
    patient: dict[str, Any] = {
        "pregnant": _checked(data, "pregnant"),
        "weight_kg": _typed_number(data, "weight_kg"),
    }
    for name in ("birth_date", "sex"):
        if (value := _text(data, name)) is not None:
            patient[name] = value
    draft = CaseDraft(document={"patient": patient, "labs": []})

    for index in range(_row_count(data, LAB_PREFIX)):
        prefix = f"{LAB_PREFIX}-{index}-"
        entered = [_text(data, prefix + name) for name in _LAB_ENTRIES]
        if _checked(data, prefix + "DELETE") or not any(entered):
            continue
        lab: dict[str, Any] = {
            "test": _text(data, prefix + "test") or "alp",
            "unit": _text(data, prefix + "unit") or "",
            "reference_high": _typed_number(data, prefix + "reference_high"),
        }
        if (lab_value := _typed_number(data, prefix + "value")) is not None:
            lab["value"] = lab_value
        if (collected_on := _text(data, prefix + "collected_on")) is not None:
            collected_time = _text(data, prefix + "collected_time")
            lab["collected_at"] = collected_on + (f"T{collected_time}" if collected_time else "")
        draft.document["labs"].append(lab)
        draft.lab_rows.append(index)

    therapies: list[dict[str, Any]] = []
    for index in range(_row_count(data, THERAPY_PREFIX)):
        prefix = f"{THERAPY_PREFIX}-{index}-"
        entered = [_text(data, prefix + name) for name in ("agent", "start", "end")]
        if _checked(data, prefix + "DELETE") or not any(entered):
            continue
        therapy: dict[str, Any] = {"end": entered[2]}
        if entered[0] is not None:
            therapy["agent"] = entered[0]
        if entered[1] is not None:
            therapy["start"] = entered[1]
        therapies.append(therapy)
        draft.therapy_rows.append(index)

    draft.document["clinical"] = {
        "diagnoses": diagnoses,
        "cancer": _text(data, "cancer"),
        "cancer_treated": _checked(data, "cancer_treated"),
        "bone_pain": _checked(data, "bone_pain"),
        "osteolytic_pain": _checked(data, "osteolytic_pain"),
        "bone_scan": _text(data, "bone_scan") or "not_done",
        "fracture": _text(data, "fracture") or "none",
        "dental_exam_done": _checked(data, "dental_exam_done"),
        "crcl_baseline": _typed_number(data, "crcl_baseline"),
        "myeloma": {
            "requires_therapy": _checked(data, "mm_requires_therapy"),
            "bone_disease": _checked(data, "mm_bone_disease"),
            "active_bone_disease": _checked(data, "mm_active_bone_disease"),
            "response": _text(data, "mm_response"),
            "treatment_start": _text(data, "mm_treatment_start"),
            "bortezomib_start": _text(data, "mm_bortezomib_start"),
        },
        "therapies": therapies,
    }
    return draft


# What the user types into a result row (test and unit have defaults, so they do not count).
_LAB_ENTRIES = ("value", "collected_on", "collected_time", "reference_high")
