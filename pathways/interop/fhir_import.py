"""A FHIR R4 Bundle (transaction or collection) of one patient → what alpcare would store.

Pure reading, no database: the Bundle is validated with fhir.resources' R4B models, then each
entry is mapped with the codes of spec/interop.md (ICD-10-CM and ATC through ``fhir_case.py``;
LOINC through the case declaration, as ``hl7v2.loinc_table`` reads it; alpcare's own codes
and extension from ``fhir_codes.py``). Every problem is named by its FHIRPath
(``Bundle.entry[3].resource.valueQuantity.unit``) and the Bundle is refused as a whole
(``BundleInvalid``); what is read but deliberately not stored (a preliminary result, a resolved
condition, a planned course) is kept as an information note. ``pathways/fhir.py`` applies it.

Import is strict where interop.md says so: a code alpcare does not map is an error naming it,
never guessed or dropped silently (CDS Hooks, reading the same resources for one call, skips
them instead: ``fhir_case.case_from_fhir``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, tzinfo
from typing import Any, Final

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.medicationstatement import MedicationStatement
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient
from pydantic import ValidationError

from pathways.engine import declaration, json_number, values_agree
from pathways.engine.dates import format_datetime
from pathways.interop import fhir_codes, hl7v2
from pathways.interop.fhir_case import (
    ACTIVE_CLINICAL_STATUSES,
    ATC,
    CONVERTED_DECIMALS,
    COUNTED_OBSERVATION_STATUSES,
    COUNTED_REQUEST_STATUSES,
    COUNTED_STATEMENT_STATUSES,
    ICD10CM,
    LOINC,
    POUND_IN_KG,
    REFERENCE_LIMITS,
    STOPPED_STATEMENT_STATUSES,
    UCUM,
    advanced_weeks,
    agent_for_atc,
    diagnoses_for_icd10cm,
    json_nodes,
    known_cancer,
    lab_range,
    local_date_time,
    nul_path,
    quantity_unit,
)
from pathways.listing import listed

BUNDLE_TYPES: Final = ("transaction", "collection")
ISSUES_LISTED: Final = 50  # structural problems named in the OperationOutcome; the rest are counted
READ_TYPES: Final = (
    "Patient",
    "Observation",
    "Condition",
    "MedicationStatement",
    "MedicationRequest",
)
TRANSACTION_METHODS: Final = ("POST", "PUT")

# Case fields carried by a standard code; every other declared field of the patient's groups
# travels in alpcare's case-fields extension (fhir_codes.CASE_EXTENSION).
STANDARD_FIELDS: Final = frozenset(
    {
        "patient.birth_date",
        "patient.sex",
        "patient.weight_kg",
        "patient.pregnant",
        "patient.gestational_weeks",
        "clinical.diagnoses",
        "clinical.cancer",
    }
)

# Observations that set a patient field: LOINC → (field path, UCUM unit → factor to the
# field's unit, whether the value grows by a week a week). A row whose field is not declared
# (yet) is read as a note, not stored. Gestational weeks are "completed weeks at as_of" (spec
# §1): an observation made earlier is advanced by the whole weeks since.
OBSERVATION_FIELDS: Final[dict[str, tuple[str, dict[str, float], bool]]] = {
    fhir_codes.WEIGHT.code: ("patient.weight_kg", {"kg": 1.0, "[lb_av]": POUND_IN_KG}, False),
    fhir_codes.GESTATIONAL_AGE.code: ("patient.gestational_weeks", {"wk": 1.0}, True),
}

NOT_COUNTED_VERIFICATION: Final = ("refuted", "entered-in-error")


def extension_fields() -> dict[str, declaration.CaseField]:
    """Document path → field, for every patient-level field without a standard code."""
    return {
        f"{group.path}.{item.name}": item
        for group in declaration.PATIENT_GROUPS
        for item in group.fields
        if f"{group.path}.{item.name}" not in STANDARD_FIELDS
    }


def lab_codes() -> dict[tuple[str, str], tuple[str, tuple[str, ...]]]:
    """(system, code) → (test, units allowed): LOINC from the declaration, alpcare's own code
    for a test without one (CrCl)."""
    table = {(LOINC, code): entry for code, entry in hl7v2.loinc_table().items()}
    for test in declaration.LAB_TESTS:
        if not test.loinc:
            units = tuple(unit.code for unit in test.units if not unit.loinc)
            table[(fhir_codes.LAB_TEST_SYSTEM, test.code)] = (test.code, units)
    return table


def declared_lab_fields() -> frozenset[str]:
    return frozenset(item.name for item in declaration.LAB.fields)


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome issue: a FHIRPath and what is wrong (or, "information", what was
    read and not stored)."""

    path: str
    message: str
    severity: str = "error"
    code: str = "invalid"


