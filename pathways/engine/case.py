"""The case document (spec/pathways.md §1): one validation path from JSON to frozen dataclasses.

Structure is checked by strict pydantic models (unknown keys, JSON types, enums); everything
that needs more than one field (dates against as_of, units against the test, duplicates) is
checked in code afterwards. Every problem becomes a FieldError with its location, and all of
them are reported together. Fields, types and allowed values come from ``declaration.py``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, time
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema, create_model

from .dates import (
    DATE_RANGE,
    format_datetime,
    outside_date_range,
    parse_iso_date,
    parse_iso_datetime,
)
from .declaration import CLINICAL, GROUPS, LAB, MYELOMA, PATIENT, THERAPY, CaseField, Group
from .vocabulary import CONVERSIONS, REFERENCE_HIGH_REQUIRED, TESTS, UNITS, to_canonical

DOCUMENT_FIELD = "(document)"

# ---------------------------------------------------------------------------------------------
# Parsed case: plain frozen dataclasses, the engine's only input.


@dataclass(frozen=True)
class PatientInfo:
    birth_date: date
    sex: str
    pregnant: bool = False
    gestational_weeks: int | None = None
    postmenopausal: bool | None = None
    weight_kg: float | None = None


@dataclass(frozen=True)
class Lab:
    test: str
    value: float
    unit: str
    collected_on: date
    collected_time: time | None
    reference_high: float | None
    canonical_value: float
    canonical_unit: str
    canonical_reference_high: float | None
    reference_low: float | None = None
    canonical_reference_low: float | None = None

    @classmethod
    def create(
        cls,
        test: str,
        value: float,
        unit: str,
        collected_on: date,
        collected_time: time | None = None,
        reference_high: float | None = None,
        reference_low: float | None = None,
    ) -> Lab:
        """A lab with its canonical fields filled in (test and unit must be valid)."""
        canonical_value, canonical_unit = to_canonical(test, unit, value)
        canonical_reference_high = (
            None if reference_high is None else to_canonical(test, unit, reference_high)[0]
        )
        canonical_reference_low = (
            None if reference_low is None else to_canonical(test, unit, reference_low)[0]
        )
        return cls(
            test=test,
            value=value,
            unit=unit,
            collected_on=collected_on,
            collected_time=collected_time,
            reference_high=reference_high,
            canonical_value=canonical_value,
            canonical_unit=canonical_unit,
            canonical_reference_high=canonical_reference_high,
            reference_low=reference_low,
            canonical_reference_low=canonical_reference_low,
        )

    @property
    def collected_at(self) -> str:
        return format_datetime(self.collected_on, self.collected_time)


@dataclass(frozen=True)
class Myeloma:
    requires_therapy: bool = False
    bone_disease: bool = False
    active_bone_disease: bool = False
    response: str | None = None
    treatment_start: date | None = None
    bortezomib_start: date | None = None
    whole_body_imaging_done: bool = False


@dataclass(frozen=True)
class Therapy:
    agent: str
    start: date
    end: date | None = None


@dataclass(frozen=True)
class Clinical:
    diagnoses: tuple[str, ...] = ()
    cancer: str | None = None
    cancer_treated: bool = False
    bone_pain: bool = False
    osteolytic_pain: bool = False
    bone_scan: str = "not_done"
    fracture: str = "none"
    fracture_date: date | None = None
    dental_exam_done: bool = False
    crcl_baseline: float | None = None
    creatinine_baseline: float | None = None
    myeloma: Myeloma = field(default_factory=Myeloma)
    therapies: tuple[Therapy, ...] = ()


@dataclass(frozen=True)
class Case:
    as_of: date
    patient: PatientInfo
    labs: tuple[Lab, ...]
    clinical: Clinical


Location = tuple[str | int, ...]


@dataclass(frozen=True)
class FieldError:
    """One problem with a case document: where (``location``: ("labs", 2, "value"), empty for
    the whole document), its spec-style path (``field``: "labs[2].value"), what is wrong, and
    what kind of problem it is (``code``: "required", "duplicate", ...) for callers that act
    on it. Nobody needs to parse ``field`` or ``message``."""

    field: str
    message: str
    location: Location = ()
    code: str = "invalid"

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class CaseInvalid(Exception):
    """A case document that cannot be assessed; `errors` lists every problem found."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors: list[FieldError] = list(errors)
        super().__init__("\n".join(str(error) for error in self.errors))


