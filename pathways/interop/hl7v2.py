"""HL7 v2 ORU^R01 (v2.3-2.5.1) read with the ``hl7`` package, and its results mapped to the case
declaration (engine/declaration.py: LOINC codes and units; reference-intervals.md).

Pure functions, no database: ``parse_message`` turns the raw text into an ``OruMessage`` (or
raises ``Unparseable``/``Refused``), ``map_code``/``map_unit``/``reference_limits`` map one
observation's fields, ``build_ack`` answers it.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from typing import Any, Final

import hl7
from django.utils import timezone

from pathways.engine import declaration
from pathways.engine.dates import skipped_by_the_clocks

SUPPORTED_VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1")


class Unparseable(Exception):
    """The text is not an HL7 v2 message (answered with AR)."""


class Refused(Exception):
    """The message is understood but cannot be stored (answered with AE and this reason)."""


class Rejected(Refused):
    """A message of a type, version or processing ID alpcare does not accept: answered with
    AR (HL7 v2.5.1 §2.9: MSH-9, MSH-11 and MSH-12 are checked before a message is accepted;
    one that fails is rejected, not an application error worth resending)."""


@dataclass(frozen=True)
class Observation:
    set_id: str
    filler_order: str  # OBR-3
    code: str  # OBX-3.1
    coding_system: str  # OBX-3.3 ("LN" for LOINC)
    code_text: str  # OBX-3.2
    sub_id: str  # OBX-4
    value: str  # OBX-5
    unit: str  # OBX-6.1, else OBX-6.2
    reference_range: str  # OBX-7
    status: str  # OBX-11
    collected_at: datetime | None  # OBX-14, else OBR-7, aware
    collected_has_time: bool
    comment: str = ""  # NTE-3 of the NTE segments that follow the OBX, a line each


@dataclass(frozen=True)
class OruMessage:
    raw: str
    control_id: str
    sending_application: str
    sending_facility: str
    version: str
    message_type: str
    mrn: str
    assigning_authority: str
    patient_name: str
    observations: list[Observation] = field(default_factory=list)
    # PID-7 and PID-8 as sent, to check against the patient the MRN finds (see birth_date_sent).
    birth_date: str = ""
    sex: str = ""
    # Every PID-3 repetition typed MR, as (MRN, PID-3.4 assigning authority): a lab serving
    # several hospitals may send each one's MRN; the feed takes the one its authority issued.
    medical_record_numbers: tuple[tuple[str, str], ...] = ()

    def issued_by(self, authority: str) -> OruMessage:
        """The message with the MRN ``authority`` issued as its patient's, when it holds one."""
        issued = next((pair for pair in self.medical_record_numbers if pair[1] == authority), None)
        if issued is None or issued == (self.mrn, self.assigning_authority):
            return self
        return replace(self, mrn=issued[0], assigning_authority=issued[1])


def encoding_problem(encoding: str) -> str | None:
    """Why ``encoding`` cannot read HL7 text (None when it can): unknown, or a codec that does
    not turn bytes into text (hex, base64, rot13)."""
    try:
        codecs.lookup(encoding)
    except LookupError:
        return f"no encoding named {encoding!r}"
    try:  # str.encode refuses a codec that is not text's with a LookupError
        "MSH".encode(encoding).decode(encoding)
    except (LookupError, UnicodeError, TypeError):
        return f"{encoding!r} is not a text encoding"
    return None


def normalise(raw: str) -> str:
    """Segments separated by CR whatever line endings a file or HTTP client used."""
    text = raw.replace("\r\n", "\r").replace("\n", "\r").strip("\r\x0b\x1c ")
    # A blank line between segments is no segment (the hl7 package fails on an empty one).
    return "\r".join(segment for segment in text.split("\r") if segment.strip()) + "\r"