class BundleInvalid(Exception):
    """``issues`` as listed (the last may count those not listed); ``count``: all of them."""

    def __init__(self, issues: list[Issue], count: int | None = None) -> None:
        super().__init__("; ".join(f"{issue.path}: {issue.message}" for issue in issues))
        self.issues = issues
        self.count = len(issues) if count is None else count


@dataclass(frozen=True)
class LabEntry:
    path: str  # the resource's FHIRPath
    test: str
    value: float
    unit: str
    collected_on: date
    collected_time: time | None
    limits: dict[str, float]  # the case document's reference_* fields
    amends: bool  # status amended/corrected: replaces a stored result at the same time
    comment: str = ""  # Observation.note: the laboratory's comment on the result
    # (case document field, the element of the resource it was read from), where that element
    # varies (effectiveInstant or effectivePeriod.start, the reference range chosen): errors
    # about the field name that element.
    elements: tuple[tuple[str, str], ...] = ()

    @property
    def collected_at(self) -> str:
        return format_datetime(self.collected_on, self.collected_time)

    def document(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "value": self.value,
            "unit": self.unit,
            "collected_at": self.collected_at,
            **self.limits,
        }


@dataclass(frozen=True)
class TherapyEntry:
    path: str
    agent: str
    start: date
    end: date | None
    # The elements the start and end were read from (effectivePeriod.start, authoredOn, ...):
    # errors about them name that element, as a lab's do.
    start_path: str = ""
    end_path: str = ""

    def element(self, name: str) -> str:
        """The FHIRPath of the case document's therapy field ``name`` (start, end, agent)."""
        paths = {
            "start": self.start_path,
            "end": self.end_path,
            "agent": f"{self.path}.medicationCodeableConcept",
        }
        return paths.get(name) or self.path


@dataclass
class BundleContent:
    type: str
    patient_entry: int
    patient_path: str
    mrn: str
    name: str
    birth_date: date
    sex: str
    # Document path → (value, the FHIRPath it came from); applied over the stored values.
    fields: dict[str, tuple[Any, str]] = field(default_factory=dict)
    diagnoses: dict[str, str] = field(default_factory=dict)  # diagnosis → FHIRPath
    cancer: tuple[str, str] | None = None
    labs: list[LabEntry] = field(default_factory=list)
    therapies: list[TherapyEntry] = field(default_factory=list)
    notes: list[Issue] = field(default_factory=list)


def _fhirpath(location: tuple[Any, ...], root: str = "Bundle") -> str:
    text = root
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _codings(concept: Any) -> list[tuple[str, str]]:
    if concept is None:
        return []
    return [(coding.system or "", coding.code or "") for coding in concept.coding or []]


def _local(value: Any, tz: tzinfo) -> tuple[date, time | None] | None:
    """A FHIR date or dateTime as the clinic's local date and time (None: partial date)."""
    return local_date_time(value, tz) if isinstance(value, date) else None


