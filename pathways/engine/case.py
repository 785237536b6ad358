"""The case document (spec/pathways.md §1): one validation path from JSON to frozen dataclasses.

Structure is checked by strict pydantic models (unknown keys, JSON types, enums); everything
that needs more than one field (dates against as_of, units against the test, duplicates) is
checked in code afterwards. Every problem becomes a FieldError with a spec-style path, and all
of them are reported together.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, time
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema

from .dates import (
    DATE_RANGE,
    format_datetime,
    outside_date_range,
    parse_iso_date,
    parse_iso_datetime,
)
from .vocabulary import (
    BONE_ALP_ACTIVITY_UNITS,
    UNITS,
    Agent,
    BoneScan,
    Cancer,
    Diagnosis,
    Fracture,
    Response,
    Sex,
    Test,
    to_canonical,
)

DOCUMENT_FIELD = "(document)"

# ---------------------------------------------------------------------------------------------
# Parsed case: plain frozen dataclasses, the engine's only input.


@dataclass(frozen=True)
class PatientInfo:
    birth_date: date
    sex: str
    pregnant: bool = False
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

    @classmethod
    def create(
        cls,
        test: str,
        value: float,
        unit: str,
        collected_on: date,
        collected_time: time | None = None,
        reference_high: float | None = None,
    ) -> Lab:
        """A lab with its canonical fields filled in (test and unit must be valid)."""
        canonical_value, canonical_unit = to_canonical(test, unit, value)
        canonical_reference_high = (
            None if reference_high is None else to_canonical(test, unit, reference_high)[0]
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
    dental_exam_done: bool = False
    crcl_baseline: float | None = None
    myeloma: Myeloma = field(default_factory=Myeloma)
    therapies: tuple[Therapy, ...] = ()


@dataclass(frozen=True)
class Case:
    as_of: date
    patient: PatientInfo
    labs: tuple[Lab, ...]
    clinical: Clinical


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class CaseInvalid(Exception):
    """A case document that cannot be assessed; `errors` lists every problem found."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors: list[FieldError] = list(errors)
        super().__init__("\n".join(str(error) for error in self.errors))


# ---------------------------------------------------------------------------------------------
# Structure of the JSON document (strict: JSON booleans, JSON numbers, no NaN, no unknown keys).

_DATE_SCHEMA = {"type": "string", "format": "date", "description": "YYYY-MM-DD"}
_DATETIME_SCHEMA = {
    "type": "string",
    "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2})?)?$",
    "description": "YYYY-MM-DD (time of day unknown) or YYYY-MM-DDTHH:MM[:SS], no timezone",
}
IsoDate = Annotated[str, WithJsonSchema(_DATE_SCHEMA)]
IsoDateTime = Annotated[str, WithJsonSchema(_DATETIME_SCHEMA)]
_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class PatientDocument(BaseModel):
    model_config = _STRICT
    birth_date: IsoDate
    sex: Sex
    pregnant: bool = False
    weight_kg: float | None = Field(default=None, description="kg, > 0")


class LabDocument(BaseModel):
    model_config = _STRICT
    test: Test
    value: float = Field(description="finite number >= 0, in `unit`")
    unit: str = Field(
        description="; ".join(f"{test}: {', '.join(units)}" for test, units in UNITS.items())
    )
    collected_at: IsoDateTime
    reference_high: float | None = Field(
        default=None, description="the reporting lab's upper limit of normal, in `unit`"
    )


class MyelomaDocument(BaseModel):
    model_config = _STRICT
    requires_therapy: bool = False
    bone_disease: bool = False
    active_bone_disease: bool = False
    response: Response | None = None
    treatment_start: IsoDate | None = None
    bortezomib_start: IsoDate | None = None


class TherapyDocument(BaseModel):
    model_config = _STRICT
    agent: Agent
    start: IsoDate
    end: IsoDate | None = None