@dataclass
class Hl7File:
    """The messages of a file, and what in it is not part of one or disagrees with its batch
    trailers (a segment with no MSH before it; BTS-1 or FTS-1 counts that do not match)."""

    messages: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def read_file(text: str) -> Hl7File:
    """Split a file of messages: MLLP-framed or not, any line endings, FHS/BHS batches.

    Written here rather than with ``hl7.split_file``, which logs and drops segments before the
    first MSH, adds segments after a batch trailer to the message before it, and reads no
    batch count: a file cut short must say so, not import less.
    """
    content = Hl7File()
    text = normalise(text.replace("\x1c", "\r").replace("\x0b", ""))
    batches = in_batch = 0  # BHS segments seen; messages since the last BHS (or the start)
    open_message = False  # a batch segment ends the message before it
    for number, line in enumerate((line.strip() for line in text.split("\r")), start=1):
        if not line:
            continue
        kind = line[:3]
        if kind == "MSH":
            content.messages.append(line + "\r")
            in_batch, open_message = in_batch + 1, True
        elif kind in ("FHS", "BHS", "BTS", "FTS"):
            open_message = False
            problem = None
            if kind == "BHS":
                batches, in_batch = batches + 1, 0
            elif kind == "BTS":
                problem = _trailer_count(line, kind, in_batch, "messages")
            elif kind == "FTS":
                problem = _trailer_count(line, kind, batches, "batches")
            if problem is not None:
                content.problems.append(f"segment {number}: {problem}")
        elif open_message:
            content.messages[-1] += line + "\r"
        else:
            content.problems.append(
                f"segment {number} ({kind}) is not part of a message (no MSH before it): "
                "not imported"
            )
    return content


def _trailer_count(line: str, kind: str, counted: int, what: str) -> str | None:
    """Whether a BTS-1 (messages in its batch) or FTS-1 (batches in the file) count matches."""
    given = line[4:].split(line[3:4] or "|")[0].strip() if len(line) > 3 else ""
    if not given:
        return None  # optional in HL7: nothing to check
    if not (given.isascii() and given.isdigit()):
        return f"{kind}-1 is not a count: {given[:20]!r}"
    if int(given) != counted:
        return f"{kind}-1 says {int(given)} {what}, the file holds {counted} (cut short?)"
    return None


def _field(segment: Any, number: int, repeat: int = 1, component: int = 1) -> str:
    try:
        return str(segment.extract_field(1, number, repeat, component, 1)).strip()
    except IndexError:
        return ""


_DTM = re.compile(r"^(\d{4,14})(\.\d{1,4})?([+-]\d{4})?$", re.ASCII)


def parse_dtm(value: str, default_offset: str, where: str) -> tuple[datetime, bool] | None:
    """An HL7 DTM as an aware datetime (its own offset, else the message's, else the site's
    time zone) and whether it has a time of day; None when blank."""
    if not value:
        return None
    match = _DTM.match(value)
    if match is None or len(match.group(1)) not in (8, 10, 12, 14):
        raise Refused(f"{where}: {value!r} is not an HL7 date/time (YYYYMMDD[HHMM[SS]][+ZZZZ])")
    digits = match.group(1)
    offset = match.group(3) or default_offset  # the value's own, else the message's (MSH-7)
    if offset and (int(offset[1:3]) > 23 or int(offset[3:5]) > 59):
        raise Refused(f"{where}: {value!r}: {offset} is not a time zone offset (±HHMM)")
    # A bare date has no instant: it is that date where alpcare is (spec §1: "the time of day
    # is then unknown"), whatever offset the message carries.
    text = digits if len(digits) == 8 else digits + (match.group(2) or "") + offset
    try:
        parsed = hl7.parse_datetime(text)
    except ValueError as error:
        raise Refused(f"{where}: {value!r} is not a valid date/time") from error
    try:
        if parsed.tzinfo is None:
            zone = timezone.get_current_timezone()
            # A local time the clocks skipped is no instant: it was stored an hour later.
            if len(digits) > 8 and skipped_by_the_clocks(parsed.date(), parsed.time(), zone):
                raise Refused(_skipped_time(where, parsed))
            parsed = timezone.make_aware(parsed, zone)
        parsed.astimezone(UTC)  # stored in UTC,
        timezone.localtime(parsed)  # shown in the site's time zone
    except OverflowError:  # 00010101+0100 is before year 1 in UTC
        raise Refused(f"{where}: {value!r} is outside the calendar in UTC") from None
    return parsed, len(digits) > 8


def _skipped_time(where: str, local: datetime) -> str:
    at = local.time().isoformat(timespec="seconds" if local.second else "minutes")
    return (
        f"{where}: {at} on {local.date().isoformat()} did not occur in "
        f"{timezone.get_current_timezone_name()} (the clocks went forward); send the time "
        "with its UTC offset"
    )