class _Reader:
    def __init__(self, today: date, tz: tzinfo) -> None:
        self.today = today
        self.tz = tz
        self.errors: list[Issue] = []
        self.notes: list[Issue] = []
        self.lab_table = lab_codes()
        self.lab_fields = declared_lab_fields()
        self.patient_refs: set[str] = set()
        # The Bundle Patient's MRN and its identifier's system: a subject may name it so.
        self.mrn = ""
        self.mrn_system = ""
        # Each cancer the Conditions name, with its entry: clinical.cancer holds one of them.
        self.cancers: list[tuple[str, str]] = []
        # Latest value of each observation-set field: field path → (sort key, when, value,
        # the resource's path, the element's path).
        self.latest: dict[str, tuple[tuple[date, time], str, Any, str, str]] = {}
        # Other values of a field at the time of its latest: field path → [(value, path)].
        self.tied: dict[str, list[tuple[Any, str]]] = {}

    def error(self, path: str, message: str, code: str = "invalid") -> None:
        self.errors.append(Issue(path, message, "error", code))

    def note(self, path: str, message: str) -> None:
        self.notes.append(Issue(path, message, "information", "informational"))

    def subject(self, subject: Any, path: str) -> None:
        """A resource must be about the Bundle's Patient: a reference to it, or its MRN as the
        identifier of a logical reference. Another patient, or a subject that cannot be checked
        (a display only), refuses the Bundle: never guessed to be the Bundle's Patient."""
        if subject is None:
            return
        text = subject.reference
        if text is not None and not (
            text in self.patient_refs or any(text.endswith("/" + ref) for ref in self.patient_refs)
        ):
            self.error(path + ".reference", f"{text} is not the Bundle's Patient", "invariant")
            return
        identifier = subject.identifier
        if identifier is not None:
            value = (identifier.value or "").strip()
            system = identifier.system or ""
            same_system = not system or not self.mrn_system or system == self.mrn_system
            if self.mrn and (value != self.mrn or not same_system):
                shown = f"{system}|{value}" if system else (value or "no value")
                self.error(
                    path + ".identifier",
                    f"{shown} is not the MRN of the Bundle's Patient "
                    f"({self.mrn_system + '|' if self.mrn_system else ''}{self.mrn})",
                    "invariant",
                )
            return
        if text is None:
            self.error(
                path,
                "names no patient alpcare can check: give a reference to the Bundle's Patient, "
                "or its MRN as identifier",
                "invariant",
            )

    def effective(self, observation: Observation, path: str) -> tuple[date, time | None] | None:
        element = effective_element(observation)
        value = observation.effectiveDateTime or observation.effectiveInstant
        if value is None and observation.effectivePeriod is not None:
            value = observation.effectivePeriod.start
        where = f"{path}.{element}"
        if value is None:
            self.error(path + ".effective", "required: when the observation was made", "required")
            return None
        local = _local(value, self.tz)
        if local is None:
            self.error(where, f"{value}: a full date or date-time is required")
            return None
        if local[0] > self.today:
            self.error(where, f"{value} is in the future")
            return None
        return local

    def remember(
        self, field_path: str, when: tuple[date, time | None], value: Any, path: str, element: str
    ) -> None:
        """A reading of a patient field by the resource at ``path``, its value in ``element``."""
        key = (when[0], when[1] or time.min)
        previous = self.latest.get(field_path)
        if previous is None or key > previous[0]:
            self.latest[field_path] = (key, format_datetime(*when), value, path, element)
            self.tied.pop(field_path, None)
        elif key == previous[0] and value != previous[2]:
            self.tied.setdefault(field_path, []).append((value, path))

    def disagreements(self) -> None:
        """Two values of one field at its latest time (70 kg and 72 kg at 08:00): an error
        naming both, as for two results of one test; the Bundle's order must not decide."""
        for field_path, others in self.tied.items():
            _key, when, value, path, _element = self.latest[field_path]
            for other, other_path in others:
                self.error(
                    other_path,
                    f"{field_path} is {_json(other)} here and {_json(value)} in {path}, "
                    f"both at {when}: send one value for a time",
                    "duplicate",
                )


def _json(value: Any) -> str:
    """A field's value as the case document writes it: 72, not 72.0; true, not True."""
    return json.dumps(json_number(value) if isinstance(value, float) else value)


def _is_resource_type(kind: object) -> bool:
    """Whether ``kind`` names a FHIR R4 resource (fhir.resources R4B): not a data type, not
    another spelling ("observation"), not a number or a list."""
    if not isinstance(kind, str):
        return False
    try:
        return bool(get_fhir_model_class(kind).has_resource_base())
    except (ValueError, AttributeError):
        return False


def _resource_type_issue(kind: object, path: str) -> Issue:
    shown = json.dumps(kind, ensure_ascii=False, default=str)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    hint = next((f" ({t}? the name is case-sensitive)" for t in READ_TYPES
                 if isinstance(kind, str) and kind.lower() == t.lower()), "")  # fmt: skip
    return Issue(path, f"resourceType {shown}: not a FHIR R4 resource type{hint}", code="structure")


def _unknown_resource_types(data: dict[str, Any]) -> list[Issue]:
    """Each resource in the Bundle (an entry's, a contained one: any object with a
    resourceType) whose type is not a FHIR R4 resource. fhir.resources' Bundle model fails on
    one with a KeyError or a TypeError, not a validation error naming it."""
    return [
        _resource_type_issue(value["resourceType"], path)
        for value, path in json_nodes(data, "Bundle")
        if isinstance(value, dict)
        and "resourceType" in value
        and not _is_resource_type(value["resourceType"])
    ]