class ClinicalDocument(BaseModel):
    model_config = _STRICT
    diagnoses: list[Diagnosis] = Field(default_factory=list)
    cancer: Cancer | None = None
    cancer_treated: bool = False
    bone_pain: bool = False
    osteolytic_pain: bool = False
    bone_scan: BoneScan = "not_done"
    fracture: Fracture = "none"
    dental_exam_done: bool = False
    crcl_baseline: float | None = Field(default=None, description="mL/min, >= 0")
    myeloma: MyelomaDocument = Field(default_factory=MyelomaDocument)
    therapies: list[TherapyDocument] = Field(default_factory=list)


class CaseDocument(BaseModel):
    """The whole document; used for the JSON Schema (parsing validates it part by part)."""

    model_config = _STRICT
    as_of: IsoDate | None = Field(default=None, description="date of the assessment; today")
    patient: PatientDocument
    labs: list[LabDocument] = Field(default_factory=list)
    clinical: ClinicalDocument = Field(default_factory=ClinicalDocument)


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


def _path(prefix: str, location: Sequence[int | str]) -> str:
    path = prefix
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{_key(part)}" if path else _key(part)
    return path


_TYPE_MESSAGES = {
    "bool_type": "must be true or false",
    "float_type": "must be a number",
    "int_type": "must be a number",
    "finite_number": "must be a finite number",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
}


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


class _Clinical(ClinicalDocument):
    """The flat clinical fields; myeloma and each therapy are validated on their own."""

    myeloma: Any = None
    therapies: Any = None


_Model = TypeVar("_Model", bound=BaseModel)


class _Reader:
    """Reads the document part by part, so that every error is found, not only the first.

    Each part is validated on its own; when a part has structural errors, its valid fields
    are still checked semantically (a typo in one key must not hide a wrong date in another).
    """

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def add(self, path: str, message: str) -> None:
        self.errors.append(FieldError(path, message))

    def part(self, model: type[_Model], data: object, path: str) -> dict[str, Any] | None:
        """The part's valid fields (defaults filled in); None when it is not even an object."""
        try:
            return dict(model.model_validate(data).__dict__)
        except ValidationError as error:
            details = error.errors(include_url=False)
            self.errors.extend(FieldError(_path(path, d["loc"]), _message(d)) for d in details)
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

    def date(self, text: object, path: str) -> date | None:
        if not isinstance(text, str):
            return None
        parsed = parse_iso_date(text)
        if parsed is None and outside_date_range(text):
            self.add(path, f"{_json_text(text)} is outside {DATE_RANGE}")
        elif parsed is None:
            self.add(path, f"{_json_text(text)} is not a date (YYYY-MM-DD)")
        return parsed


def parse_case(data: object, *, today: date | None = None) -> Case:
    """Validate an already-decoded JSON case document; raise CaseInvalid listing every error."""
    if not isinstance(data, dict):
        raise CaseInvalid([FieldError(DOCUMENT_FIELD, "must be a JSON object")])
    reader = _Reader()
    for key in data:
        if key not in _TOP_LEVEL_KEYS:
            reader.add(_key(key), "unknown field")

    as_of: date | None
    if data.get("as_of") is None:
        as_of = today or date.today()
    elif not isinstance(data["as_of"], str):
        reader.add("as_of", "must be a string")
        as_of = None
    else:
        as_of = reader.date(data["as_of"], "as_of")

    patient = _read_patient(reader, data, as_of)
    birth_date = patient.birth_date if patient else None
    labs = _read_labs(reader, data, as_of, birth_date)
    clinical = _read_clinical(reader, data)

    if reader.errors:
        raise CaseInvalid(reader.errors)
    assert as_of is not None and patient is not None and labs is not None and clinical is not None
    return Case(as_of=as_of, patient=patient, labs=labs, clinical=clinical)


def _read_patient(reader: _Reader, data: dict[Any, Any], as_of: date | None) -> PatientInfo | None:
    if "patient" not in data:
        reader.add("patient", "required")
        return None
    fields = reader.part(PatientDocument, data["patient"], "patient")
    if fields is None:
        return None
    birth_date = reader.date(fields.get("birth_date"), "patient.birth_date")
    if birth_date and as_of and birth_date > as_of:
        reader.add("patient.birth_date", "after as_of")
    if fields.get("pregnant") is True and fields.get("sex") == "male":
        reader.add("patient.pregnant", "true for a male patient")
    weight_kg = fields.get("weight_kg")
    if weight_kg is not None and weight_kg <= 0:
        reader.add("patient.weight_kg", "must be greater than 0")
    if birth_date is None or "_failed" in fields:
        return None
    return PatientInfo(
        birth_date=birth_date,
        sex=fields["sex"],
        pregnant=fields["pregnant"],
        weight_kg=weight_kg,
    )