def local_collection(collected_at: datetime, has_time: bool) -> tuple[date, time | None]:
    """Collection date and time, to the second as a typed result keeps it, in the site's time
    zone (ALPCARE_TIME_ZONE)."""
    local = timezone.localtime(collected_at)
    if not has_time:  # stored as midnight where alpcare is (parse_dtm)
        return local.date(), None
    return local.date(), local.time().replace(microsecond=0)


def _offset(value: str) -> str:
    match = _DTM.match(value)
    return (match.group(3) or "") if match else ""


def parse_message(raw: str) -> OruMessage:
    text = normalise(raw)
    if not text.startswith("MSH"):
        raise Unparseable("the message does not start with an MSH segment")
    try:
        message = hl7.parse(text)
        msh = message.segment("MSH")
    except Exception as error:  # the hl7 package raises several types for bad text
        raise Unparseable(f"not an HL7 v2 message: {error}") from error
    control_id = _field(msh, 10)
    facility = _field(msh, 4)
    version = _field(msh, 12)
    message_type = f"{_field(msh, 9, 1, 1)}^{_field(msh, 9, 1, 2)}"
    oru = OruMessage(
        raw=text,
        control_id=control_id,
        sending_application=_field(msh, 3),
        sending_facility=facility,
        version=version,
        message_type=message_type,
        mrn="",
        assigning_authority="",
        patient_name="",
    )
    if not control_id:
        raise Refused("MSH-10 (message control ID) is empty")
    if not facility:
        raise Refused("MSH-4 (sending facility) is empty")
    if message_type != "ORU^R01":
        raise Rejected(f"MSH-9: message type {message_type} is not accepted (only ORU^R01)")
    if version not in SUPPORTED_VERSIONS:
        raise Rejected(f"MSH-12: version {version or '(blank)'} is not supported (2.3 to 2.5.1)")
    processing = _field(msh, 11)
    if processing != "P":  # HL7 Table 0103: P production, D debugging, T training
        raise Rejected(
            f"MSH-11: processing ID {processing or '(blank)'} is not P (production): training "
            "and debugging messages are not stored as patients' results"
        )
    return _read_oru(message, oru, _offset(_field(msh, 7)))


def _read_oru(message: Any, oru: OruMessage, default_offset: str) -> OruMessage:
    patients = [segment for segment in message if str(segment(0)) == "PID"]
    if not patients:
        raise Refused("PID segment is missing")
    if len(patients) > 1:  # each OBX would be filed on the first patient
        raise Refused(
            f"the message holds {len(patients)} PID segments: one patient per message is "
            "accepted (send each patient's results in a message of its own)"
        )
    pid = patients[0]
    mrn, authority, records = _patient_identifier(pid)
    if not mrn:
        raise Refused("PID-3 (patient identifier) is empty")
    name = " ".join(part for part in (_field(pid, 5, 1, 2), _field(pid, 5, 1, 1)) if part)
    birth_date, sex = birth_date_sent(_field(pid, 7)), _field(pid, 8).upper()
    observations: list[Observation] = []
    filler_order = ""
    obr_collected: tuple[datetime, bool] | None = None
    noting = False  # an NTE right after an OBX, or after that OBX's NTEs, notes that result
    for segment in message:
        kind = str(segment(0))
        if kind == "OBR":
            filler_order = _field(segment, 3)
            obr_collected = parse_dtm(_field(segment, 7), default_offset, "OBR-7")
        elif kind == "NTE" and noting:
            latest = observations[-1]
            lines = [line for line in (latest.comment, _note(message, segment)) if line]
            observations[-1] = replace(latest, comment="\n".join(lines))
        elif kind == "OBX":
            number = _field(segment, 1) or str(len(observations) + 1)
            where = f"OBX {number}"
            collected = parse_dtm(_field(segment, 14), default_offset, f"{where}-14")
            collected = collected or obr_collected
            code, code_text, coding_system = _identifier(segment)
            if not code:
                raise Refused(f"{where}-3 (observation identifier) is empty")
            status = _field(segment, 11).upper()
            if not status:
                raise Refused(f"{where}-11 (result status) is empty")
            if collected is None:
                raise Refused(f"{where}: no collection time (OBX-14 and OBR-7 are empty)")
            observations.append(
                Observation(
                    set_id=number,
                    filler_order=filler_order,
                    code=code,
                    code_text=code_text,
                    coding_system=coding_system,
                    sub_id=_field(segment, 4),
                    value=_obx_value(segment),
                    # OBX-6 is identifier^text^coding system: the text when no identifier.
                    unit=_field(segment, 6, 1, 1) or _field(segment, 6, 1, 2),
                    reference_range=_field(segment, 7),
                    status=status,
                    collected_at=collected[0],
                    collected_has_time=collected[1],
                )
            )
        noting = kind == "OBX" or (kind == "NTE" and noting)
    if not observations:
        raise Refused("the message has no OBX segment")
    return replace(
        oru,
        mrn=mrn,
        assigning_authority=authority,
        patient_name=name,
        birth_date=birth_date,
        sex=sex if sex in SEX_SENT else "",
        observations=observations,
        medical_record_numbers=records,
    )