# ---------------------------------------------------------------------------------------------
# Structure of the JSON document (strict: JSON booleans, JSON numbers, no NaN, no unknown keys),
# built from the declaration.

_DATE_SCHEMA = {"type": "string", "format": "date", "description": "YYYY-MM-DD"}
_DATETIME_SCHEMA = {
    "type": "string",
    "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2})?)?$",
    "description": "YYYY-MM-DD (time of day unknown) or YYYY-MM-DDTHH:MM[:SS], no timezone",
}
IsoDate = Annotated[str, WithJsonSchema(_DATE_SCHEMA)]
IsoDateTime = Annotated[str, WithJsonSchema(_DATETIME_SCHEMA)]
_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
_UNITS_TEXT = "; ".join(f"{test}: {', '.join(units)}" for test, units in UNITS.items())


def _one_of(values: tuple[str, ...]) -> Any:
    return cast(Any, Literal).__getitem__(values)


def _annotation(item: CaseField, group: Group) -> Any:
    if item.kind == "choice":
        if group is LAB and item.name == "unit":
            annotation: Any = str  # checked against the test in code
        else:
            annotation = _one_of(TESTS if group is LAB else item.values)
    elif item.kind == "choices":
        return list[_one_of(item.values)]  # type: ignore[misc]
    else:
        annotation = {
            "date": IsoDate,
            "datetime": IsoDateTime,
            "bool": bool,
            "number": int if item.integer else float,
            "text": str,
        }[item.kind]
    return annotation if item.required or item.default is not None else annotation | None


def _description(item: CaseField, group: Group) -> str | None:
    if group is LAB and item.name == "unit":
        return _UNITS_TEXT
    parts = [item.help] if item.help else []
    if item.unit:
        parts.append(item.unit)
    if item.minimum is not None:
        parts.append(f">= {item.minimum:g}")
    if item.above is not None:
        parts.append(f"> {item.above:g}")
    if item.maximum is not None:
        parts.append(f"<= {item.maximum:g}")
    return ", ".join(parts) or None


def _field_info(item: CaseField, group: Group) -> Any:
    description = _description(item, group)
    if item.required:
        return Field(description=description)
    if item.kind == "choices":
        return Field(default_factory=list, description=description)
    return Field(default=item.default, description=description)


def _document_model(name: str, group: Group, **extra: Any) -> type[BaseModel]:
    fields: dict[str, Any] = {
        item.name: (_annotation(item, group), _field_info(item, group)) for item in group.fields
    }
    fields.update(extra)
    return create_model(name, __config__=_STRICT, **fields)


PatientDocument = _document_model("PatientDocument", PATIENT)
LabDocument = _document_model("LabDocument", LAB)
MyelomaDocument = _document_model("MyelomaDocument", MYELOMA)
TherapyDocument = _document_model("TherapyDocument", THERAPY)
ClinicalDocument = _document_model(
    "ClinicalDocument",
    CLINICAL,
    myeloma=(MyelomaDocument, Field(default_factory=MyelomaDocument)),
    therapies=(list[TherapyDocument], Field(default_factory=list)),  # type: ignore[valid-type]
)
CaseDocument = create_model(
    "CaseDocument",
    __config__=_STRICT,
    __doc__="The whole document; used for the JSON Schema (parsing validates it part by part).",
    as_of=(IsoDate | None, Field(default=None, description="date of the assessment; today")),
    patient=(PatientDocument, ...),
    labs=(list[LabDocument], Field(default_factory=list)),  # type: ignore[valid-type]
    clinical=(ClinicalDocument, Field(default_factory=ClinicalDocument)),
)
# The flat clinical fields; myeloma and each therapy are validated on their own.
_FlatClinical = _document_model(
    "ClinicalDocument", CLINICAL, myeloma=(Any, None), therapies=(Any, None)
)