def _structure_problems(issues: list[Issue]) -> BundleInvalid:
    return BundleInvalid(
        listed(
            issues,
            ISSUES_LISTED,
            lambda more: Issue("Bundle", f"and {more} more problems", code="structure"),
        ),
        count=len(issues),
    )


def read_bundle(data: object, *, today: date, tz: tzinfo) -> BundleContent:
    """What one patient's Bundle says; BundleInvalid lists every problem with its FHIRPath."""
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise BundleInvalid(
            [Issue("Bundle", "the body must be a FHIR Bundle (JSON)", code="structure")]
        )
    if (where := nul_path(data, "Bundle")) is not None:  # PostgreSQL cannot store it in a text
        raise BundleInvalid([Issue(where, "contains a NUL character (\\u0000)", code="value")])
    if unknown := _unknown_resource_types(data):
        raise _structure_problems(unknown)
    try:
        bundle = Bundle.model_validate(data)
    except ValidationError as invalid:
        issues = [
            Issue(_fhirpath(tuple(detail["loc"])), detail["msg"], code="structure")
            for detail in invalid.errors(include_url=False)
        ]
        raise _structure_problems(issues) from None
    except (KeyError, TypeError) as error:  # a resource fhir.resources cannot place
        message = f"not a FHIR R4 Bundle fhir.resources can read ({type(error).__name__}: {error})"
        raise BundleInvalid([Issue("Bundle", message, code="structure")]) from None
    reader = _Reader(today, tz)
    if bundle.type not in BUNDLE_TYPES:
        reader.error("Bundle.type", f"{bundle.type}: must be transaction or collection", "value")
    entries = list(bundle.entry or [])
    patients = [
        index for index, entry in enumerate(entries)
        if entry.resource is not None and entry.resource.get_resource_type() == "Patient"
    ]  # fmt: skip
    if len(patients) != 1:
        reader.error(
            "Bundle.entry", f"must hold exactly one Patient (found {len(patients)})", "required"
        )
        raise BundleInvalid(reader.errors)
    patient_index = patients[0]
    patient_entry = entries[patient_index]
    patient: Any = patient_entry.resource
    if patient.id:
        reader.patient_refs.add(f"Patient/{patient.id}")
    if patient_entry.fullUrl:
        reader.patient_refs.add(patient_entry.fullUrl)
    content = _patient(reader, patient, patient_index, str(bundle.type))

    seen_labs: dict[tuple[str, date, time | None], LabEntry] = {}
    for index, entry in enumerate(entries):
        path = f"Bundle.entry[{index}].resource"
        if bundle.type == "transaction":
            method = entry.request.method if entry.request is not None else None
            if method not in TRANSACTION_METHODS:
                where = f"Bundle.entry[{index}].request" + (".method" if method else "")
                reader.error(
                    where, f"{method or 'missing'}: a transaction entry must be POST or PUT"
                )
        resource: Any = entry.resource
        if resource is None:
            reader.error(path, "required: alpcare reads resources, not bare requests", "required")
            continue
        kind = resource.get_resource_type()
        if kind not in READ_TYPES:
            reader.error(
                path, f"{kind} is not read by alpcare ({', '.join(READ_TYPES)})", "not-supported"
            )
        elif kind == "Observation":
            _observation(reader, content, resource, path, index, seen_labs)
        elif kind == "Condition":
            _condition(reader, content, resource, path)
        elif kind == "MedicationStatement" or kind == "MedicationRequest":
            _medication(reader, content, resource, path)
    for field_path, (_, _, value, _path, element) in reader.latest.items():
        content.fields[field_path] = (value, element)
    _cancer(reader, content)
    reader.disagreements()
    if reader.errors:
        raise BundleInvalid(reader.errors)
    content.notes = reader.notes
    return content