_NAMED_LOINC = ("LN", "LOINC")  # OBX-3.3 (or .6) naming LOINC
LOINC_SYSTEMS = (*_NAMED_LOINC, "")  # a first identifier with no system is taken as LOINC


def _identifier(segment: Any) -> tuple[str, str, str]:
    """OBX-3 (code, text, coding system): the LOINC one when the laboratory sends its own code
    first and LOINC as the alternate identifier (components 4 to 6)."""
    code, text, system = (_field(segment, 3, 1, n) for n in (1, 2, 3))
    alternate, alternate_text, alternate_system = (_field(segment, 3, 1, n) for n in (4, 5, 6))
    # A first code with no system is LOINC only when it is a LOINC code alpcare maps: labs
    # often leave their own code's system blank, and the alternate then says LN.
    first_is_loinc = system.upper() in _NAMED_LOINC or (not system and code in loinc_table())
    if not first_is_loinc and alternate and alternate_system.upper() in _NAMED_LOINC:
        return alternate, alternate_text, alternate_system
    return code, text, system


def _note(message: Any, segment: Any) -> str:
    """NTE-3 (formatted text, repeatable) as plain text: escapes undone, a line per repeat."""
    try:
        repeats = [str(repeat) for repeat in segment(3)] if len(segment) > 3 else []
    except (IndexError, TypeError):
        repeats = []
    text = "\n".join(message.unescape(repeat) for repeat in repeats)
    return "\n".join(line.strip() for line in text.replace("\r", "\n").splitlines()).strip()


def _obx_value(segment: Any) -> str:
    """OBX-5 as text. A structured numeric (OBX-2 ``SN``: comparator^number^separator^number)
    is its number when exact (``^412``, ``=^412``); otherwise it is kept as written (``>1000``,
    ``1^:^128``), which is not a number and so waits in the inbox with that reason."""
    if _field(segment, 2).upper() != "SN":
        return _field(segment, 5)
    comparator, number, separator, second = (_field(segment, 5, 1, n) for n in (1, 2, 3, 4))
    if comparator in ("", "=") and not separator and not second:
        return number
    return f"{comparator}{number}{separator}{second}"


# PID-8 administrative sex (HL7 table 0001) that names the case's sex; the others (O, U, A, N)
# say nothing to check.
SEX_SENT: Final = {"F": "female", "M": "male"}


def birth_date_sent(value: str) -> str:
    """PID-7 as far as it goes (DTM: YYYY, YYYYMM or YYYYMMDD, then any time): the digits of
    the date it names, or "" when it names none (blank or unreadable: nothing to check)."""
    digits = re.match(r"\d*", value, re.ASCII)
    date_digits = digits.group()[:8] if digits else ""
    if len(date_digits) not in (4, 6, 8):
        return ""
    try:  # a month or a day that does not exist names no date
        datetime.strptime(date_digits, "%Y%m%d"[: len(date_digits) - 2])
    except ValueError:
        return ""
    return date_digits


def _patient_identifier(pid: Any) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    """PID-3: the first repetition typed MR (medical record number), else the first; and
    every repetition typed MR."""
    try:
        repetitions = len(pid(3)) if len(pid) > 3 else 0
    except (IndexError, TypeError):
        repetitions = 0
    typed_mr = [
        repeat for repeat in range(1, repetitions + 1) if _field(pid, 3, repeat, 5).upper() == "MR"
    ]
    chosen = typed_mr[0] if typed_mr else 1
    records = tuple((_field(pid, 3, repeat, 1), _field(pid, 3, repeat, 4)) for repeat in typed_mr)
    return _field(pid, 3, chosen, 1), _field(pid, 3, chosen, 4), records