_TOP_LEVEL_KEYS = tuple(CaseDocument.model_fields)


def case_json_schema() -> dict[str, Any]:
    """JSON Schema of the case document (for OpenAPI); unit/test pairing is checked in code."""
    return CaseDocument.model_json_schema()


# ---------------------------------------------------------------------------------------------
# Parsing.


def _json_text(value: object) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _key(name: object) -> str:
    """A key as it appears in a field path; odd keys ("", "a b") are quoted so none is blank."""
    text = str(name)
    return text if text.isidentifier() else _json_text(text)


def _path(location: Sequence[int | str]) -> str:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{_key(part)}" if path else _key(part)
    return path or DOCUMENT_FIELD


def _location(path: str) -> Location:
    return tuple(path.split("."))


_TYPE_MESSAGES = {
    "bool_type": "must be true or false",
    "float_type": "must be a number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "finite_number": "must be a finite number",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
}
_CODES = {"missing": "required", "extra_forbidden": "unknown"}


def _message(detail: Any) -> str:
    kind, value = detail["type"], detail.get("input")
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "literal_error":
        expected = detail["ctx"]["expected"].replace(" or ", ", ")
        allowed = ", ".join(part.strip().strip("'") for part in expected.split(","))
        return f"{_json_text(value)} is not one of: {allowed}"
    if value is None:
        return "must not be null"
    return str(_TYPE_MESSAGES.get(kind, detail["msg"]))


class _Reader:
    """Reads the document part by part, so that every error is found, not only the first.

    Each part is validated on its own; when a part has structural errors, its valid fields
    are still checked semantically (a typo in one key must not hide a wrong date in another).
    """

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def add(self, location: Location, message: str, code: str = "invalid") -> None:
        self.errors.append(FieldError(_path(location), message, location, code))

    def part(self, model: type[BaseModel], data: object, at: Location) -> dict[str, Any] | None:
        """The part's valid fields (defaults filled in); None when it is not even an object."""
        try:
            return dict(model.model_validate(data).__dict__)
        except ValidationError as error:
            details = error.errors(include_url=False)
            for detail in details:
                location = (*at, *detail["loc"])
                self.add(location, _message(detail), _CODES.get(detail["type"], "invalid"))
            if not isinstance(data, dict):
                return None
            failing = {detail["loc"][0] for detail in details if detail["loc"]}
            fields = {
                name: info.get_default(call_default_factory=True)
                for name, info in model.model_fields.items()
                if not info.is_required()
            }
            fields.update(
                (key, value)
                for key, value in data.items()
                if key in model.model_fields and key not in failing
            )
            fields["_failed"] = True
            return fields

    def date(self, text: object, location: Location) -> date | None:
        if not isinstance(text, str):
            return None
        parsed = parse_iso_date(text)
        if parsed is None and outside_date_range(text):
            self.add(location, f"{_json_text(text)} is outside {DATE_RANGE}")
        elif parsed is None:
            self.add(location, f"{_json_text(text)} is not a date (YYYY-MM-DD)")
        return parsed

    def bounds(self, item: CaseField, value: float, at: Location) -> None:
        """A number within its declared bounds."""
        if item.minimum is not None and value < item.minimum:
            message = "must not be negative" if item.minimum == 0 else "too small"
            self.add((*at, item.name), message)
        if item.above is not None and value <= item.above:
            self.add((*at, item.name), f"must be greater than {item.above:g}")
        if item.maximum is not None and value > item.maximum:
            self.add((*at, item.name), f"must not be above {item.maximum:g}")
        if item.below is not None and not value < item.below:
            self.add((*at, item.name), f"must be below {item.below:,.0f}")

    def values(self, group: Group, fields: dict[str, Any], at: Location) -> dict[str, Any] | None:
        """A part's declared fields with dates parsed (in ``fields``, which ``part`` made) and
        numbers checked against their bounds; None when the part has any error."""
        count = len(self.errors)
        plan = _PLANS[group.path]
        for item in plan.dates:
            fields[item.name] = self.date(fields.get(item.name), (*at, item.name))
        for item in plan.numbers:
            if (number := fields.get(item.name)) is not None:
                self.bounds(item, number, at)
        for item in plan.lists:  # in the declared order: the same case however it was listed
            if (listed := fields.get(item.name)) is not None:
                fields[item.name] = tuple(value for value in item.values if value in listed)
        if len(self.errors) > count or "_failed" in fields:
            return None
        return fields