def _patient(reader: _Reader, patient: Patient, entry: int, kind: str) -> BundleContent:
    path = f"Bundle.entry[{entry}].resource"
    birth_date = patient.birthDate if isinstance(patient.birthDate, date) else None
    if birth_date is None:
        reader.error(
            path + ".birthDate",
            "required: a full date (the reference intervals depend on age)",
            "required",
        )
    sex = patient.gender or ""
    if sex not in ("male", "female"):
        reader.error(
            path + ".gender",
            f"{sex or 'missing'}: alpcare needs male or female, because the reference "
            "intervals (ALP, bone ALP, GGT, ALT) are given by sex",
            "value" if sex else "required",
        )
    identifiers = list(patient.identifier or [])
    typed = [
        (index, identifier) for index, identifier in enumerate(identifiers)
        if (fhir_codes.IDENTIFIER_TYPE, "MR") in _codings(identifier.type) and identifier.value
    ]  # fmt: skip
    if not typed and len(identifiers) == 1 and identifiers[0].value:
        typed = [(0, identifiers[0])]
    mrn = ""
    if len(typed) != 1:
        reader.error(
            path + ".identifier",
            "the MRN is required: one identifier typed MR (v2-0203), or a single identifier"
            + (f" (found {len(typed)} typed MR)" if typed else ""),
            "required",
        )
    else:
        index, identifier = typed[0]
        mrn = (identifier.value or "").strip()
        if not mrn or len(mrn) > 40:
            reader.error(
                f"{path}.identifier[{index}].value", "an MRN of 1 to 40 characters", "value"
            )
        reader.mrn, reader.mrn_system = mrn, identifier.system or ""
    name = ""
    for human in patient.name or []:
        parts = [*(given or "" for given in human.given or []), human.family or ""]
        name = (human.text or " ".join(parts)).strip()
        if name:
            break
    if len(name) > 200:
        reader.error(path + ".name", "at most 200 characters", "value")
    content = BundleContent(
        type=kind, patient_entry=entry, patient_path=path, mrn=mrn, name=name,
        birth_date=birth_date or date.min, sex=sex,
    )  # fmt: skip
    _extension(reader, content, patient, path)
    return content


def _extension(reader: _Reader, content: BundleContent, patient: Patient, path: str) -> None:
    """The case fields of alpcare's case-fields extension. A field given two values (bone pain
    true, then false) refuses the Bundle naming both: never chosen by their order in the list.
    A list field (choices) is its sub-extensions' values together."""
    fields = extension_fields()
    values: dict[str, tuple[Any, str]] = {}  # field → (value, the sub-extension's FHIRPath)
    lists: dict[str, tuple[list[str], str]] = {}  # field → (values, the extension's FHIRPath)
    for index, extension in enumerate(patient.extension or []):
        if extension.url != fhir_codes.CASE_EXTENSION:
            continue  # another party's extension: not alpcare's to read
        for sub_index, sub in enumerate(extension.extension or []):
            where = f"{path}.extension[{index}].extension[{sub_index}]"
            url = sub.url or ""
            item = fields.get(url)
            if item is None:
                reader.error(where + ".url", f"{sub.url}: not a case field alpcare reads", "value")
                continue
            value, problem = _extension_value(item, sub)
            if problem:
                reader.error(where, problem, "value")
            elif item.kind == "choices":
                lists.setdefault(url, ([], f"{path}.extension[{index}]"))[0].append(value)
            elif url not in values:
                values[url] = (value, where)
            elif values[url][0] != value:
                first, first_where = values[url]
                reader.error(
                    where,
                    f"{url} is {_json(value)} here and {_json(first)} in {first_where}: "
                    "send one value for a field",
                    "duplicate",
                )
    content.fields.update(values)
    content.fields.update(lists)


_VALUE_KINDS: Final = {
    "bool": ("valueBoolean",),
    "number": ("valueDecimal", "valueInteger"),
    "choice": ("valueCode",),
    "choices": ("valueCode",),
    "date": ("valueDate",),
    "datetime": ("valueDateTime",),
    "text": ("valueString",),
}


def _number(item: declaration.CaseField, value: float) -> tuple[float | int | None, str]:
    """A number for a declared field: whole where the field is declared integer; else as sent
    (it was rounded to 3 decimals, so an export imported back was another case: a creatinine
    baseline of 0.9996 read 1.0)."""
    if getattr(item, "integer", False):
        if not float(value).is_integer():
            return None, f"{value:g}: {item.name} is a whole number"
        return int(value), ""
    return value, ""