def _read_labs(
    reader: _Reader, data: dict[Any, Any], as_of: date | None, birth_date: date | None
) -> tuple[Lab, ...] | None:
    raw_labs = data.get("labs", [])
    if not isinstance(raw_labs, list):
        reader.add("labs", "must be a list")
        return None
    labs: list[Lab] = []
    first_index: dict[tuple[str, date, time | None], int] = {}
    for index, raw_lab in enumerate(raw_labs):
        path = f"labs[{index}]"
        fields = reader.part(LabDocument, raw_lab, path)
        lab = None if fields is None else _read_lab(reader, fields, path, as_of, birth_date)
        if lab is None:
            continue
        key = (lab.test, lab.collected_on, lab.collected_time)
        if key in first_index:
            reader.add(
                f"{path}.collected_at",
                f"same test and collected_at as labs[{first_index[key]}] "
                f"({lab.test} at {lab.collected_at})",
            )
        else:
            first_index[key] = index
        labs.append(lab)
    return tuple(labs)


def _read_lab(
    reader: _Reader,
    fields: dict[str, Any],
    path: str,
    as_of: date | None,
    birth_date: date | None,
) -> Lab | None:
    count = len(reader.errors)
    test, unit, value = fields.get("test"), fields.get("unit"), fields.get("value")
    reference_high = fields.get("reference_high")
    if value is not None and value < 0:
        reader.add(f"{path}.value", "must not be negative")
    if test is not None and unit is not None and unit not in UNITS[test]:
        reader.add(
            f"{path}.unit",
            f"{_json_text(unit)} is not a unit for {test}; use one of {', '.join(UNITS[test])}",
        )
    if reference_high is not None and reference_high <= 0:
        reader.add(f"{path}.reference_high", "must be greater than 0")
    elif test == "bone_alp" and unit in BONE_ALP_ACTIVITY_UNITS and reference_high is None:
        # reference-intervals.md: activity assays have no built-in interval.
        reader.add(
            f"{path}.reference_high",
            f"required for bone_alp in {unit} (no built-in interval for activity)",
        )
    collected = None
    if isinstance(fields.get("collected_at"), str):
        collected = parse_iso_datetime(fields["collected_at"])
        if collected is None and outside_date_range(fields["collected_at"]):
            reader.add(
                f"{path}.collected_at",
                f"{_json_text(fields['collected_at'])} is outside {DATE_RANGE}",
            )
        elif collected is None:
            reader.add(
                f"{path}.collected_at",
                f"{_json_text(fields['collected_at'])} is not a date (YYYY-MM-DD) "
                "or datetime (YYYY-MM-DDTHH:MM[:SS])",
            )
        elif as_of and collected[0] > as_of:
            reader.add(f"{path}.collected_at", "after as_of")
        elif birth_date and collected[0] < birth_date:
            reader.add(f"{path}.collected_at", "before patient.birth_date")
    if len(reader.errors) > count or collected is None or "_failed" in fields:
        return None
    return Lab.create(
        test=fields["test"],
        value=fields["value"],
        unit=fields["unit"],
        collected_on=collected[0],
        collected_time=collected[1],
        reference_high=reference_high,
    )