@dataclass(frozen=True)
class _Plan:
    """What reading a group involves beyond copying its values (worked out once per group)."""

    dates: tuple[CaseField, ...]
    numbers: tuple[CaseField, ...]
    lists: tuple[CaseField, ...]


def _plan(group: Group) -> _Plan:
    return _Plan(
        dates=tuple(item for item in group.fields if item.kind == "date"),
        numbers=tuple(item for item in group.fields if item.kind == "number"),
        lists=tuple(item for item in group.fields if item.kind == "choices"),
    )


_PLANS = {group.path: _plan(group) for group in GROUPS}


def parse_case(data: object, *, today: date | None = None) -> Case:
    """Validate an already-decoded JSON case document; raise CaseInvalid listing every error."""
    if not isinstance(data, dict):
        raise CaseInvalid([FieldError(DOCUMENT_FIELD, "must be a JSON object")])
    reader = _Reader()
    for key in data:
        if key not in _TOP_LEVEL_KEYS:
            reader.add((_key(key),), "unknown field", "unknown")

    as_of: date | None
    if data.get("as_of") is None:
        as_of = today or date.today()
    elif not isinstance(data["as_of"], str):
        reader.add(("as_of",), "must be a string")
        as_of = None
    else:
        as_of = reader.date(data["as_of"], ("as_of",))

    patient = _read_patient(reader, data, as_of)
    birth_date = patient.birth_date if patient else None
    labs = _read_labs(reader, data, as_of, birth_date)
    clinical = _read_clinical(reader, data, as_of)

    if reader.errors:
        raise CaseInvalid(reader.errors)
    assert as_of is not None and patient is not None and labs is not None and clinical is not None
    return Case(as_of=as_of, patient=patient, labs=labs, clinical=clinical)


def _read_patient(reader: _Reader, data: dict[Any, Any], as_of: date | None) -> PatientInfo | None:
    at = _location(PATIENT.path)
    if "patient" not in data:
        reader.add(at, "required", "required")
        return None
    fields = reader.part(PatientDocument, data["patient"], at)
    if fields is None:
        return None
    values = reader.values(PATIENT, fields, at)  # parses birth_date (None if it is not a date)
    birth_date = fields.get("birth_date")
    if birth_date and as_of and birth_date > as_of:
        reader.add((*at, "birth_date"), "after as_of", "after_as_of")
    if fields.get("pregnant") is True and fields.get("sex") == "male":
        reader.add((*at, "pregnant"), "true for a male patient", "male_patient")
    # spec §1: gestational_weeks only when pregnant; postmenopausal only for a female patient.
    if fields.get("gestational_weeks") is not None and fields.get("pregnant") is not True:
        reader.add(
            (*at, "gestational_weeks"), "given for a patient who is not pregnant", "not_pregnant"
        )
    if fields.get("postmenopausal") is not None and fields.get("sex") == "male":
        reader.add((*at, "postmenopausal"), "given for a male patient", "male_patient")
    if values is None or values["birth_date"] is None:
        return None
    return PatientInfo(**values)


