"""FHIR R4 resources → alpcare's case document (spec/pathways-r1.md §1; codes: spec/interop.md).

Pure mapping, no Django and no I/O: Patient, Observation, Condition, MedicationRequest and
MedicationStatement resources (dicts, validated with fhir.resources' R4B models) in; a case
document, the patient's MRNs and a list of problems out. A resource this module cannot read
is left out and named in `problems` with the FHIRPath of what was wrong; the caller decides
whether that is an error (an import) or a note on the advice (a CDS Hooks card). Codes that
are not in the tables below (another lab test, an unrelated diagnosis) are ignored silently:
a patient's record holds much that the ALP pathways do not read.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, tzinfo
from decimal import Decimal
from typing import Any, Final, NamedTuple

from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.medicationstatement import MedicationStatement
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient
from pydantic import ValidationError

from pathways.engine.declaration import CLINICAL, declared_field
from pathways.interop import hl7v2
from pathways.listing import listed

LOINC: Final = "http://loinc.org"
ICD10CM: Final = "http://hl7.org/fhir/sid/icd-10-cm"
ATC: Final = "http://www.whocc.no/atc"
UCUM: Final = "http://unitsofmeasure.org"
IDENTIFIER_TYPE: Final = "http://terminology.hl7.org/CodeSystem/v2-0203"

# reference-intervals.md, "LOINC codes", as the case declaration holds them: code → (the case
# document's test, the UCUM units a result with that code may be reported in).
LAB_LOINC: Final[dict[str, tuple[str, tuple[str, ...]]]] = hl7v2.loinc_table()
WEIGHT_LOINC: Final = "29463-7"
PREGNANCY_STATUS_LOINC: Final = "82810-3"
GESTATIONAL_AGE_LOINC: Final = "49051-6"  # interop.md: in weeks (UCUM wk)
# LOINC answer list LL4129-4 (pregnancy status): LA15173-0 Pregnant, LA26683-5 Not pregnant.
PREGNANT_ANSWERS: Final = {(LOINC, "LA15173-0")}
NOT_PREGNANT_ANSWERS: Final = {(LOINC, "LA26683-5")}
ALL_OBSERVATION_LOINC: Final = (
    *LAB_LOINC,
    WEIGHT_LOINC,
    PREGNANCY_STATUS_LOINC,
    GESTATIONAL_AGE_LOINC,
)
POUND_IN_KG: Final = 0.45359237  # international avoirdupois pound (UCUM [lb_av])
# A converted value keeps 6 decimals, as the engine keeps its unit conversions (and the import).
CONVERTED_DECIMALS: Final = 6
# The lab's reference limits → the case document's lab fields (when declared).
REFERENCE_LIMITS: Final = (("high", "reference_high"), ("low", "reference_low"))

# interop.md "Diagnoses": ICD-10-CM prefix (dots ignored) → diagnosis of the case document.
# A diagnosis the case does not declare (osteoporosis before revision 2) is not mapped.
DIAGNOSIS_PREFIXES: Final[tuple[tuple[str, str], ...]] = (
    ("C900", "multiple_myeloma"),
    ("D472", "mgus"),
    ("M88", "paget"),
    ("C795", "bone_metastases"),
    ("C40", "primary_bone_tumour"),
    ("C41", "primary_bone_tumour"),
    ("M83", "osteomalacia"),
    ("E210", "hyperparathyroidism"),
    ("E211", "hyperparathyroidism"),
    ("E212", "hyperparathyroidism"),
    ("E213", "hyperparathyroidism"),
    ("N2581", "hyperparathyroidism"),
    ("E55", "vitamin_d_deficiency"),
    ("M80", "osteoporosis"),
    ("M81", "osteoporosis"),
    ("M858", "osteoporosis"),  # osteopenia is coded under M85.8- (interop.md)
    ("N18", "chronic_kidney_disease"),
    *((f"K7{digit}", "liver_disease") for digit in range(8)),
    ("A40", "sepsis"),
    ("A41", "sepsis"),
    ("R652", "sepsis"),
    ("B20", "hiv_aids"),
)
# interop.md "Known solid cancer": the named sites; any other C00-C80 is "other".
CANCER_PREFIXES: Final = (("C50", "breast"), ("C61", "prostate"), ("C64", "renal"), ("C34", "lung"))
# clinical.cancer holds one cancer (spec §1): of several, the first of this order, whatever
# the order of the record's list (breast, prostate and renal first: the bone scan is
# particularly indicated for them, spec §4 bone-scan-known-malignancy); "other" only alone.
CANCER_PRIORITY: Final = ("breast", "prostate", "renal", "lung", "other")
PREGNANCY_ICD10CM: Final = "Z331"

# interop.md "Medications": ATC code → agent; other M05BA/M05BB codes are other_bisphosphonate.
AGENT_ATC: Final = {
    "M05BA04": "alendronate",
    "M05BB03": "alendronate",
    "M05BB05": "alendronate",
    "M05BA08": "zoledronic_acid",
    "M05BA03": "pamidronate",
    "M05BX04": "denosumab",
}
COUNTED_OBSERVATION_STATUSES: Final = ("final", "amended", "corrected")
# interop.md: only active conditions count. In FHIR R4's condition-clinical code system
# recurrence and relapse are kinds of active ("relapse of cancer").
ACTIVE_CLINICAL_STATUSES: Final = frozenset({"active", "recurrence", "relapse"})
COUNTED_REQUEST_STATUSES: Final = ("active", "completed", "on-hold")
COUNTED_STATEMENT_STATUSES: Final = ("active", "completed", "stopped", "on-hold")
STOPPED_STATEMENT_STATUSES: Final = ("completed", "stopped")  # no longer taken: it has an end


@dataclass(frozen=True)
class Problem:
    """Something in a resource that could not be used; `path` is a FHIRPath."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class Reading(NamedTuple):
    """A value of the patient's at a time (a weight, a pregnancy status) and its resource."""

    when: str  # local ISO date or date-time; "" for a condition without a date
    value: Any
    path: str