def _extension_value(item: declaration.CaseField, sub: Any) -> tuple[Any, str]:
    names = _VALUE_KINDS[item.kind]
    value = next((getattr(sub, name) for name in names if getattr(sub, name) is not None), None)
    if value is None:
        return None, f"{sub.url} needs {' or '.join(names)}"
    if item.kind == "number":
        return _number(item, float(value))
    if item.kind in ("choice", "choices") and value not in item.values:
        return None, f"{value}: not one of {', '.join(item.values)}"
    if item.kind == "date":
        return (value.isoformat(), "") if isinstance(value, date) else (None, "a full date")
    if item.kind == "datetime":
        local = value if isinstance(value, datetime) else None
        return (local.replace(tzinfo=None).isoformat(), "") if local else (None, "a date-time")
    return value, ""


def _observation(
    reader: _Reader,
    content: BundleContent,
    observation: Observation,
    path: str,
    index: int,
    seen: dict[tuple[str, date, time | None], LabEntry],
) -> None:
    reader.subject(observation.subject, path + ".subject")
    codes = _codings(observation.code)
    status = observation.status
    if (LOINC, fhir_codes.PREGNANCY_STATUS.code) in codes:
        if status not in COUNTED_OBSERVATION_STATUSES:
            reader.note(path + ".status", f"{status}: not stored (only final results count)")
            return
        answers = set(_codings(observation.valueCodeableConcept))
        pregnant = (LOINC, fhir_codes.PREGNANT.code) in answers
        if not pregnant and (LOINC, fhir_codes.NOT_PREGNANT.code) not in answers:
            reader.note(
                path + ".valueCodeableConcept", "neither pregnant nor not pregnant: not stored"
            )
            return
        when = reader.effective(observation, path)
        if when is not None:
            if pregnant and content.sex == "male":
                reader.error(
                    path + ".valueCodeableConcept", "pregnant, for a male patient", "value"
                )
            reader.remember(
                "patient.pregnant", when, pregnant, path, path + ".valueCodeableConcept"
            )
        return
    field_row = next(
        (OBSERVATION_FIELDS[code] for system, code in codes
         if system == LOINC and code in OBSERVATION_FIELDS), None,
    )  # fmt: skip
    lab = next((reader.lab_table[key] for key in codes if key in reader.lab_table), None)
    if field_row is None and lab is None:
        readable = ", ".join(
            sorted({code for _, code in reader.lab_table} | set(OBSERVATION_FIELDS))
        )
        shown = ", ".join(f"{system}|{code}" for system, code in codes) or "no coding"
        reader.error(
            path + ".code", f"{shown}: not a code alpcare reads (LOINC {readable})", "code-invalid"
        )
        return
    if status not in COUNTED_OBSERVATION_STATUSES:
        reader.note(
            path + ".status", f"{status}: not stored (only final, amended and corrected results)"
        )
        return
    quantity = observation.valueQuantity
    if quantity is None or quantity.value is None:
        reader.error(path + ".valueQuantity", "required: a valueQuantity with a value", "required")
        return
    if quantity.comparator is not None:
        reader.error(
            path + ".valueQuantity.comparator",
            f"{quantity.comparator}: only exact values are stored",
            "value",
        )
        return
    if quantity.system == UCUM and quantity.code:
        unit, unit_path = quantity.code, path + ".valueQuantity.code"
    else:
        unit, unit_path = quantity.unit or "", path + ".valueQuantity.unit"
    when = reader.effective(observation, path)
    value = float(quantity.value)
    if field_row is not None:
        field_path, units, weekly = field_row
        item = declaration.declared_field(field_path)
        if unit not in units:
            reader.error(unit_path, f"{unit or 'missing'}: use UCUM {' or '.join(units)}", "value")
        elif item is None:
            reader.note(path, f"{field_path} is not a field of this alpcare version: not stored")
        elif when is not None:
            # Converted (lb to kg), to 6 decimals as the engine keeps converted values.
            number = value if units[unit] == 1 else round(value * units[unit], CONVERTED_DECIMALS)
            number = advanced_weeks(number, when[0], reader.today) if weekly else number
            whole, problem = _number(item, number)
            if problem:
                reader.error(path + ".valueQuantity.value", problem, "value")
            else:
                reader.remember(field_path, when, whole, path, path + ".valueQuantity.value")
        return
    assert lab is not None
    test, allowed = lab
    if unit not in allowed:
        reader.error(
            unit_path,
            f"{unit or 'missing'}: not a UCUM unit alpcare reads for {test} ({', '.join(allowed)})",
            "value",
        )
        return
    limits = _limits(reader, observation, path, unit)
    if when is None or limits is None:
        return
    notes = [
        note.text.strip() for note in observation.note or [] if note.text and note.text.strip()
    ]
    chosen = lab_range(observation)
    range_element = f"referenceRange[{chosen[0] if isinstance(chosen, tuple) else 0}]"
    entry = LabEntry(
        path=path, test=test, value=value, unit=unit, collected_on=when[0],
        collected_time=when[1], limits=limits, amends=status in ("amended", "corrected"),
        comment="\n".join(notes),
        elements=(
            ("collected_at", effective_element(observation)),
            ("unit", unit_path.removeprefix(path + ".")),
            *((name, f"{range_element}.{end}.value") for end, name in REFERENCE_LIMITS),
        ),
    )  # fmt: skip
    key = (test, when[0], when[1])
    twin = seen.get(key)
    if twin is None:
        seen[key] = entry
        content.labs.append(entry)
    elif entry.amends and not twin.amends:
        # The amendment of a final result sent beside it replaces it, in whichever order.
        seen[key] = entry
        content.labs[content.labs.index(twin)] = entry
    elif twin.amends and not entry.amends:
        pass  # the original of the amendment already read
    elif not values_agree(test, (twin.value, twin.unit), (value, unit)):
        reader.error(
            path + ".valueQuantity.value",
            f"a second {test} result collected at {entry.collected_at} with another value "
            f"(the first is {twin.path})",
            "duplicate",
        )
    # else: values within 0.5 % after conversion are one result, the second ignored (spec §1)