def _read_labs(
    reader: _Reader, data: dict[Any, Any], as_of: date | None, birth_date: date | None
) -> tuple[Lab, ...] | None:
    raw_labs = data.get("labs", [])
    if not isinstance(raw_labs, list):
        reader.add(("labs",), "must be a list")
        return None
    labs: list[Lab] = []
    # spec §1: the same test at the same instant (T08:15 == T08:15:00; a bare date is not
    # T00:00) is one result when the values agree within 0.5 % of the larger: the second is
    # ignored (a feed's resend); otherwise the case is an error naming both indexes.
    first: dict[tuple[str, date, time | None], tuple[int, Lab]] = {}
    for index, raw_lab in enumerate(raw_labs):
        at: Location = ("labs", index)
        fields = reader.part(LabDocument, raw_lab, at)
        lab = None if fields is None else _read_lab(reader, fields, at, as_of, birth_date)
        if lab is None:
            continue
        key = (lab.test, lab.collected_on, lab.collected_time)
        if key not in first:
            first[key] = (index, lab)
            labs.append(lab)
            continue
        kept_index, kept = first[key]
        if not same_result(kept, lab):
            reader.add(
                at,
                f"conflicts with labs[{kept_index}]: {lab.test} at {lab.collected_at} is "
                f"{_shown(lab)} here and {_shown(kept)} there (results of the same test at the "
                f"same time must agree within {DUPLICATE_TOLERANCE_PCT:g} %)",
                "duplicate",
            )
    return tuple(labs)


DUPLICATE_TOLERANCE_PCT = 0.5  # spec §1: "within 0.5 % of the larger"


def same_result(first: Lab, second: Lab) -> bool:
    """Two results of one test at one instant that agree after conversion (spec §1)."""
    return values_agree(first.test, (first.value, first.unit), (second.value, second.unit))


def values_agree(test: str, first: tuple[float, str], second: tuple[float, str]) -> bool:
    """Two values of one test, each with its unit, within 0.5 % of the larger after conversion
    (spec §1: then they are one result)."""
    a_unit, a = _unrounded(test, *first)
    b_unit, b = _unrounded(test, *second)
    if a_unit != b_unit:
        return False  # bone ALP mass and activity cannot be compared
    # Rounded so that exactly 0.5 % agrees whatever the float noise (1 and 0.995).
    return round(abs(a - b), 9) <= round(DUPLICATE_TOLERANCE_PCT / 100 * max(a, b), 9)


def _unrounded(test: str, value: float, unit: str) -> tuple[str, float]:
    """The canonical unit and value before to_canonical's rounding (which could tip a 0.5 %
    boundary)."""
    canonical_unit, multiplier, divisor = CONVERSIONS[(test, unit)]
    return canonical_unit, value * multiplier / divisor


def _shown(lab: Lab) -> str:
    return f"{json_number(lab.value)} {lab.unit}"


_LAB_NUMBERS = tuple(item for item in LAB.fields if item.kind == "number")


def _canonical_within_bounds(
    reader: _Reader, fields: dict[str, Any], test_unit: tuple[str, str], at: Location
) -> None:
    """A lab's numbers below their stored limit in the test's canonical unit too: 2e10 ukat/L
    is 1.2e12 U/L, and 1e308 ukat/L is infinite."""
    canonical_unit, multiplier, divisor = CONVERSIONS[test_unit]
    for item in _LAB_NUMBERS:
        number = fields.get(item.name)
        if number is None or item.below is None or not number < item.below:
            continue  # not given, or already refused in its own unit
        if not (canonical := number * multiplier / divisor) < item.below:
            reader.add(
                (*at, item.name),
                f"is {canonical:g} {canonical_unit}: must be below {item.below:,.0f} "
                f"{canonical_unit}",
            )


def lab_problems(
    test: str,
    unit: str,
    value: float,
    reference_low: float | None = None,
    reference_high: float | None = None,
) -> list[FieldError]:
    """What reading a result with these values into a case would refuse: its unit, its
    numbers' bounds (in its unit and in the test's canonical unit), its limits' order and a
    required upper limit. The lab feed checks a result so before storing it: one set of rules
    for every way a result comes in. Locations are ("labs", 0, field)."""
    reader = _Reader()
    fields = {
        "test": test,
        "unit": unit,
        "value": value,
        "reference_low": reference_low,
        "reference_high": reference_high,
    }
    _check_lab_values(reader, fields, ("labs", 0))
    return reader.errors