def _latest(
    mapper: _Mapper, readings: list[Reading], what: str, shown: Callable[[Any], str]
) -> Any:
    """The value of the latest reading. Two readings at that time that disagree (70 kg and
    72 kg, pregnant and not) are named and neither is used: the order of the EHR's list must
    not decide, as it does not for two results of one test."""
    if not readings:
        return None
    when = max(reading.when for reading in readings)
    latest = {reading.value: reading.path for reading in readings if reading.when == when}
    if len(latest) == 1:
        return next(iter(latest))
    values = ", ".join(shown(value) for value in latest)
    mapper.problem(
        list(latest.values())[-1],
        f"{what} at {when or 'an undated condition'} given {len(latest)} ways ({values}): left out",
    )
    return None


@dataclass
class FhirCase:
    """What the mapping read: a case document (for engine.parse_case) and what it left out."""

    document: dict[str, Any]
    mrns: list[tuple[str, str]] = field(default_factory=list)  # (identifier system, value)
    problems: list[Problem] = field(default_factory=list)


def _codes(concept: Any) -> list[tuple[str, str]]:
    if concept is None:
        return []
    return [(coding.system or "", coding.code or "") for coding in concept.coding or []]


def _code_in(concept: Any, system: str) -> list[str]:
    return [code for coding_system, code in _codes(concept) if coding_system == system and code]


def quantity_unit(quantity: Any) -> str | None:
    """A Quantity's unit: its UCUM code when it has one, else its human-readable unit."""
    return quantity.code if quantity.system == UCUM and quantity.code else quantity.unit


def _compact(code: str) -> str:
    return code.replace(".", "").upper()


def agent_for_atc(code: str) -> str | None:
    code = code.upper()
    if code in AGENT_ATC:
        return AGENT_ATC[code]
    if code.startswith(("M05BA", "M05BB")):
        return "other_bisphosphonate"
    return None


def agent_of(concept: Any) -> str | None:
    """The case document's agent for a medication CodeableConcept (ATC), or None."""
    for code in _code_in(concept, ATC):
        agent = agent_for_atc(code)
        if agent is not None:
            return agent
    return None


def _within_c00_c80(compact: str) -> bool:
    """A category of C00-C80 in the tabular list, which holds C4A (Merkel cell carcinoma,
    after C43), C7A and C7B (neuroendocrine tumours, after C75) among the numbered ones."""
    if len(compact) < 3 or compact[0] != "C" or not compact[1].isdigit():
        return False
    if compact[2].isdigit():
        return int(compact[1:3]) <= 80
    return compact[2].isalpha() and int(compact[1]) <= 7