def effective_element(observation: Observation) -> str:
    """The element an Observation gives its time in (effectiveDateTime when it gives none)."""
    if observation.effectiveDateTime is None and observation.effectiveInstant is not None:
        return "effectiveInstant"
    if (
        observation.effectiveDateTime is None
        and observation.effectivePeriod is not None
        and observation.effectivePeriod.start is not None
    ):
        return "effectivePeriod.start"
    return "effectiveDateTime"


def _limits(
    reader: _Reader, observation: Observation, path: str, unit: str
) -> dict[str, float] | None:
    limits: dict[str, float] = {}
    chosen = lab_range(observation)
    if isinstance(chosen, str):
        reader.note(path + ".referenceRange", chosen)
        return limits
    if chosen is None:
        return limits
    range_index, reference = chosen
    for end, name in REFERENCE_LIMITS:
        quantity = getattr(reference, end)
        if quantity is None or quantity.value is None:
            continue
        where = f"{path}.referenceRange[{range_index}].{end}"
        limit_unit = quantity_unit(quantity)
        if limit_unit not in (None, unit):
            reader.error(
                where + ".unit",
                f"{limit_unit}: the limit must be in the result's unit {unit}",
                "value",
            )
            return None
        if name in reader.lab_fields:
            limits[name] = float(quantity.value)
    return limits


def _condition(reader: _Reader, content: BundleContent, condition: Condition, path: str) -> None:
    reader.subject(condition.subject, path + ".subject")
    mapped: list[tuple[str | None, str | None, bool]] = []  # (diagnosis, cancer, pregnancy)
    allowed = set(declaration.CLINICAL["diagnoses"].values)
    for system, code in _codings(condition.code):
        if system != ICD10CM or not code:
            continue
        if (
            code.replace(".", "")
            .upper()
            .startswith(fhir_codes.PREGNANCY_CONDITION.code.replace(".", ""))
        ):
            mapped.append((None, None, True))
            continue
        diagnosis, cancer = diagnoses_for_icd10cm(code)
        diagnosis = diagnosis if diagnosis in allowed else None
        if diagnosis or cancer:
            mapped.append((diagnosis, cancer, False))
    if not mapped:
        shown = (
            ", ".join(f"{system}|{code}" for system, code in _codings(condition.code))
            or "no coding"
        )
        reader.error(
            path + ".code",
            f"{shown}: no ICD-10-CM code alpcare maps (spec/interop.md; SNOMED CT is not mapped)",
            "code-invalid",
        )
        return
    clinical = {code for _, code in _codings(condition.clinicalStatus)}
    verification = {code for _, code in _codings(condition.verificationStatus)}
    if not ACTIVE_CLINICAL_STATUSES & clinical or verification & set(NOT_COUNTED_VERIFICATION):
        status = ", ".join(sorted(clinical | verification)) or "no clinicalStatus"
        reader.note(
            path + ".clinicalStatus", f"{status}: not stored (only active conditions count)"
        )
        return
    for diagnosis, cancer, pregnancy in mapped:
        if pregnancy:
            if content.sex == "male":
                reader.error(path + ".code", "Z33.1 (pregnant), for a male patient", "value")
            else:  # a status at its recorded date, like a pregnancy-status Observation
                recorded = _local(condition.recordedDate or condition.onsetDateTime, reader.tz)
                when = recorded or (date.min, None)
                reader.remember("patient.pregnant", when, True, path, path + ".code")
        if diagnosis:
            content.diagnoses.setdefault(diagnosis, path)
        if cancer and (cancer, path) not in reader.cancers:
            reader.cancers.append((cancer, path))