def _check_lab_values(reader: _Reader, fields: dict[str, Any], at: Location) -> None:
    test, unit = fields.get("test"), fields.get("unit")
    reference_high = fields.get("reference_high")
    reference_low = fields.get("reference_low")
    if reference_low is not None and reference_high is not None and reference_low >= reference_high:
        reader.add((*at, "reference_low"), "must be below reference_high", "not_below_high")
    for item in _LAB_NUMBERS:  # a lab has no dates to parse: only its numbers' bounds
        if (number := fields.get(item.name)) is not None:
            reader.bounds(item, number, at)
    if test is not None and unit is not None and unit not in UNITS[test]:
        reader.add(
            (*at, "unit"),
            f"{_json_text(unit)} is not a unit for {test}; use one of {', '.join(UNITS[test])}",
        )
    elif reference_high is None and (test, unit) in REFERENCE_HIGH_REQUIRED:
        # reference-intervals.md: activity assays have no built-in interval.
        reader.add(
            (*at, "reference_high"),
            f"required for {test} in {unit} (no built-in interval for activity)",
            "no_interval",
        )
    if test is not None and unit is not None and unit in UNITS[test]:
        _canonical_within_bounds(reader, fields, (test, unit), at)


def _read_lab(
    reader: _Reader,
    fields: dict[str, Any],
    at: Location,
    as_of: date | None,
    birth_date: date | None,
) -> Lab | None:
    count = len(reader.errors)
    _check_lab_values(reader, fields, at)
    collected = None
    if isinstance(fields.get("collected_at"), str):
        collected = parse_iso_datetime(fields["collected_at"])
        if collected is None and outside_date_range(fields["collected_at"]):
            reader.add(
                (*at, "collected_at"),
                f"{_json_text(fields['collected_at'])} is outside {DATE_RANGE}",
            )
        elif collected is None:
            reader.add(
                (*at, "collected_at"),
                f"{_json_text(fields['collected_at'])} is not a date (YYYY-MM-DD) "
                "or datetime (YYYY-MM-DDTHH:MM[:SS])",
            )
        elif as_of and collected[0] > as_of:
            reader.add((*at, "collected_at"), "after as_of", "after_as_of")
        elif birth_date and collected[0] < birth_date:
            reader.add((*at, "collected_at"), "before patient.birth_date", "before_birth")
    if len(reader.errors) > count or collected is None or "_failed" in fields:
        return None
    return Lab.create(
        test=fields["test"],
        value=fields["value"],
        unit=fields["unit"],
        collected_on=collected[0],
        collected_time=collected[1],
        reference_high=fields.get("reference_high"),
        reference_low=fields.get("reference_low"),
    )


def _read_clinical(reader: _Reader, data: dict[Any, Any], as_of: date | None) -> Clinical | None:
    raw = data.get("clinical", {})
    at = _location(CLINICAL.path)
    fields = reader.part(_FlatClinical, raw, at)
    if fields is None:
        return None
    count = len(reader.errors)
    fields.pop("myeloma", None)  # read on their own below
    fields.pop("therapies", None)
    values = reader.values(CLINICAL, fields, at)  # parses fracture_date
    fracture_date = fields.get("fracture_date")
    if isinstance(fracture_date, date) and as_of and fracture_date > as_of:
        reader.add((*at, "fracture_date"), "after as_of", "after_as_of")

    myeloma_at = _location(MYELOMA.path)
    myeloma_fields = reader.part(MyelomaDocument, raw.get("myeloma", {}), myeloma_at) or {
        "_failed": True
    }
    myeloma_values = reader.values(MYELOMA, myeloma_fields, myeloma_at)

    therapies = []
    raw_therapies = raw.get("therapies", [])
    if not isinstance(raw_therapies, list):
        reader.add(_location(THERAPY.path), "must be a list")
        raw_therapies = []
    for index, raw_therapy in enumerate(raw_therapies):
        therapy_at = (*_location(THERAPY.path), index)
        therapy_fields = reader.part(TherapyDocument, raw_therapy, therapy_at) or {"_failed": True}
        therapy = reader.values(THERAPY, therapy_fields, therapy_at)  # parses start and end
        start, end = therapy_fields.get("start"), therapy_fields.get("end")
        if start and end and end < start:
            reader.add((*therapy_at, "end"), "before start", "before_start")
        elif therapy is not None:
            therapies.append(Therapy(**therapy))

    if len(reader.errors) > count or values is None or myeloma_values is None:
        return None
    return Clinical(**values, myeloma=Myeloma(**myeloma_values), therapies=tuple(therapies))


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {_json_text(key)}")
        result[key] = value
    return result