def diagnoses_for_icd10cm(code: str) -> tuple[str | None, str | None]:
    """(diagnosis, cancer) for an ICD-10-CM code; either may be None."""
    compact = _compact(code)
    diagnosis = next((d for prefix, d in DIAGNOSIS_PREFIXES if compact.startswith(prefix)), None)
    if diagnosis not in CLINICAL["diagnoses"].values:
        diagnosis = None
    cancer = next((c for prefix, c in CANCER_PREFIXES if compact.startswith(prefix)), None)
    if cancer is None and diagnosis is None and _within_c00_c80(compact):
        cancer = "other"
    return diagnosis, cancer


def known_cancer(cancers: Iterable[str]) -> str | None:
    """The case document's one cancer of those a patient's conditions name (None: none), by
    CANCER_PRIORITY: the same whichever order the conditions come in (import and CDS Hooks)."""
    named = set(cancers)
    return next((cancer for cancer in CANCER_PRIORITY if cancer in named), None)


def json_nodes(data: object, root: str) -> Iterator[tuple[object, str]]:
    """Every value in decoded JSON with its path (FHIRPath-like, from ``root``), in document
    order. Walked without recursion: the JSON may be nested as deep as the parser allows."""
    stack: list[tuple[object, str]] = [(data, root)]
    while stack:
        value, path = stack.pop()
        yield value, path
        if isinstance(value, dict):
            stack.extend((item, f"{path}.{key}") for key, item in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{i}]") for i, item in reversed(list(enumerate(value))))


def nul_path(data: object, root: str) -> str | None:
    """The path of the first text in decoded JSON with a NUL character in it, or None:
    PostgreSQL cannot store one in a text."""
    return next(
        (
            path
            for value, path in json_nodes(data, root)
            if isinstance(value, str) and "\x00" in value
        ),
        None,
    )