def _cancer(reader: _Reader, content: BundleContent) -> None:
    """clinical.cancer holds one cancer: of several the Conditions name, the one
    fhir_case.known_cancer chooses (as a CDS Hooks call reads them), whatever their order in
    the Bundle; the others are noted, not stored."""
    chosen = known_cancer(cancer for cancer, _path in reader.cancers)
    if chosen is None:
        return
    source = next(path for cancer, path in reader.cancers if cancer == chosen)
    content.cancer = (chosen, source)
    for cancer, path in reader.cancers:
        if cancer != chosen:
            reader.note(
                path + ".code",
                f"{cancer} cancer: not stored (clinical.cancer holds one cancer: {chosen}, "
                f"from {source})",
            )


def _medication(
    reader: _Reader,
    content: BundleContent,
    resource: MedicationStatement | MedicationRequest,
    path: str,
) -> None:
    reader.subject(resource.subject, path + ".subject")
    concept = resource.medicationCodeableConcept
    if concept is None:
        reader.error(
            path + ".medicationCodeableConcept",
            "required: an ATC code (medicationReference is not read)",
            "required",
        )
        return
    agent = next(
        (agent_for_atc(code) for system, code in _codings(concept)
         if system == ATC and agent_for_atc(code) is not None), None,
    )  # fmt: skip
    if agent is None:
        shown = ", ".join(f"{system}|{code}" for system, code in _codings(concept)) or "no coding"
        reader.error(
            path + ".medicationCodeableConcept",
            f"{shown}: no ATC code alpcare maps (M05BA, M05BB, M05BX04; RxNorm is not mapped)",
            "code-invalid",
        )
        return
    statement = isinstance(resource, MedicationStatement)
    counted = COUNTED_STATEMENT_STATUSES if statement else COUNTED_REQUEST_STATUSES
    if resource.status not in counted:
        reader.note(path + ".status", f"{resource.status}: not stored ({', '.join(counted)} are)")
        return
    start: Any
    end: Any = None
    if isinstance(resource, MedicationStatement):
        if resource.effectivePeriod is not None:
            start, end = resource.effectivePeriod.start, resource.effectivePeriod.end
            where = path + ".effectivePeriod"
        else:
            start, where = resource.effectiveDateTime, path + ".effectiveDateTime"
    else:
        validity = resource.dispenseRequest.validityPeriod if resource.dispenseRequest else None
        if validity is not None and validity.start is not None:
            start, end = validity.start, validity.end
            where = path + ".dispenseRequest.validityPeriod"
        else:
            start, where = resource.authoredOn, path + ".authoredOn"
    period = where.endswith("Period")
    start_path = where + (".start" if period else "")
    end_path = where + ".end" if period else path
    start_day = _local(start, reader.tz) if start is not None else None
    if start_day is None:
        reader.error(start_path, "a start date is required", "required")
        return
    end_day = _local(end, reader.tz) if end is not None else None
    if end is not None and end_day is None:
        reader.error(end_path, f"{end}: a full date is required")
        return
    if end_day is not None and end_day[0] < start_day[0]:
        reader.error(end_path, "before the start", "value")
        return
    if start_day[0] > reader.today:
        reader.note(where, f"{agent} starting {start_day[0]}: planned, not stored")
        return
    if statement and resource.status in STOPPED_STATEMENT_STATUSES and end_day is None:
        # "completed: no longer being taken", "stopped: permanently halted": stored without
        # its end, the course would read as current (spec §2: a null end is ongoing).
        reader.note(
            path + ".effectivePeriod.end",
            f"{agent} {resource.status} with no end date: not stored (a course without its end "
            "reads as current)",
        )
        return
    end_date = end_day[0] if end_day is not None else None
    entry = TherapyEntry(path, agent, start_day[0], end_date, start_path, end_path)
    content.therapies.append(entry)