def _json_integer(text: str) -> int | float:
    """A JSON integer; one past 300 digits is read as a float (infinity past 308), so that the
    field's own check names it ("must be a finite number", "must be below …"): as an int it
    failed Python's 4,300-digit conversion limit, an error for the whole document, or read as
    "must be a number"."""
    return int(text) if len(text) <= 300 else float(text)


def read_json(text: str | bytes) -> Any:
    """``json.loads`` for what a client sends: very long integers are floats (above), and a
    repeated key is a ValueError naming it (which of two values was meant cannot be known:
    a plain ``json.loads`` keeps the last, so ``"value": 412, "value": 41200`` stored 41200)."""
    return json.loads(text, parse_int=_json_integer, object_pairs_hook=_reject_duplicate_keys)


def parse_case_json(text: str | bytes, *, today: date | None = None) -> Case:
    """Decode JSON text and parse it; a repeated key is an error, like an unknown one."""
    try:
        data = read_json(text)
    except json.JSONDecodeError as error:
        message = f"invalid JSON: {error.msg} (line {error.lineno}, column {error.colno})"
        raise CaseInvalid([FieldError(DOCUMENT_FIELD, message)]) from None
    except (ValueError, RecursionError) as error:
        raise CaseInvalid([FieldError(DOCUMENT_FIELD, f"invalid JSON: {error}")]) from None
    return parse_case(data, today=today)


# ---------------------------------------------------------------------------------------------
# Back to a document.


def _iso(day: date | None) -> str | None:
    return None if day is None else day.isoformat()


def json_number(value: float) -> float | int:
    """A number as JSON shows it: 412, not 412.0."""
    return int(value) if float(value).is_integer() else value


def _document_value(item: CaseField, value: Any) -> Any:
    if item.kind == "date":
        return _iso(value)
    if item.kind == "choices":
        return list(value)
    if item.kind == "number" and value is not None:
        return json_number(value)
    return value


def _group_document(group: Group, part: object) -> dict[str, Any]:
    return {item.name: _document_value(item, getattr(part, item.name)) for item in group.fields}


def lab_to_document(lab: Lab) -> dict[str, Any]:
    return {
        "test": lab.test,
        "value": json_number(lab.value),
        "unit": lab.unit,
        "collected_at": lab.collected_at,
        "reference_high": None if lab.reference_high is None else json_number(lab.reference_high),
        "reference_low": None if lab.reference_low is None else json_number(lab.reference_low),
    }


def case_to_document(case: Case) -> dict[str, Any]:
    """The canonical document of a case: every key, values and units as entered, as_of set."""
    clinical = case.clinical
    return {
        "as_of": case.as_of.isoformat(),
        "patient": _group_document(PATIENT, case.patient),
        "labs": [lab_to_document(lab) for lab in case.labs],
        "clinical": {
            **_group_document(CLINICAL, clinical),
            "myeloma": _group_document(MYELOMA, clinical.myeloma),
            "therapies": [_group_document(THERAPY, therapy) for therapy in clinical.therapies],
        },
    }