def local_date_time(value: date | datetime, tz: tzinfo) -> tuple[date, time | None]:
    """A FHIR date or dateTime as the clinic's local date and time (None: a bare date)."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            # Year 1 or 9999 pushed past the calendar by the offset: kept as written, and left
            # out or refused for its range (engine.DATE_RANGE) like any other far date.
            with contextlib.suppress(OverflowError):
                value = value.astimezone(tz)
        return value.date(), value.time().replace(microsecond=0, tzinfo=None)
    return value, None


def _local_date(value: date | datetime, tz: tzinfo) -> tuple[date, str]:
    """The date and the case document's collected_at text, in the clinic's time zone."""
    day, at = local_date_time(value, tz)
    if at is None:
        return day, day.isoformat()
    return day, f"{day.isoformat()}T{at.isoformat(timespec='seconds')}"


def _number(value: Decimal | float | int) -> float:
    return float(value)


PROBLEMS_LISTED: Final = 5  # a resource's validation problems named; the rest are counted


class _Mapper:
    def __init__(self, today: date, tz: tzinfo) -> None:
        self.today = today
        self.tz = tz
        self.problems: list[Problem] = []
        # Of the labs by (test, time): which came from an amended or corrected result, and
        # which had two values neither of which corrects the other.
        self.amending: set[tuple[str, str]] = set()
        self.conflicting: set[tuple[str, str]] = set()

    def problem(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def validate(self, model: Any, resource: dict[str, Any], path: str) -> Any:
        try:
            return model.model_validate(resource)
        except ValidationError as error:
            problems = [
                Problem(_located(path, detail["loc"]), detail["msg"])
                for detail in error.errors(include_url=False)
            ]
            self.problems += listed(
                problems, PROBLEMS_LISTED, lambda more: Problem(path, f"and {more} more problems")
            )
            return None
        except (KeyError, TypeError) as error:  # a contained resource of no known type
            unread = f"{type(error).__name__}: {error}"
            message = f"not a FHIR R4 resource fhir.resources can read ({unread}); left out"
            self.problems.append(Problem(path, message))
            return None


def _located(path: str, location: tuple[Any, ...]) -> str:
    parts = ".".join(str(part) for part in location if part != "__root__")
    return f"{path}.{parts}" if parts else path


def _raw_codes(concept: Any) -> list[tuple[object, object]]:
    if not isinstance(concept, dict) or not isinstance(concept.get("coding"), list):
        return []
    return [
        (coding.get("system"), coding.get("code"))
        for coding in concept["coding"]
        if isinstance(coding, dict)
    ]


_READ_LOINC: Final = frozenset(ALL_OBSERVATION_LOINC)


def _may_be_read(resource: dict[str, Any]) -> bool:
    """Whether a resource carries a code this mapping reads (checked before validation)."""
    kind = resource.get("resourceType")
    if kind == "Observation":
        codes = _raw_codes(resource.get("code"))
        return any(
            system == LOINC and isinstance(code, str) and code in _READ_LOINC
            for system, code in codes
        )
    if kind == "Condition":
        return any(
            system == ICD10CM
            and isinstance(code, str)
            and (
                _compact(code).startswith(PREGNANCY_ICD10CM)
                or diagnoses_for_icd10cm(code) != (None, None)
            )
            for system, code in _raw_codes(resource.get("code"))
        )
    if kind in ("MedicationRequest", "MedicationStatement"):
        if resource.get("medicationReference") is not None:
            return True  # a contained Medication is read; another reference is named
        return any(
            system == ATC and isinstance(code, str) and agent_for_atc(code) is not None
            for system, code in _raw_codes(resource.get("medicationCodeableConcept"))
        )
    return False


def medication_concept(resource: Any) -> tuple[Any, str | None]:
    """A MedicationRequest's or MedicationStatement's medication as a CodeableConcept: its own,
    or the code of the contained Medication its medicationReference names ("#id"). Else None,
    and why: a reference to a Medication elsewhere is not fetched (interop.md: by ATC, anything
    else named, never guessed)."""
    if resource.medicationCodeableConcept is not None:
        return resource.medicationCodeableConcept, None
    reference = resource.medicationReference.reference if resource.medicationReference else None
    if not reference:
        return None, None
    if reference.startswith("#"):
        for contained in resource.contained or []:
            if contained.get_resource_type() == "Medication" and contained.id == reference[1:]:
                return contained.code, None
        return None, f"{reference}: no contained Medication of that id"
    return None, (
        f"{reference}: not read (alpcare reads an ATC code in medicationCodeableConcept or in a "
        "contained Medication)"
    )


def case_from_fhir(
    resources: Iterable[dict[str, Any]],
    *,
    today: date,
    tz: tzinfo = UTC,
    mrn_system: str = "",
) -> FhirCase:
    """Map one patient's resources to a case document dated `today`.

    `mrn_system`: the identifier system that holds the MRN; when empty, identifiers typed
    `MR` (v2-0203) are the MRNs.
    """
    mapper = _Mapper(today, tz)
    patient: dict[str, Any] = {}
    mrns: list[tuple[str, str]] = []
    labs: dict[tuple[str, str], dict[str, Any]] = {}
    weights: list[Reading] = []
    pregnancy: list[Reading] = []
    weeks: list[Reading] = []
    diagnoses: list[str] = []
    cancers: list[str] = []
    therapies: list[dict[str, Any]] = []
    patients: list[tuple[dict[str, Any], list[tuple[str, str]]]] = []

    for resource in resources:
        kind = resource.get("resourceType") if isinstance(resource, dict) else None
        if kind != "Patient" and not _may_be_read(resource):
            continue  # validating what is never read would cost most of a hook call
        path = f"{kind}/{resource.get('id', '?')}" if kind else "(resource)"
        if kind == "Patient":
            read = mapper.validate(Patient, resource, "Patient")
            if read is not None:
                patients.append(_patient(mapper, read, mrn_system))
        elif kind == "Observation":
            observation = mapper.validate(Observation, resource, path)
            if observation is not None:
                _observation(mapper, observation, path, labs, weights, pregnancy, weeks)
        elif kind == "Condition":
            condition = mapper.validate(Condition, resource, path)
            if condition is not None:
                _condition(mapper, condition, path, diagnoses, cancers, pregnancy)
        elif kind == "MedicationRequest":
            request = mapper.validate(MedicationRequest, resource, path)
            if request is not None and request.status in COUNTED_REQUEST_STATUSES:
                _therapy(mapper, request, path, therapies, statement=False)
        elif kind == "MedicationStatement":
            statement = mapper.validate(MedicationStatement, resource, path)
            if statement is not None and statement.status in COUNTED_STATEMENT_STATUSES:
                _therapy(mapper, statement, path, therapies, statement=True)

    if patients and all(read == patients[0] for read in patients):
        patient, mrns = patients[0]
    elif patients:  # which one holds, list order must not decide (the sex sets the intervals)
        mapper.problem(
            "Patient",
            f"{len(patients)} Patient resources that disagree (birth date, sex or MRNs): left out",
        )
    if (weight := _latest(mapper, weights, "body weight", lambda kg: f"{kg:g} kg")) is not None:
        patient["weight_kg"] = weight
    if patient.get("sex") == "female":
        pregnant = _latest(
            mapper, pregnancy, "pregnancy status", lambda yes: "pregnant" if yes else "not pregnant"
        )
        if pregnant is not None:
            patient["pregnant"] = pregnant
        if pregnant and (at := _latest(mapper, weeks, "gestational age", _weeks)) is not None:
            patient["gestational_weeks"] = at
    cancer = known_cancer(cancers)
    document: dict[str, Any] = {
        "as_of": today.isoformat(),
        "patient": patient,
        "labs": sorted(
            (lab for key, lab in labs.items() if key not in mapper.conflicting),
            key=lambda lab: (lab["collected_at"], lab["test"]),
        ),
        "clinical": {
            "diagnoses": sorted(set(diagnoses)),
            "cancer": cancer,
            "therapies": therapies,
        },
    }
    return FhirCase(document=document, mrns=mrns, problems=mapper.problems)


def _patient(
    mapper: _Mapper, patient: Patient, mrn_system: str
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    document: dict[str, Any] = {}
    if patient.birthDate is None:
        mapper.problem("Patient.birthDate", "required (the reference intervals depend on age)")
    elif not isinstance(patient.birthDate, date):  # "1956" or "1956-03": valid FHIR, no day
        mapper.problem(
            "Patient.birthDate",
            f"{patient.birthDate}: a full date is required (the reference intervals depend on age)",
        )
    else:
        document["birth_date"] = patient.birthDate.isoformat()
    if patient.gender in ("male", "female"):
        document["sex"] = patient.gender
    else:
        mapper.problem(
            "Patient.gender",
            f"{patient.gender or 'missing'}: must be male or female "
            "(the reference intervals depend on sex)",
        )
    mrns = []
    for identifier in patient.identifier or []:
        typed_mr = ("http://terminology.hl7.org/CodeSystem/v2-0203", "MR") in _codes(
            identifier.type
        )
        by_system = bool(mrn_system) and identifier.system == mrn_system
        if identifier.value and (by_system or (not mrn_system and typed_mr)):
            mrns.append((identifier.system or "", identifier.value))
    return document, mrns


REFERENCE_RANGE_MEANING: Final = "http://terminology.hl7.org/CodeSystem/referencerange-meaning"


def lab_range(observation: Observation) -> tuple[int, Any] | str | None:
    """The lab's own normal range of a result: (its index, the range), None when it gives
    none, or why none can be chosen.

    FHIR reads several ranges as alternatives for different populations ("OR"), so one is
    chosen only when it is the sole range, or the sole one for everyone (no appliesTo, no age)
    that is not of another kind than normal: the first is not assumed to fit the patient.
    """
    ranges = list(observation.referenceRange or [])
    if len(ranges) <= 1:
        return (0, ranges[0]) if ranges else None
    for_everyone = [
        (index, reference)
        for index, reference in enumerate(ranges)
        if not reference.appliesTo and reference.age is None and _normal_kind(reference.type)
    ]
    if len(for_everyone) == 1:
        return for_everyone[0]
    return (
        f"{len(ranges)} reference ranges and not exactly one of them normal for every patient "
        "(no appliesTo, no age): the lab's limits are not used, the built-in interval is"
    )


def _normal_kind(kind: Any) -> bool:
    codes = _codes(kind)
    return not codes or (REFERENCE_RANGE_MEANING, "normal") in codes


def _effective(mapper: _Mapper, observation: Observation, path: str) -> tuple[date, str] | None:
    when = observation.effectiveDateTime or observation.effectiveInstant
    if when is None and observation.effectivePeriod is not None:
        when = observation.effectivePeriod.start
    if not isinstance(when, date):  # a partial date ("2026-11") says too little
        mapper.problem(f"{path}.effective", "a full date or date-time is required")
        return None
    day, text = _local_date(when, mapper.tz)
    if day > mapper.today:
        mapper.problem(f"{path}.effective", f"{text} is in the future")
        return None
    return day, text


def _observation(
    mapper: _Mapper,
    observation: Observation,
    path: str,
    labs: dict[tuple[str, str], dict[str, Any]],
    weights: list[Reading],
    pregnancy: list[Reading],
    weeks: list[Reading],
) -> None:
    if observation.status not in COUNTED_OBSERVATION_STATUSES:
        return
    codes = _code_in(observation.code, LOINC)
    if PREGNANCY_STATUS_LOINC in codes:
        answers = set(_codes(observation.valueCodeableConcept))
        effective = _effective(mapper, observation, path)
        if effective is not None and answers & PREGNANT_ANSWERS:
            pregnancy.append(Reading(effective[1], True, path))
        elif effective is not None and answers & NOT_PREGNANT_ANSWERS:
            pregnancy.append(Reading(effective[1], False, path))
        return
    loinc = next((code for code in codes if code in _READ_LOINC), None)  # status read above
    if loinc is None:
        return
    quantity = observation.valueQuantity
    if quantity is None or quantity.value is None:
        mapper.problem(f"{path}.value", "a valueQuantity with a value is required")
        return
    if quantity.comparator is not None:  # "> 1000" is not 1000
        mapper.problem(
            f"{path}.valueQuantity.comparator",
            f"{quantity.comparator}: not an exact value, left out",
        )
        return
    unit = quantity_unit(quantity)
    effective = _effective(mapper, observation, path)
    if effective is None:
        return
    value = _number(quantity.value)
    if loinc == WEIGHT_LOINC:
        if unit == "kg":
            weights.append(Reading(effective[1], value, path))
        elif unit == "[lb_av]":
            pounds = round(value * POUND_IN_KG, CONVERTED_DECIMALS)
            weights.append(Reading(effective[1], pounds, path))
        else:
            mapper.problem(f"{path}.valueQuantity.code", f"{unit!r} is not kg or [lb_av]")
        return
    if loinc == GESTATIONAL_AGE_LOINC:
        _gestational_age(mapper, value, unit, effective[0], path, weeks)
        return
    test, units = LAB_LOINC[loinc]
    if unit not in units:
        mapper.problem(
            f"{path}.valueQuantity.code",
            f"{unit!r} is not a unit for {test} ({loinc}); use one of {', '.join(units)}",
        )
        return
    lab: dict[str, Any] = {"test": test, "value": value, "unit": unit, "collected_at": effective[1]}
    chosen = lab_range(observation)
    if isinstance(chosen, str):
        mapper.problem(f"{path}.referenceRange", chosen)
    elif chosen is not None:  # both of the lab's limits win over the built-in ones, as on import
        for end, name in REFERENCE_LIMITS:
            limit = getattr(chosen[1], end)
            if limit is None or limit.value is None:
                continue
            limit_unit = quantity_unit(limit)
            if limit_unit in (None, unit):
                lab[name] = _number(limit.value)
            else:
                mapper.problem(
                    f"{path}.referenceRange[{chosen[0]}].{end}",
                    f"{limit_unit!r}: the limit is not in the result's unit {unit!r}, so not used",
                )
    # One result per test and time (the case document refuses two): a correction wins over
    # the result it corrects; two values neither of which corrects the other are named and
    # left out, never one kept by the order the EHR listed them in.
    key = (test, effective[1])
    amends = observation.status in ("amended", "corrected")
    earlier = labs.get(key)
    if earlier is None or (amends and key not in mapper.amending):
        labs[key] = lab
        if amends:
            mapper.amending.add(key)
    elif (earlier["value"], earlier["unit"]) != (value, unit) and (
        amends or key not in mapper.amending
    ):
        mapper.conflicting.add(key)
        mapper.problem(
            path + ".valueQuantity",
            f"a second {test} result collected at {effective[1]} with another value "
            f"({earlier['value']:g} {earlier['unit']}, {value:g} {unit}): both left out",
        )


def advanced_weeks(weeks: float, observed_on: date, today: date) -> float:
    """Gestational weeks observed on a day, on `today`: spec §1 counts completed weeks at
    as_of, so an observation made earlier is advanced by the whole weeks since."""
    return weeks + (today - observed_on).days // 7


def _weeks(weeks: int) -> str:
    return f"{weeks} weeks"


def _gestational_age(
    mapper: _Mapper, value: float, unit: str | None, on: date, path: str, weeks: list[Reading]
) -> None:
    """Gestational age in completed weeks on `today` (spec §1), as the FHIR import reads it
    (when the case declares it)."""
    field = declared_field("patient.gestational_weeks")
    if field is None:
        return
    if unit != "wk":
        mapper.problem(f"{path}.valueQuantity.code", f"{unit!r} is not wk")
        return
    at = advanced_weeks(value, on, mapper.today)
    low, high = field.minimum, field.maximum
    if not float(at).is_integer() or (low is not None and at < low) or (high and at > high):
        mapper.problem(
            f"{path}.valueQuantity.value",
            f"{value:g} weeks on {on.isoformat()} is {at:g} weeks today: not a whole number "
            f"of weeks from {low:g} to {high:g}, left out",
        )
        return
    weeks.append(Reading(on.isoformat(), int(at), path))


def _condition(
    mapper: _Mapper,
    condition: Condition,
    path: str,
    diagnoses: list[str],
    cancers: list[str],
    pregnancy: list[Reading],
) -> None:
    # interop.md: only active conditions count; refuted or mistaken ones never.
    if not ACTIVE_CLINICAL_STATUSES & {code for _system, code in _codes(condition.clinicalStatus)}:
        return
    if {"refuted", "entered-in-error"} & {
        code for _s, code in _codes(condition.verificationStatus)
    }:
        return
    for code in _code_in(condition.code, ICD10CM):
        if _compact(code).startswith(PREGNANCY_ICD10CM):
            pregnancy.append(Reading(_condition_when(mapper, condition, path), True, path))
            continue
        diagnosis, cancer = diagnoses_for_icd10cm(code)
        if diagnosis is not None:
            diagnoses.append(diagnosis)
        if cancer is not None:
            cancers.append(cancer)


def _condition_when(mapper: _Mapper, condition: Condition, path: str) -> str:
    """A pregnancy condition's time as a Reading's `when`: the clinic's local date or date-time,
    as observations' times are (compared with them as text), or "" when it has none. A date
    that does not name a day ("2026-01", valid FHIR) is named, as for an observation, and the
    condition is read as undated: it still says pregnant, and loses to any dated reading."""
    field, when = (
        ("recordedDate", condition.recordedDate)
        if condition.recordedDate is not None
        else ("onsetDateTime", condition.onsetDateTime)
    )
    if when is None:
        return ""
    if not isinstance(when, date):
        mapper.problem(
            f"{path}.{field}", f"{when}: a full date or date-time is required; read as undated"
        )
        return ""
    return _local_date(when, mapper.tz)[1]


def _therapy(
    mapper: _Mapper,
    resource: MedicationRequest | MedicationStatement,
    path: str,
    therapies: list[dict[str, Any]],
    *,
    statement: bool,
) -> None:
    concept, unread = medication_concept(resource)
    if unread is not None:
        mapper.problem(f"{path}.medicationReference", f"{unread}; left out")
    agent = agent_of(concept)
    if agent is None:
        return
    start: Any = None
    end: Any = None
    if isinstance(resource, MedicationStatement):
        if resource.effectivePeriod is not None:
            start, end = resource.effectivePeriod.start, resource.effectivePeriod.end
        else:
            start = resource.effectiveDateTime
    else:
        validity = resource.dispenseRequest.validityPeriod if resource.dispenseRequest else None
        if validity is not None and validity.start is not None:
            start, end = validity.start, validity.end
        else:
            start = resource.authoredOn
    if not isinstance(start, date):
        where = "effective" if statement else "dispenseRequest.validityPeriod.start"
        mapper.problem(f"{path}.{where}", "a start date is required for a bone-targeted agent")
        return
    start_day = _local_date(start, mapper.tz)[0]
    end_day = _local_date(end, mapper.tz)[0] if isinstance(end, date) else None
    if start_day > mapper.today:
        return  # planned, not started: neither current nor past (spec §2)
    # A course whose end cannot be read is neither one that ended nor a current one.
    end_path = f"{path}.{'effectivePeriod' if statement else 'dispenseRequest.validityPeriod'}.end"
    if end is not None and end_day is None:
        mapper.problem(end_path, f"{end}: a full date is required, the course is left out")
        return
    if end_day is not None and end_day < start_day:
        mapper.problem(end_path, "the end is before the start: the course is left out")
        return
    if statement and resource.status in STOPPED_STATEMENT_STATUSES and end_day is None:
        mapper.problem(
            end_path, f"{resource.status} with no end date: the course is left out, not current"
        )
        return
    therapy = {"agent": agent, "start": start_day.isoformat(), "end": None}
    if end_day is not None:
        therapy["end"] = end_day.isoformat()
    if therapy not in therapies:  # the same course as a request and as a statement
        therapies.append(therapy)