def _read_clinical(reader: _Reader, data: dict[Any, Any]) -> Clinical | None:
    raw = data.get("clinical", {})
    fields = reader.part(_Clinical, raw, "clinical")
    if fields is None:
        return None
    count = len(reader.errors)
    crcl_baseline = fields.get("crcl_baseline")
    if crcl_baseline is not None and crcl_baseline < 0:
        reader.add("clinical.crcl_baseline", "must not be negative")

    raw_myeloma = raw.get("myeloma", {})
    myeloma_fields = reader.part(MyelomaDocument, raw_myeloma, "clinical.myeloma") or {}
    treatment_start = reader.date(
        myeloma_fields.get("treatment_start"), "clinical.myeloma.treatment_start"
    )
    bortezomib_start = reader.date(
        myeloma_fields.get("bortezomib_start"), "clinical.myeloma.bortezomib_start"
    )

    therapies = []
    raw_therapies = raw.get("therapies", [])
    if not isinstance(raw_therapies, list):
        reader.add("clinical.therapies", "must be a list")
        raw_therapies = []
    for index, raw_therapy in enumerate(raw_therapies):
        path = f"clinical.therapies[{index}]"
        therapy_fields = reader.part(TherapyDocument, raw_therapy, path) or {}
        start = reader.date(therapy_fields.get("start"), f"{path}.start")
        end = reader.date(therapy_fields.get("end"), f"{path}.end")
        if start and end and end < start:
            reader.add(f"{path}.end", "before start")
        if start and "agent" in therapy_fields:
            therapies.append(Therapy(agent=therapy_fields["agent"], start=start, end=end))

    if len(reader.errors) > count or "_failed" in fields or "_failed" in myeloma_fields:
        return None
    return Clinical(
        diagnoses=tuple(fields["diagnoses"]),
        cancer=fields["cancer"],
        cancer_treated=fields["cancer_treated"],
        bone_pain=fields["bone_pain"],
        osteolytic_pain=fields["osteolytic_pain"],
        bone_scan=fields["bone_scan"],
        fracture=fields["fracture"],
        dental_exam_done=fields["dental_exam_done"],
        crcl_baseline=crcl_baseline,
        myeloma=Myeloma(
            requires_therapy=myeloma_fields["requires_therapy"],
            bone_disease=myeloma_fields["bone_disease"],
            active_bone_disease=myeloma_fields["active_bone_disease"],
            response=myeloma_fields["response"],
            treatment_start=treatment_start,
            bortezomib_start=bortezomib_start,
        ),
        therapies=tuple(therapies),
    )


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {_json_text(key)}")
        result[key] = value
    return result


def parse_case_json(text: str | bytes, *, today: date | None = None) -> Case:
    """Decode JSON text and parse it; a repeated key is an error, like an unknown one."""
    try:
        data = json.loads(text, object_pairs_hook=_reject_duplicate_keys)
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


def case_to_document(case: Case) -> dict[str, Any]:
    """The canonical document of a case: every key, values and units as entered, as_of set."""
    clinical, myeloma = case.clinical, case.clinical.myeloma
    return {
        "as_of": case.as_of.isoformat(),
        "patient": {
            "birth_date": case.patient.birth_date.isoformat(),
            "sex": case.patient.sex,
            "pregnant": case.patient.pregnant,
            "weight_kg": case.patient.weight_kg,
        },
        "labs": [
            {
                "test": lab.test,
                "value": lab.value,
                "unit": lab.unit,
                "collected_at": lab.collected_at,
                "reference_high": lab.reference_high,
            }
            for lab in case.labs
        ],
        "clinical": {
            "diagnoses": list(clinical.diagnoses),
            "cancer": clinical.cancer,
            "cancer_treated": clinical.cancer_treated,
            "bone_pain": clinical.bone_pain,
            "osteolytic_pain": clinical.osteolytic_pain,
            "bone_scan": clinical.bone_scan,
            "fracture": clinical.fracture,
            "dental_exam_done": clinical.dental_exam_done,
            "crcl_baseline": clinical.crcl_baseline,
            "myeloma": {
                "requires_therapy": myeloma.requires_therapy,
                "bone_disease": myeloma.bone_disease,
                "active_bone_disease": myeloma.active_bone_disease,
                "response": myeloma.response,
                "treatment_start": _iso(myeloma.treatment_start),
                "bortezomib_start": _iso(myeloma.bortezomib_start),
            },
            "therapies": [
                {
                    "agent": therapy.agent,
                    "start": therapy.start.isoformat(),
                    "end": _iso(therapy.end),
                }
                for therapy in clinical.therapies
            ],
        },
    }