# ---------------------------------------------------------------------------------------------
# Mapping to the case declaration.


def loinc_table() -> dict[str, tuple[str, tuple[str, ...]]]:
    """LOINC code -> (test, the units a result with that code may be reported in)."""
    table: dict[str, tuple[str, list[str]]] = {}
    for test in declaration.LAB_TESTS:
        for unit in test.units:
            loinc = unit.loinc or test.loinc
            if loinc:
                table.setdefault(loinc, (test.code, []))[1].append(unit.code)
    return {code: (test, tuple(units)) for code, (test, units) in table.items()}


def units_for(test: str, loinc: str = "") -> tuple[str, ...]:
    if loinc and loinc in loinc_table():
        return loinc_table()[loinc][1]
    return tuple(unit.code for unit in declaration.lab_test(test).units)


def _unit_key(unit: str) -> str:
    return unit.strip().replace("µ", "u").replace("μ", "u").casefold()


def map_unit(unit: str, allowed: tuple[str, ...]) -> str | None:
    """The declared unit code OBX-6 names (case-insensitive, µ = u), None when not allowed."""
    key = _unit_key(unit)
    return next((code for code in allowed if _unit_key(code) == key), None)


_NUMBER = r"(\d+(?:\.\d+)?)"
_RANGE = re.compile(rf"^{_NUMBER}\s*-\s*{_NUMBER}$", re.ASCII)
_BELOW = re.compile(rf"^<=?\s*{_NUMBER}$", re.ASCII)
_ABOVE = re.compile(rf"^>=?\s*{_NUMBER}$", re.ASCII)


def reference_limits(text: str) -> tuple[float | None, float | None]:
    """OBX-7 as (low, high): "40-129", "<129", ">8.8"; blank gives (None, None)."""
    text = text.strip()
    if not text:
        return None, None
    if match := _RANGE.match(text):
        return float(match.group(1)), float(match.group(2))
    if match := _BELOW.match(text):
        return None, float(match.group(1))
    if match := _ABOVE.match(text):
        return float(match.group(1)), None
    raise ValueError(f"reference range {text!r} is not understood (40-129, <129 or >8.8)")


# HL7 NM: an optional sign, ASCII digits and at most one decimal point (Python's float() would
# also take "1e3", "1_120", "inf" or other scripts' digits, none of which a laboratory sends).
_NM = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)", re.ASCII)


def numeric_value(text: str) -> float:
    if not _NM.fullmatch(text):
        raise ValueError(f"value {text!r} is not a number")
    value = float(text)
    if value < 0:
        raise ValueError(f"value {text!r} is not a finite non-negative number")
    return value


# ---------------------------------------------------------------------------------------------
# Acknowledgements.


def build_ack(raw: str, code: str, text: str = "") -> str:
    """The ACK for a message (MSA-1 ``code``, MSA-3 ``text``), as HL7 text ending in CR."""
    try:
        message = hl7.parse(normalise(raw))
        ack = message.create_ack(code, message_id=_ack_id(), application="ALPCARE")
        if text:
            ack.segment("MSA").assign_field(_escape(text), 3)
        return str(ack)
    except Exception:
        # An MSH the hl7 package cannot answer (no MSH-9 trigger, no MSH-12), or none at all: a
        # minimal ACK naming the control ID when MSH-10 can be read.
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        control_id = _escape(header(raw)[1])
        return (
            f"MSH|^~\\&|ALPCARE||||{stamp}||ACK|{_ack_id()}|P|2.5.1\r"
            f"MSA|{code}|{control_id}|{_escape(text)}\r"
        )


def header(raw: str) -> tuple[str, str]:
    """MSH-4 and MSH-10 of a message refused while being read ("" where they cannot be)."""
    try:
        msh = hl7.parse(normalise(raw)).segment("MSH")
        return str(msh.extract_field(1, 4, 1, 1)), str(msh.extract_field(1, 10))
    except Exception:
        return "", ""


def _escape(text: str) -> str:
    for char, escaped in (
        ("\\", "\\E\\"),
        ("|", "\\F\\"),
        ("^", "\\S\\"),
        ("&", "\\T\\"),
        ("~", "\\R\\"),
    ):
        text = text.replace(char, escaped)
    return text.replace("\r", " ").replace("\n", " ")[:400]


def _ack_id() -> str:
    return hl7.generate_message_control_id()
