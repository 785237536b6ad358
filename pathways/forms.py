"""The case-entry form (patient, serial results, clinical context, therapies) and the one
conversion from its fields to the spec's case document.

Fields, labels, help text and choices come from the case declaration
(``engine/declaration.py``): a form field is named after its model column (``mm_response``
for ``clinical.myeloma.response``). The document goes through ``engine.parse_case`` like the
API's, and each engine error's location (``("labs", 2, "value")``) names the form field that
holds the value. Every posted row count and the live preview's JSON are bounded: input that
cannot be read is a ``FormUnreadable`` (a 400 naming the problem), never a silent cap.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import time
from typing import Any, Final, cast

from crispy_forms.helper import FormHelper
from crispy_forms.layout import Column, Field, Fieldset, Layout, Row
from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.validators import RegexValidator
from django.forms import BaseFormSet, formset_factory
from django.http import HttpRequest, QueryDict
from django.utils import timezone

from pathways import engine
from pathways.engine.dates import format_datetime, parse_iso_datetime, skipped_by_the_clocks
from pathways.engine.declaration import (
    CLINICAL,
    LAB,
    LAB_TESTS,
    MYELOMA,
    PATIENT,
    PATIENT_GROUPS,
    THERAPY,
    CaseField,
    Group,
    declared_field,
)
from pathways.engine.vocabulary import CONVERSIONS
from pathways.entry_checks import unusual_lab, unusual_weight, within_declared_bounds
from pathways.models import Clinic, Patient

# At most this many result or therapy rows in one posted form (Django's own formset ceiling).
MAX_ROWS = 1000
# A JSON form is an object of strings or lists of strings: no deeper nesting.
_MAX_JSON_DEPTH = 2

UNIT_LABELS: dict[str, str] = {unit.code: unit.shown for test in LAB_TESTS for unit in test.units}
TEST_LABELS: dict[str, str] = {test.code: test.label for test in LAB_TESTS}
SKIPPED_TIME = "this time did not occur on that date: the clocks went forward (DST)"
MISSING_VERSION = (
    "This form was sent without the version it was loaded from, so it could overwrite "
    "someone else's changes: reload the page and enter your changes again."
)


class FormUnreadable(ValueError):
    """A posted form that cannot be read at all (answered with a 400 and this message)."""


class _DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="%Y-%m-%d", **kwargs)


_WITH_SECONDS = re.compile(r"\d{1,2}:\d{2}:(?!00\b)\d{2}")


class _TimeInput(forms.TimeInput):
    """A time of day to the minute, or to the second when it has seconds (spec §1 allows
    HH:MM[:SS]: a result imported at 08:15:30 keeps its seconds when it is edited)."""

    input_type = "time"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="%H:%M", **kwargs)

    def format_value(self, value: Any) -> str | None:
        if isinstance(value, time) and value.second:
            return value.strftime("%H:%M:%S")
        return super().format_value(value)

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        # A browser refuses seconds at step 60: a stored time with seconds, or one posted back
        # with them (a refused or stale form shows what was sent).
        posted = isinstance(value, str) and _WITH_SECONDS.match(value.strip())
        if (isinstance(value, time) and value.second) or posted:
            attrs = {**(attrs or {}), "step": "1"}
        return super().get_context(name, value, attrs)


class _TriState(forms.Select):
    """A yes / no / not-given choice (a declared bool whose default is None: ``postmenopausal``),
    posted as "true", "false" or "" (not given)."""

    def __init__(self, item: CaseField) -> None:
        super().__init__()
        self.choices = [
            ("", _NOT_GIVEN.get(item.name, "not given")),
            ("true", "yes"),
            ("false", "no"),
        ]

    def format_value(self, value: Any) -> list[str]:
        return [{True: "true", False: "false", "true": "true", "false": "false"}.get(value, "")]

    def value_from_datadict(self, data: Any, files: Any, name: str) -> bool | None:
        return {"true": True, "false": False}.get(data.get(name))


# How a tri-state field says "not given" (spec §1: the engine's assumption when absent).
_NOT_GIVEN = {"postmenopausal": "not given (assumed from age 51)"}


def _style(form: forms.BaseForm) -> None:
    """Bootstrap 5 classes on every widget, each input described by its help text and its error
    slot (which the live assessment fills in)."""
    for name, form_field in form.fields.items():
        widget = form_field.widget
        if isinstance(form.auto_id, str) and "%s" in form.auto_id:
            field_id = form.auto_id % form.add_prefix(name)
            described_by = [f"{field_id}-help"] if form_field.help_text else []
            widget.attrs["aria-describedby"] = " ".join([*described_by, f"{field_id}-error"])
        if isinstance(widget, forms.CheckboxSelectMultiple):
            continue
        if isinstance(widget, forms.CheckboxInput):
            css = "form-check-input"
        elif isinstance(widget, forms.Select):
            css = "form-select"
        else:
            css = "form-control"
        widget.attrs["class"] = f"{widget.attrs.get('class', '')} {css}".strip()


def _form_field(item: CaseField, *, help_text: bool = True) -> forms.Field:
    """The form field of one declared case field."""
    common: dict[str, Any] = {"label": item.label, "required": item.required}
    if help_text and item.help:
        common["help_text"] = item.help
    if item.kind == "date":
        return forms.DateField(widget=_DateInput(), **common)
    if item.kind == "bool" and item.default is None:  # yes / no / not given
        return forms.NullBooleanField(widget=_TriState(item), **{**common, "required": False})
    if item.kind == "bool":
        return forms.BooleanField(**{**common, "required": False})
    if item.kind == "number" and item.integer:
        return forms.IntegerField(**common)
    if item.kind == "number":
        return forms.FloatField(**common)
    if item.kind == "choices":
        return forms.MultipleChoiceField(
            choices=[(c.value, c.label) for c in item.choices],
            widget=forms.CheckboxSelectMultiple,
            **common,
        )
    if item.kind == "choice":
        choices = [(c.value, c.label) for c in item.choices]
        if item.default is None:
            choices.insert(0, ("", item.blank))
        return forms.ChoiceField(choices=choices, initial=item.default, **common)
    return forms.CharField(**common)


def declared_form_fields(groups: Iterable[Group]) -> dict[str, forms.Field]:
    """The form fields of the declared case fields of ``groups``, named prefix + name."""
    return {
        group.prefix + item.name: _form_field(item) for group in groups for item in group.fields
    }


def _form_helper(*layout: Any) -> FormHelper:
    """A helper for a form rendered inside the page's own <form> (crispy layouts, our field
    template: label, control, and the error slot the live assessment fills in)."""
    helper = FormHelper()
    helper.form_tag = False
    helper.disable_csrf = True
    helper.layout = Layout(*layout)
    return helper


def _field(name: str) -> Field:
    return Field(name, template="pathways/_field.html")


def _row_field(name: str) -> Field:
    return Field(name, template="pathways/_row_field.html")


class PatientCaseForm(forms.Form):
    """The patient and clinical parts of the case document (spec §1), plus MRN and name; the
    declared fields are added below the class, from the case declaration."""

    clinic = forms.ModelChoiceField(
        queryset=Clinic.objects.none(), required=True, empty_label="choose a clinic"
    )
    mrn = forms.CharField(
        label="MRN",
        max_length=40,
        validators=[
            RegexValidator(r"^[^\x00-\x1f\x7f]*\Z", "No line breaks or other control characters.")
        ],
    )
    name = forms.CharField(max_length=200)
    # Optimistic locking: the version the form was loaded from (services.StaleVersion).
    version = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    # Shown only for a value outside the entry-check bounds (entry_checks.py).
    confirm_weight = forms.BooleanField(required=False, label="Confirm this weight")
    confirm_crcl_baseline = forms.BooleanField(required=False, label="Confirm this CrCl baseline")
    confirm_creatinine_baseline = forms.BooleanField(
        required=False, label="Confirm this creatinine baseline"
    )

    def __init__(
        self, *args: Any, clinics: Sequence[Clinic] = (), editing: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.editing = editing
        if len(clinics) > 1:
            clinic_field = cast(forms.ModelChoiceField, self.fields["clinic"])
            clinic_field.queryset = Clinic.objects.filter(pk__in=[c.pk for c in clinics])
        else:
            del self.fields["clinic"]  # one clinic (or editing): it is implied
        _style(self)
        clinic = [Row(Column(_field("clinic")))] if "clinic" in self.fields else []
        self.patient_helper = _form_helper(
            *clinic,
            Row(
                Column(_field("mrn"), css_class="col-md-4"),
                Column(_field("name"), css_class="col-md-8"),
                Column(_field("birth_date"), css_class="col-md-4"),
                Column(_field("sex"), css_class="col-md-3"),
                Column(_field("weight_kg"), css_class="col-md-3"),
                Column(_field("pregnant"), css_class="col-md-2 pt-md-4"),
                Column(_field("gestational_weeks"), css_class="col-md-4"),
                Column(_field("postmenopausal"), css_class="col-md-5"),
                css_class="g-2",
            ),
        )
        self.clinical_helper = _form_helper(
            _field("diagnoses"),
            Row(
                Column(_field("cancer"), css_class="col-md-4"),
                Column(_field("bone_scan"), css_class="col-md-4"),
                Column(_field("fracture"), css_class="col-md-4"),
                Column(_field("fracture_date"), css_class="col-md-4"),
                Column(_field("crcl_baseline"), css_class="col-md-4"),
                Column(_field("creatinine_baseline"), css_class="col-md-4"),
                Column(*(_field(name) for name in _CLINICAL_FLAGS), css_class="col-md-12 pt-md-2"),
                css_class="g-2",
            ),
            Fieldset(
                "Myeloma",
                Row(
                    Column(
                        *(_field(f"mm_{name}") for name in _MYELOMA_FLAGS), css_class="col-md-4"
                    ),
                    Column(_field("mm_response"), css_class="col-md-3"),
                    Column(
                        _field("mm_treatment_start"),
                        _field("mm_bortezomib_start"),
                        css_class="col-md-5",
                    ),
                    css_class="g-2",
                ),
                css_class="border rounded p-2 mt-2",
            ),
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.editing and cleaned.get("version") is None and "version" not in self.errors:
            raise ValidationError(MISSING_VERSION, code="missing_version")
        return cleaned

    @classmethod
    def initial_for(cls, patient: Patient) -> dict[str, Any]:
        initial = {"mrn": patient.mrn, "name": patient.name, "version": patient.version}
        for name in _DECLARED_PATIENT_FIELDS:
            initial[name] = getattr(patient, name)
        return initial


PatientCaseForm.base_fields.update(declared_form_fields(PATIENT_GROUPS))
_DECLARED_PATIENT_FIELDS = tuple(declared_form_fields(PATIENT_GROUPS))
_CLINICAL_FLAGS = tuple(item.name for item in CLINICAL.fields if item.kind == "bool")
_MYELOMA_FLAGS = tuple(item.name for item in MYELOMA.fields if item.kind == "bool")
# The lab's datetime is entered as a date and an optional time of day.
_COLLECTED_ON, _COLLECTED_TIME = "collected_on", "collected_time"
_COLLECTED = (_COLLECTED_ON, _COLLECTED_TIME)


class LabForm(forms.Form):
    """One serial result as the lab reported it (fields from the declaration's lab group)."""

    test = forms.ChoiceField(
        label=LAB["test"].label,
        choices=[(test.code, test.label) for test in LAB_TESTS],
        initial=LAB_TESTS[0].code,
    )
    value = _form_field(LAB["value"], help_text=False)
    unit = forms.ChoiceField(
        label=LAB["unit"].label,
        choices=list(UNIT_LABELS.items()),
        initial=LAB_TESTS[0].canonical_unit,
    )
    collected_on = forms.DateField(label=f"{LAB['collected_at'].label} on", widget=_DateInput())
    collected_time = forms.TimeField(
        label="at (time)",
        required=False,
        widget=_TimeInput(),
        input_formats=["%H:%M", "%H:%M:%S"],  # spec §1: HH:MM[:SS], no fractions of a second
    )
    reference_high = _form_field(LAB["reference_high"], help_text=False)
    reference_low = _form_field(LAB["reference_low"], help_text=False)
    # Shown only for a value outside the entry-check bounds (entry_checks.py).
    confirm = forms.BooleanField(required=False, label="Confirm this value")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _style(self)
        self.helper = _form_helper(
            Row(
                *(
                    Column(_row_field(name), css_class="col-6 col-md-3")
                    for name in _LAB_FORM_FIELDS
                ),
                css_class="g-2 align-items-start",
            )
        )

    def clean(self) -> dict[str, Any]:
        # A typed time is local (ALPCARE_TIME_ZONE), and is exported with its UTC offset: one
        # the clocks skipped would be exported as another instant, and read back an hour later.
        cleaned = super().clean() or {}
        day, at = cleaned.get(_COLLECTED_ON), cleaned.get(_COLLECTED_TIME)
        if day and at and skipped_by_the_clocks(day, at, timezone.get_current_timezone()):
            self.add_error(_COLLECTED_TIME, SKIPPED_TIME)
        return cleaned

    def has_changed(self) -> bool:
        """A row counts as entered when something is typed in it: the test and unit have
        defaults, so choosing them alone leaves the row empty, as the case draft reads it
        (case_draft skips such a row; the formset validated it: "Value: required")."""
        return any(name in self.changed_data for name in _LAB_ENTRIES)

    def ask_confirmation(self, lab: dict[str, Any]) -> bool:
        """Show the confirm box of a result (``lab``, as the case document has it) outside the
        entry-check bounds; True while the box is not ticked for this value (the value then
        says why)."""
        unusual = _unusual_lab(lab)
        if unusual is None:
            return False
        token, message = unusual
        self.helper.layout[0].append(Column(_row_field("confirm"), css_class="col-12"))
        if _confirm_box(self, "confirm", token):
            return False
        self.add_error("value", message)
        return True


def confirmation_token(value: float, unit: str = "") -> str:
    """What a confirm box confirms: the value (and unit) it was shown for. Ticked for another
    value (the value changed after the box was ticked), it confirms nothing."""
    return f"{engine.json_number(value)} {unit}".strip()


def _confirm_box(form: forms.Form, name: str, token: str) -> bool:
    """Show ``form``'s confirm box ``name`` for the value ``token``; True when it was posted
    ticked for that value. A box ticked for another value is shown unticked."""
    widget = form.fields[name].widget
    widget.attrs["value"] = token
    ticked = form.is_bound and form.data.get(form.add_prefix(name)) == token
    if not ticked:
        cast(forms.CheckboxInput, widget).check_test = lambda _value: False
    return ticked


def _unusual_lab(lab: dict[str, Any]) -> tuple[str, str] | None:
    """(confirmation token, why) for a typed result outside the entry-check bounds, else None
    (also for a value or unit the case cannot read: that has its own error, and no tick could
    save it; the value's declared bounds hold in its unit and in the test's canonical unit)."""
    value = _number_or_none(lab.get("value"))
    if value is None or (lab["test"], lab["unit"]) not in CONVERSIONS:
        return None
    message = unusual_lab(lab["test"], value, lab["unit"])
    if message is None:
        return None
    refused = engine.lab_problems(lab["test"], lab["unit"], value)
    if any(error.location[2:] == ("value",) for error in refused):
        return None
    return confirmation_token(value, lab["unit"]), message


def _number_or_none(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


_LAB_FORM_FIELDS = (
    "test",
    "value",
    "unit",
    _COLLECTED_ON,
    _COLLECTED_TIME,
    "reference_low",
    "reference_high",
)
# The lab's limits, as declared (a number each, in the result's unit).
_LAB_LIMITS = ("reference_high", "reference_low")


class TherapyForm(forms.Form):
    """One therapy (fields from the declaration's therapy group)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _style(self)
        self.helper = _form_helper(
            Row(
                Column(_row_field("agent"), css_class="col-md-4"),
                Column(_row_field("start"), css_class="col-md-3"),
                Column(_row_field("end"), css_class="col-md-3"),
                css_class="g-2 align-items-start",
            )
        )


TherapyForm.base_fields.update(declared_form_fields([THERAPY]))


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
            _COLLECTED_ON: lab.collected_on,
            _COLLECTED_TIME: lab.collected_time,
            "reference_high": lab.reference_high,
            "reference_low": lab.reference_low,
        }
        for lab in labs
    ]


def therapy_initial(therapies: Iterable[Any]) -> list[dict[str, Any]]:
    return [{item.name: getattr(t, item.name) for item in THERAPY.fields} for t in therapies]


@dataclass
class CaseForms:
    """The parts of the case-entry page, validated together. Editing a stored patient, the
    results are not part of the form (each is added, edited or removed on its own): ``labs``
    is None."""

    patient: PatientCaseForm
    labs: _RowFormSet | None
    therapies: _RowFormSet

    @classmethod
    def bind(
        cls, data: Any | None, *, clinics: Sequence[Clinic] = (), patient: Patient | None = None
    ) -> CaseForms:
        editing = patient is not None
        if data is None and patient is not None:
            return cls(
                patient=PatientCaseForm(initial=PatientCaseForm.initial_for(patient), editing=True),
                labs=None,
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
            patient=PatientCaseForm(data, clinics=() if editing else clinics, editing=editing),
            labs=None if editing else LabFormSet(data, prefix=LAB_PREFIX),
            therapies=TherapyFormSet(data, prefix=THERAPY_PREFIX),
        )

    def all_forms(self) -> list[forms.Form]:
        lab_forms = [] if self.labs is None else self.labs.forms
        return [self.patient, *lab_forms, *self.therapies.forms]

    def error_summary(self) -> list[dict[str, str]]:
        """Every error of a failed save, in page order, each with the id of the control it is
        about (the summary links there); the controls are marked invalid (red border,
        aria-invalid) on the way."""
        summary: list[dict[str, str]] = []
        removed = {
            id(form)
            for formset in (self.labs, self.therapies)
            if formset is not None and formset.is_bound
            for form in formset.forms
            if _checked(form.data, form.add_prefix("DELETE"))
        }
        for form in self.all_forms():
            if not form.is_bound or id(form) in removed:  # a removed row leaves the case
                continue
            where = "" if form is self.patient else f"{_row_name(form.prefix)}: "
            for name, messages in form.errors.items():
                field = form.fields.get(name) if name != NON_FIELD_ERRORS else None
                if field is None:
                    target = "case-form" if form is self.patient else f"{form.prefix}-errors"
                    summary += [
                        {"target": target, "text": f"{where}{message}"} for message in messages
                    ]
                    continue
                bound = form[name]
                classes = field.widget.attrs.get("class", "")
                if "is-invalid" not in classes.split():
                    field.widget.attrs["class"] = f"{classes} is-invalid".strip()
                field.widget.attrs["aria-invalid"] = "true"
                label = str(bound.label)
                summary += [
                    {"target": bound.id_for_label, "text": f"{where}{label}: {message}"}
                    for message in messages
                ]
        return summary

    def unreadable(self) -> str | None:
        """Why the posted rows cannot be read (a formset's management form missing or wrong),
        or None. Django's formset refuses such a post with an error no form field carries."""
        for formset in (self.labs, self.therapies):
            if formset is not None and formset.is_bound and not formset.management_form.is_valid():
                return (
                    f"{formset.prefix}-TOTAL_FORMS and {formset.prefix}-INITIAL_FORMS must be "
                    "posted with the rows"
                )
        return None

    def forms_valid(self) -> bool:
        # Evaluate every part so that every form carries its errors.
        results = [self.patient.is_valid(), self.therapies.is_valid()]
        if self.labs is not None:
            results.append(self.labs.is_valid())
        return all(results)

    def ask_confirmations(self, draft: CaseDraft, confirmed: dict[str, Any]) -> bool:
        """Ask for a confirmation of each typed value outside the entry-check bounds
        (reference-intervals.md): its confirm box is shown and, until it is ticked, the value
        carries why on its field. True when a value still needs one (nothing is saved)."""
        waiting = False
        patient = self.patient
        for item, value, message in _unusual_values(draft.document, confirmed):
            patient.patient_helper.layout.append(_field(item.confirm))
            if not _confirm_box(patient, item.confirm, confirmation_token(value)):
                patient.add_error(item.name, message)
                waiting = True
        if self.labs is None:  # editing: stored results are checked one by one (ResultForm)
            return waiting
        for lab, index in zip(draft.document["labs"], draft.lab_rows, strict=True):
            if cast(LabForm, self.labs.forms[index]).ask_confirmation(lab):
                waiting = True
        return waiting

    def add_case_errors(self, errors: Iterable[engine.FieldError], draft: CaseDraft) -> None:
        """Put each of the engine's errors on the form field that holds the value. A field the
        form already refused keeps that one error: the engine read the same text ("412,5":
        "Enter a number.", not also "must be a number"), and the summary counts each bad entry
        once."""
        rows = {
            LAB_PREFIX: [] if self.labs is None else self.labs.forms,
            THERAPY_PREFIX: self.therapies.forms,
        }
        # The fields the form itself refused (before any of the engine's errors is added).
        refused = {
            (id(form), name)
            for form in self.all_forms()
            for name in form.errors
            if name != NON_FIELD_ERRORS
        }
        for error in errors:
            stored = draft.on_stored_result(error)
            if stored is not None:
                if (id(self.patient), stored[0]) in refused:
                    continue
                if stored[1] not in self.patient.errors.get(stored[0] or NON_FIELD_ERRORS, []):
                    self.patient.add_error(stored[0], stored[1])
                continue
            prefix, index, field_name = draft.locate(error.location)
            form: forms.Form = self.patient
            if prefix is not None and index is not None and index < len(rows[prefix]):
                form = rows[prefix][index]
            if field_name is not None and field_name in form.fields:
                if (id(form), field_name) in refused:
                    continue  # the form's own error on this entry says it
                message = clinical_message(error)
                if message not in form.errors.get(field_name, []):
                    form.add_error(field_name, message)
            elif form is not self.patient:  # the row's own legend names it ("Result 3: …")
                form.add_error(None, draft.in_form_words(error.message))
            else:
                form.add_error(None, draft.in_form_words(str(error)))


@dataclass(frozen=True)
class _CheckedValue:
    part: str  # of the case document
    name: str  # the field, in the document and on the form
    confirm: str  # its confirm box on the form
    words: str
    check: Callable[[float], str | None]

    @property
    def declared(self) -> CaseField:
        """Its declared case field, whose bounds say what the case can hold."""
        item = declared_field(f"{self.part}.{self.name}")
        assert item is not None, self.name
        return item


# The case's single values typed by hand that the entry checks cover (reference-intervals.md:
# weight, and the baselines as a CrCl and a creatinine, in their declared units).
_CHECKED_VALUES: Final = (
    _CheckedValue("patient", "weight_kg", "confirm_weight", "weight", unusual_weight),
    _CheckedValue(
        "clinical", "crcl_baseline", "confirm_crcl_baseline", "CrCl baseline",
        lambda value: unusual_lab("crcl", value, "mL/min"),
    ),
    _CheckedValue(
        "clinical", "creatinine_baseline", "confirm_creatinine_baseline", "creatinine baseline",
        lambda value: unusual_lab("creatinine", value, "mg/dL"),
    ),
)  # fmt: skip


def confirmed_values(patient: Patient | None) -> dict[str, Any]:
    """The stored patient's checked values: confirmed when they were saved, so saving the edit
    page again does not ask again (a changed value does)."""
    return {} if patient is None else {i.name: getattr(patient, i.name) for i in _CHECKED_VALUES}


def _unusual_values(
    document: dict[str, Any], confirmed: dict[str, Any]
) -> list[tuple[_CheckedValue, float, str]]:
    """Each single value outside its entry-check bounds and not confirmed before, with why."""
    found = []
    for item in _CHECKED_VALUES:
        value = _number_or_none((document.get(item.part) or {}).get(item.name))
        if value is None or value == confirmed.get(item.name):
            continue
        if not within_declared_bounds(item.declared, value):
            continue  # refused with its own error: no tick could save it
        if (message := item.check(value)) is not None:
            found.append((item, value, message))
    return found


def _form_name(group: Group, name: str) -> str:
    """The form field holding a declared field (the lab's datetime: its date)."""
    return _COLLECTED_ON if group is LAB and name == "collected_at" else group.prefix + name


class ResultForm(LabForm):
    """One result added or edited on its own (the patient page, the result's edit page), with
    the patient's version for optimistic locking."""

    version = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.helper = _form_helper(
            Row(
                *(Column(_field(name), css_class="col-6") for name in ("test", "value", "unit")),
                *(Column(_field(name), css_class="col-6") for name in _COLLECTED),
                *(
                    Column(_field(name), css_class="col-6")
                    for name in ("reference_low", "reference_high")
                ),
                css_class="g-2",
            )
        )
        self.helper.render_hidden_fields = True  # the version

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("version") is None and "version" not in self.errors:
            raise ValidationError(MISSING_VERSION, code="missing_version")
        return cleaned

    def lab_document(self) -> dict[str, Any]:
        """This result as a lab of the case document (spec §1)."""
        data = self.cleaned_data
        collected_at = format_datetime(data[_COLLECTED_ON], data[_COLLECTED_TIME])
        lab: dict[str, Any] = {
            "test": data["test"],
            "value": engine.json_number(data["value"]),
            "unit": data["unit"],
            "collected_at": collected_at,
        }
        for name in _LAB_LIMITS:
            limit = data[name]
            lab[name] = None if limit is None else engine.json_number(limit)
        return lab

    def add_case_errors(self, errors: Iterable[engine.FieldError], index: int) -> None:
        """The engine's errors about ``labs[index]`` on their fields; others as form errors."""
        for error in errors:
            if error.location[:2] == ("labs", index):
                name = error.location[2] if len(error.location) > 2 else None
                form_name = _form_name(LAB, name) if isinstance(name, str) else None
                message = clinical_message(error)
                if error.code == "duplicate":
                    message = "a result of this test is already recorded at this date and time"
                self.add_error(form_name if form_name in self.fields else None, message)
            else:
                self.add_error(None, str(error))


def _no_interval_wording() -> str:
    """The lab's upper limit required for a unit without a built-in interval, with the tests
    and units named as the form shows them (the engine names the document's codes:
    "required for bone_alp in U/L"): "required for Bone ALP in U/L or µkat/L (…)"."""
    named = [
        f"{test.label} in {' or '.join(unit.shown for unit in units)}"
        for test in LAB_TESTS
        if (units := [unit for unit in test.units if unit.requires_reference_high])
    ]
    return f"required for {'; '.join(named)} (no built-in interval for activity)"


# The engine speaks the case document's language ("after as_of"); the screens speak the
# clinician's. Keyed by the field (the last part of the error's location) and the error's code.
_CLINICAL_WORDING = {
    ("birth_date", "after_as_of"): "the birth date is after the assessment date (today)",
    ("collected_at", "after_as_of"): "collected after the assessment date (today)",
    ("fracture_date", "after_as_of"): "the fracture date is after the assessment date (today)",
    ("collected_at", "before_birth"): "collected before the birth date",
    ("end", "before_start"): "ends before it starts",
    ("reference_low", "not_below_high"): "must be below the lab's upper limit",
    ("pregnant", "male_patient"): "pregnancy is recorded for a male patient",
    ("postmenopausal", "male_patient"): "menopause is recorded for a male patient",
    ("gestational_weeks", "not_pregnant"): (
        "gestational weeks are given but the patient is not recorded as pregnant"
    ),
    ("reference_high", "no_interval"): _no_interval_wording(),
}


def _row_name(prefix: str | None) -> str:
    """ "labs-2" -> "Result 3", "therapies-0" -> "Therapy 1" (as the rows' legends say)."""
    kind, _, index = (prefix or "").partition("-")
    number = int(index) + 1 if index.isascii() and index.isdecimal() else 0
    return f"{'Result' if kind == LAB_PREFIX else 'Therapy'} {number}"


def clinical_message(error: engine.FieldError) -> str:
    """The engine's message about a field, worded for the clinician at the form."""
    last = error.location[-1] if error.location else None
    return _CLINICAL_WORDING.get((str(last), error.code), error.message)


# ---------------------------------------------------------------------------------------------
# The one conversion from the posted case-entry form to the case document. The live preview and
# the save both use it, and the engine's parser (the API's) validates what it produces: a value
# the form cannot convert is passed on as typed, so that the engine names the problem.


class JsonPostedForm(dict[str, Any]):
    """The case-entry form as the live preview posts it: one JSON object of field name to value
    (a list for a name posted more than once), read like a QueryDict by ``case_draft``."""

    def getlist(self, key: str) -> list[str]:
        value = self.get(key)
        if value is None:
            return []
        return value if isinstance(value, list) else [value]


def _json_form(body: bytes) -> JsonPostedForm:
    try:
        data = json.loads(body)
    except RecursionError:
        raise FormUnreadable("the form's JSON is nested too deeply") from None
    except ValueError as error:  # json.JSONDecodeError and bad UTF-8 are ValueErrors
        raise FormUnreadable(f"the form's JSON is not valid: {error}") from None
    if not isinstance(data, dict):
        raise FormUnreadable("expected a JSON object of form fields")
    for name, value in data.items():
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(item, str) for item in values):
            raise FormUnreadable(
                f"{name}: expected a string or a list of strings (nested at most "
                f"{_MAX_JSON_DEPTH} deep)"
            )
    return JsonPostedForm(data)


def posted_case_form(request: HttpRequest) -> QueryDict | JsonPostedForm:
    """The posted case-entry form: JSON from the live preview (reading one small document costs
    far less than parsing ~150 form fields on every pause in typing), else the form as posted.
    Raises FormUnreadable when the JSON cannot be read as a form."""
    if request.content_type != "application/json":
        return request.POST
    return _json_form(request.body)


def row_count(data: Any, prefix: str) -> int:
    """The number of rows a formset says it posts: absent is none; anything but a whole number
    from 0 to MAX_ROWS is refused (never capped in silence)."""
    raw = data.get(f"{prefix}-TOTAL_FORMS")
    if raw is None:
        return 0
    text = raw.strip() if isinstance(raw, str) else ""
    if not (text.isascii() and text.isdigit() and len(text) <= 7) or int(text) > MAX_ROWS:
        raise FormUnreadable(
            f"{prefix}-TOTAL_FORMS must be a whole number from 0 to {MAX_ROWS}, "
            f"not {json.dumps(raw)[:40]}"
        )
    return int(text)


@dataclass
class CaseDraft:
    document: dict[str, Any]
    lab_rows: list[int] = field(default_factory=list)  # labs[i] is form row lab_rows[i]
    therapy_rows: list[int] = field(default_factory=list)
    stored_labs: bool = False  # the labs are the stored results (the edit page does not post them)

    def on_stored_result(self, error: engine.FieldError) -> tuple[str | None, str] | None:
        """An engine error about a stored result, which the edit page does not show as a row:
        (the form field it is about, or None, and the message in the user's words); None when
        the error is not about a stored result. A birth date moved after stored results is the
        birth date's error, named by the earliest result."""
        path = group_location(LAB)
        location = error.location
        if not self.stored_labs or location[: len(path)] != path or len(location) <= len(path):
            return None
        labs = self.document["labs"]
        if error.code == "before_birth":
            earliest = min(str(lab.get("collected_at", ""))[:10] for lab in labs)
            return "birth_date", (
                f"the birth date is after stored results (the earliest was collected on {earliest})"
            )
        index = location[len(path)]
        lab = labs[index] if isinstance(index, int) and index < len(labs) else {}
        test = TEST_LABELS.get(lab.get("test", ""), "result")
        collected = str(lab.get("collected_at", ""))[:10]
        return None, f"stored result {test} of {collected}: {clinical_message(error)}"

    def locate(self, location: engine.Location) -> tuple[str | None, int | None, str | None]:
        """(row prefix, form row index, form field) for an engine error's location; a row that
        is not on the form (a stored result, when editing) has none."""
        for group, prefix, rows in _row_groups(self):
            path = group_location(group)
            if location[: len(path)] == path and len(location) > len(path):
                index = location[len(path)]
                if not isinstance(index, int) or index >= len(rows):
                    return None, None, None
                rest = location[len(path) + 1 :]
                name = _form_name(group, rest[0]) if rest and isinstance(rest[0], str) else None
                if name == _COLLECTED_ON and self._time_at_fault(index):
                    name = _COLLECTED_TIME
                return prefix, rows[index], name
        for group in (MYELOMA, CLINICAL, PATIENT):  # the most specific first
            path = group_location(group)
            if location[: len(path)] == path and len(location) == len(path) + 1:
                last = location[-1]
                return None, None, _form_name(group, last) if isinstance(last, str) else None
        return None, None, None

    def _time_at_fault(self, index: int) -> bool:
        """A lab's collected_at that cannot be read while its date part can: the time is."""
        labs = self.document.get("labs") or []
        collected = labs[index].get("collected_at") if index < len(labs) else None
        if not isinstance(collected, str) or "T" not in collected:
            return False
        day = collected.split("T", 1)[0]
        return parse_iso_datetime(collected) is None and parse_iso_datetime(day) is not None

    def in_form_words(self, text: str) -> str:
        """An engine message with its document paths ("labs[0]") named as the form numbers
        the rows ("result 2": a row removed before it shifts the document's indexes)."""

        def row(match: re.Match[str]) -> str:
            group, index = match[1], int(match[2])
            rows = self.lab_rows if group == "labs" else self.therapy_rows
            number = rows[index] + 1 if index < len(rows) else index + 1
            return f"{'result' if group == 'labs' else 'therapy'} {number}"

        return _DOCUMENT_ROW.sub(row, text)

    def skipped_times(self) -> list[str]:
        """The error slots of typed results at a local time the clocks skipped, which saving
        refuses (``LabForm.clean``): the live preview says so as the time is typed."""
        if self.stored_labs:
            return []
        zone = timezone.get_current_timezone()
        slots = []
        for lab, row in zip(self.document["labs"], self.lab_rows, strict=True):
            day, at = parse_iso_datetime(str(lab.get("collected_at", ""))) or (None, None)
            if day is not None and at is not None and skipped_by_the_clocks(day, at, zone):
                slots.append(f"id_{LAB_PREFIX}-{row}-{_COLLECTED_TIME}-error")
        return slots

    def unusual_entries(self, confirmed: dict[str, Any], posted: Any = None) -> list[str]:
        """The typed values outside the entry-check bounds, in the user's words ("result 1:
        12,600 U/L is above …"): saving will ask to confirm each (a valid document only), but
        for those whose box in ``posted`` (the form) is ticked for the value now typed."""
        posted = posted if posted is not None else {}
        entries = [
            f"{item.words}: {message}"
            for item, value, message in _unusual_values(self.document, confirmed)
            if posted.get(item.confirm) != confirmation_token(value)
        ]
        for lab, index in zip(self.document["labs"], self.lab_rows, strict=False):
            unusual = _unusual_lab(lab)
            if unusual is not None and posted.get(f"{LAB_PREFIX}-{index}-confirm") != unusual[0]:
                entries.append(f"result {index + 1}: {unusual[1]}")
        return entries

    def slot_id(self, location: engine.Location) -> str:
        """The id of the element showing this location's errors on the case-entry page."""
        prefix, index, field_name = self.locate(location)
        if field_name is None:
            return "case-errors" if prefix is None else f"{prefix}-{index}-errors"
        name = field_name if prefix is None else f"{prefix}-{index}-{field_name}"
        return f"id_{name}-error"


def field_label(prefix: str | None, name: str) -> str:
    """The label of a case-entry form field (``prefix``: the row's formset, or None)."""
    form = {LAB_PREFIX: LabForm, THERAPY_PREFIX: TherapyForm}.get(prefix or "", PatientCaseForm)
    form_field = form.base_fields.get(name)
    return str(form_field.label) if form_field and form_field.label else name.replace("_", " ")


def group_location(group: Group) -> tuple[str, ...]:
    return tuple(group.path.split("."))


def _row_groups(draft: CaseDraft) -> tuple[tuple[Group, str, list[int]], ...]:
    return ((LAB, LAB_PREFIX, draft.lab_rows), (THERAPY, THERAPY_PREFIX, draft.therapy_rows))


def _text(data: Any, name: str) -> str | None:
    value = data.get(name)
    if not isinstance(value, str):
        return None
    return value.strip() or None


# A whole number as the form's IntegerField reads it ("30", "30.0"; not "3e1" or "30.5"), so
# that the live preview and the save read the same entry (spec §7).
_WHOLE_NUMBER: Final = forms.IntegerField(required=False)


def _typed_number(data: Any, name: str, *, integer: bool = False) -> float | int | str | None:
    text = _text(data, name)
    if text is None:
        return None
    if integer:
        try:
            return cast(int, _WHOLE_NUMBER.to_python(text))
        except ValidationError:
            return text  # as typed: the engine reports "must be a whole number" on this field
    try:
        return engine.json_number(float(text))
    except (ValueError, OverflowError):
        return text  # as typed: the engine reports "must be a number" on this field


def _checked(data: Any, name: str) -> bool:
    return data.get(name) not in (None, "", "false", "0", "off")


def _read_group(group: Group, data: Any, lists: Any, prefix: str = "") -> dict[str, Any]:
    """A declared group's values as posted; a value not given is left out (the engine applies
    its default, or says "required")."""
    values: dict[str, Any] = {}
    for item in group.fields:
        name = prefix + group.prefix + item.name
        value: Any
        if item.kind == "bool" and item.default is None:  # yes / no / not given
            value = {"true": True, "false": False}.get(_text(data, name) or "")
        elif item.kind == "bool":
            value = _checked(data, name)
        elif item.kind == "number":
            value = _typed_number(data, name, integer=item.integer)
        elif item.kind == "choices":
            posted = lists.getlist(name) if hasattr(lists, "getlist") else data.get(name)
            posted = posted if isinstance(posted, list) else [posted]
            value = [v for v in posted if isinstance(v, str) and v]
        else:
            value = _text(data, name)
        if value is not None:
            values[item.name] = value
    return values


def _read_lab_row(data: Any, prefix: str) -> dict[str, Any] | None:
    entered = [_text(data, prefix + name) for name in _LAB_ENTRIES]
    if _checked(data, prefix + "DELETE") or not any(entered):
        return None
    lab: dict[str, Any] = {
        "test": _text(data, prefix + "test") or LAB_TESTS[0].code,
        "unit": _text(data, prefix + "unit") or "",
    }
    for name in ("value", *_LAB_LIMITS):
        if (number := _typed_number(data, prefix + name)) is not None:
            lab[name] = number
    if (collected_on := _text(data, prefix + _COLLECTED_ON)) is not None:
        collected_time = _text(data, prefix + _COLLECTED_TIME)
        if collected_time and _ONE_DIGIT_HOUR.match(collected_time):
            collected_time = f"0{collected_time}"  # "8:15", as the form reads it: 08:15
        lab["collected_at"] = collected_on + (f"T{collected_time}" if collected_time else "")
    return lab


_DOCUMENT_ROW = re.compile(r"\b(labs|clinical\.therapies)\[(\d+)\]", re.ASCII)
_ONE_DIGIT_HOUR = re.compile(r"\d:\d\d(:\d\d)?\Z", re.ASCII)


def case_draft(data: Any, *, stored_labs: Sequence[engine.Lab] | None = None) -> CaseDraft:
    """The case document (spec §1) of the posted case-entry form, with the row mapping.

    Empty rows and rows marked for removal are left out. Editing a stored patient, its stored
    results (``stored_labs``) stand for the results, which that form does not post. Raises
    FormUnreadable for a row count that is not a whole number within MAX_ROWS.
    """
    lists = data
    # One value per name in a plain dict: QueryDict.get raises and catches an exception for
    # each absent name (every unticked box, every row's "remove").
    data = data.dict() if isinstance(data, QueryDict) else data
    draft = CaseDraft(document={"patient": _read_group(PATIENT, data, lists), "labs": []})

    if stored_labs is not None:
        draft.document["labs"] = [engine.lab_to_document(lab) for lab in stored_labs]
        draft.stored_labs = True
    else:
        for index in range(row_count(data, LAB_PREFIX)):
            lab = _read_lab_row(data, f"{LAB_PREFIX}-{index}-")
            if lab is not None:
                draft.document["labs"].append(lab)
                draft.lab_rows.append(index)

    therapies: list[dict[str, Any]] = []
    for index in range(row_count(data, THERAPY_PREFIX)):
        prefix = f"{THERAPY_PREFIX}-{index}-"
        therapy = _read_group(THERAPY, data, lists, prefix)
        if _checked(data, prefix + "DELETE") or not therapy:
            continue
        therapies.append(therapy)
        draft.therapy_rows.append(index)

    draft.document["clinical"] = {
        **_read_group(CLINICAL, data, lists),
        "myeloma": _read_group(MYELOMA, data, lists),
        "therapies": therapies,
    }
    return draft


# What the user types into a result row (test and unit have defaults, so they do not count).
_LAB_ENTRIES = ("value", _COLLECTED_ON, _COLLECTED_TIME, *_LAB_LIMITS)


class PatientSearchForm(forms.Form):
    """The patient list's search (MRN or name) and page, kept in the URL."""

    q = forms.CharField(
        label="Search MRN or name",
        max_length=100,
        required=False,
        widget=forms.TextInput(
            attrs={"class": "form-control", "type": "search", "autocomplete": "off"}
        ),
    )
    page = forms.IntegerField(min_value=1, required=False, widget=forms.HiddenInput)

    def search(self) -> tuple[str, int]:
        """The valid search and page (an invalid value is ignored rather than failing)."""
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return (data.get("q") or "").strip(), data.get("page") or 1
