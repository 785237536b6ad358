"""The HL7 v2 lab feed: every message stored raw before it is applied, each result applied
through services.py (so follow-ups, the snapshot and the worklist refresh as for a typed
result) or parked in the unmatched inbox; the ACK says which (AA, AE with the reason, AR).

The listener (``hl7_listen``), the file import (``import_hl7``) and ``POST /api/v1/hl7`` all
call ``receive``.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import date, time
from typing import Any, Final

from django.db import IntegrityError, transaction
from django.utils import timezone

from pathways import engine
from pathways.feed_models import Hl7Feed, Hl7LocalCode, Hl7Message, Hl7Result
from pathways.interop import hl7v2
from pathways.models import Clinic, LabResult, Patient
from pathways.services import (
    DuplicateResult,
    history_user,
    patient_change_result,
    patient_record_result,
    patient_remove_result,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    code: str  # MSA-1: AA, AE or AR
    text: str  # MSA-3
    ack: str  # the ACK message, HL7 text
    message: Hl7Message | None
    duplicate: bool = False


def _answer(raw: str, code: str, text: str, message: Hl7Message | None, **kw: Any) -> Outcome:
    return Outcome(code, text, hl7v2.build_ack(raw, code, text), message, **kw)


# What became of a message's results, in its ACK (MSA-3): every result counted once.
_ACK_STATES = (
    (Hl7Result.State.APPLIED, "stored"),
    (Hl7Result.State.UNMATCHED, "in the unmatched inbox"),
    (Hl7Result.State.WITHDRAWN, "withdrawn"),
    (Hl7Result.State.NOT_STORED, "not stored (status not final)"),
)


def receive(
    raw: str,
    *,
    via: str,
    clinic: Clinic | None = None,
    user: Any = None,
    user_clinics: set[int] | None = None,
) -> Outcome:
    """Store one message, apply it, and say how to acknowledge it.

    ``clinic`` overrides the MSH-4 mapping (``import_hl7 --clinic``); ``user`` is the author of
    the writes (else the feed's service user); ``user_clinics`` limits the clinics a message may
    write to (an API token's user).
    """
    if "\x00" in raw:  # not HL7 text, and no database stores it as text: kept visibly marked
        raw = raw.replace("\x00", "\ufffd")
        return _reject(raw, via, "the message contains NUL characters")
    try:
        oru = hl7v2.parse_message(raw)
    except hl7v2.Unparseable as error:
        return _reject(raw, via, str(error))
    except hl7v2.Rejected as error:
        return _refuse(raw, via, str(error), *hl7v2.header(raw), code="AR")
    except hl7v2.Refused as error:
        return _refuse(raw, via, str(error), *hl7v2.header(raw))
    problem = _overlong(oru) or _collected_after_today(oru)
    if problem:
        return _refuse(raw, via, problem, oru.sending_facility, oru.control_id)

    feed = Hl7Feed.objects.filter(sending_facility=oru.sending_facility).first()
    if clinic is None:
        if feed is None or not feed.enabled:
            state = "disabled" if feed else "not configured"
            reason = f"MSH-4: sending facility {oru.sending_facility} is {state}"
            return _refuse(raw, via, reason, oru.sending_facility, oru.control_id)
        clinic = feed.clinic
    if user_clinics is not None and clinic.pk not in user_clinics:
        reason = f"MSH-4: sending facility {oru.sending_facility} feeds a clinic you are not in"
        return _refuse(raw, via, reason, oru.sending_facility, oru.control_id)
    # The feed's service user and assigning authority are its own clinic's: a message imported
    # for another clinic (import_hl7 --clinic) is recorded as nobody's rather than theirs.
    own_feed = feed if feed and feed.clinic_id == clinic.pk else None
    author = user if user is not None else (own_feed.service_user if own_feed else None)
    authority = own_feed.assigning_authority if own_feed else ""
    if authority:
        oru = oru.issued_by(authority)
        if problem := _overlong(oru):  # the MRN that authority issued, checked as the first
            return _refuse(raw, via, problem, oru.sending_facility, oru.control_id)

    stored, duplicate = _store_raw(oru, via, clinic)
    if duplicate:
        text = f"duplicate of message {oru.control_id}, already stored"
        return _answer(raw, "AA", text, stored, duplicate=True)
    try:
        # The listener and import_hl7 have no request: the history names the author too.
        with history_user(author), transaction.atomic():
            message = Hl7Message.objects.select_for_update().get(pk=stored.pk)
            if message.status == Hl7Message.Status.APPLIED:  # by a copy that held the lock
                text = f"duplicate of message {oru.control_id}, already stored"
                return _answer(raw, "AA", text, message, duplicate=True)
            states: Counter[str] = Counter()
            for observation in oru.observations:
                result = _result_row(message, clinic, oru, observation)
                apply_result(result, user=author, authority=authority)
                states[result.state] += 1
            text = f"{len(oru.observations)} result(s): " + ", ".join(
                f"{states[state]} {words}" for state, words in _ACK_STATES if states[state]
            )
            message.status = Hl7Message.Status.APPLIED
            message.ack_code, message.ack_text = "AA", text
            message.save()
    except Exception as error:  # nothing half-applied: the transaction rolled back
        logger.exception("HL7 message %s could not be applied", oru.control_id)
        reason = f"could not be stored ({type(error).__name__}); it is kept, resend to retry"
        Hl7Message.objects.filter(pk=stored.pk).update(
            status=Hl7Message.Status.REFUSED, ack_code="AE", ack_text=reason
        )
        return _answer(raw, "AE", reason, stored)
    return _answer(raw, "AA", text, message)


# The stored fields that identify a message, a patient or a result, with their HL7 fields. One
# longer than its column is refused rather than cut: a cut control ID could be another message's
# (and the results taken for a resend), a cut MRN another patient's, a cut value another value.
# The name and the code's text are shown only; those are cut to fit.
_MESSAGE_FIELDS = (
    (Hl7Message, "sending_facility", "MSH-4"),
    (Hl7Message, "control_id", "MSH-10"),
    (Hl7Result, "mrn", "PID-3"),
    (Hl7Result, "assigning_authority", "PID-3.4"),
)
_OBSERVATION_FIELDS = (
    ("set_id", "OBX-1"),
    ("filler_order", "OBR-3"),
    ("code", "OBX-3.1"),
    ("coding_system", "OBX-3.3"),
    ("sub_id", "OBX-4"),
    ("value", "OBX-5"),
    ("unit", "OBX-6"),
    ("reference_range", "OBX-7"),
    ("status", "OBX-11"),
)


def _length(model: type[Any], name: str) -> int:
    return int(model._meta.get_field(name).max_length)


def _fits(model: type[Any], name: str, text: str) -> bool:
    return len(text) <= _length(model, name)


def _overlong(oru: hl7v2.OruMessage) -> str:
    """Why the message is refused for a field too long to store, or ""."""
    for model, name, where in _MESSAGE_FIELDS:
        if not _fits(model, name, getattr(oru, name)):
            return f"{where} is longer than {_length(model, name)} characters"
    for observation in oru.observations:
        for name, where in _OBSERVATION_FIELDS:
            if not _fits(Hl7Result, name, getattr(observation, name)):
                limit = _length(Hl7Result, name)
                return f"OBX {observation.set_id[:20]}: {where} is longer than {limit} characters"
    return ""


def _collected_after_today(oru: hl7v2.OruMessage) -> str:
    """A result collected after today (a clock or time zone wrong at the sender): refused, as
    a typed one is, rather than stored as the latest result of a case no one could then save."""
    today = timezone.localdate()
    for observation in oru.observations:
        assert observation.collected_at is not None  # parse_message refuses a result without
        on, _at = hl7v2.local_collection(observation.collected_at, observation.collected_has_time)
        if on > today:
            return (
                f"OBX {observation.set_id[:20]}: collected {on.isoformat()}, after today "
                f"({today.isoformat()}): check the sending system's clock and time zone"
            )
    return ""


def _reject(raw: str, via: str, reason: str) -> Outcome:
    """Keep a message that is not HL7 (AR), for the record."""
    stored = Hl7Message.objects.create(
        raw=raw[:1_000_000], received_via=via, status=Hl7Message.Status.REJECTED,
        ack_code="AR", ack_text=reason[:500],
    )  # fmt: skip
    return _answer(raw, "AR", reason, stored)


def _refuse(
    raw: str, via: str, reason: str, facility: str, control_id: str, *, code: str = "AE"
) -> Outcome:
    """Keep a message that cannot be stored as results (AE, or AR for one of a type, version
    or processing ID not accepted), for the record."""
    values = {"raw": raw, "received_via": via, "status": Hl7Message.Status.REFUSED,
              "ack_code": code, "ack_text": reason[:500]}  # fmt: skip
    message: Hl7Message | None
    # Its key is MSH-4 and MSH-10; one too long to store is a row of its own (cut, the key could
    # be another message's: counted as its resend, or overwriting its record).
    fits = _fits(Hl7Message, "sending_facility", facility)
    if control_id and fits and _fits(Hl7Message, "control_id", control_id):
        key: dict[str, Any] = {"sending_facility": facility, "control_id": control_id}
        with transaction.atomic():  # a copy being applied meanwhile holds the row: wait for it
            message, created = _locked_or_created(key, values)
            if created:
                pass
            elif message.status == Hl7Message.Status.APPLIED:
                # Applied before, refused now (say, the feed was disabled): the stored copy stays.
                message.resent += 1
                message.save(update_fields=["resent"])
            else:  # refused or failed before: the record of this copy
                for name, value in values.items():
                    setattr(message, name, value)
                message.save(update_fields=list(values))
    else:
        message = Hl7Message.objects.create(sending_facility=facility[:100], **values)
    return _answer(raw, code, reason, message)


def _locked_or_created(key: dict[str, Any], values: dict[str, Any]) -> tuple[Hl7Message, bool]:
    """The message row of ``key``, locked, or created with ``values`` (True) when there is none.
    A copy inserting it at the same moment wins: its row is read once it commits."""
    message = Hl7Message.objects.select_for_update().filter(**key).first()
    if message is not None:
        return message, False
    try:
        with transaction.atomic():
            return Hl7Message.objects.create(**key, **values), True
    except IntegrityError:
        return Hl7Message.objects.select_for_update().get(**key), False


def _store_raw(oru: hl7v2.OruMessage, via: str, clinic: Clinic) -> tuple[Hl7Message, bool]:
    """The message row, committed before anything is applied; True when it was applied before.

    A resend of one not applied (refused, or failed) is counted and received afresh. A copy
    arriving while another is being applied waits here for its lock, as does one that loses the
    race to insert the row (``_locked_or_created``): it is then a resend like any other."""
    key = {"sending_facility": oru.sending_facility, "control_id": oru.control_id}
    with transaction.atomic():
        row, created = _locked_or_created(
            key, {"raw": oru.raw, "received_via": via, "clinic": clinic}
        )
        if created:
            return row, False
        row.resent += 1
        if row.status == Hl7Message.Status.APPLIED:
            row.save(update_fields=["resent"])
            return row, True
        row.raw, row.clinic, row.received_via = oru.raw, clinic, via
        row.status = Hl7Message.Status.RECEIVED
        row.save(update_fields=["raw", "clinic", "received_via", "status", "resent"])
        return row, False


def _result_row(
    message: Hl7Message, clinic: Clinic, oru: hl7v2.OruMessage, obs: hl7v2.Observation
) -> Hl7Result:
    assert obs.collected_at is not None
    return Hl7Result(
        message=message,
        clinic=clinic,
        set_id=obs.set_id,  # these fit: _overlong refused the message otherwise
        mrn=oru.mrn,
        assigning_authority=oru.assigning_authority,
        patient_name=oru.patient_name[:200],
        birth_date_sent=oru.birth_date,
        sex_sent=oru.sex,
        filler_order=obs.filler_order,
        code=obs.code,
        coding_system=obs.coding_system,
        code_text=obs.code_text[:200],
        sub_id=obs.sub_id,
        value=obs.value,
        unit=obs.unit,
        reference_range=obs.reference_range,
        comment=obs.comment,
        status=obs.status,
        collected_at=obs.collected_at,
        collected_has_time=obs.collected_has_time,
    )


# ---------------------------------------------------------------------------------------------
# Applying one result (also from the inbox once it is matched).


class _Unmatched(Exception):
    pass


def _match_patient_and_test(result: Hl7Result, authority: str) -> tuple[Patient, str]:
    """The result's patient and test (all a withdrawal needs)."""
    if result.patient_id is None:
        if authority and result.assigning_authority != authority:
            raise _Unmatched(
                f"PID-3: MRN {result.mrn} is issued by {result.assigning_authority or '(none)'}, "
                f"this feed expects {authority}"
            )
        patient = Patient.objects.filter(clinic=result.clinic, mrn=result.mrn).first()
        if patient is None:
            raise _Unmatched(f"PID-3: no patient with MRN {result.mrn} in {result.clinic}")
        if mismatch := _other_person(result, patient):
            raise _Unmatched(mismatch)
        result.patient = patient
    if not result.test:
        table = hl7v2.loinc_table()
        local = Hl7LocalCode.objects.filter(clinic=result.clinic, code=result.code).first()
        if _loinc(result) in table:
            result.test = table[_loinc(result)][0]
        elif local is not None:
            result.test = local.test
        else:
            raise _Unmatched(f"OBX-3: code {result.code} ({result.code_text}) is not mapped")
    assert result.patient is not None
    return result.patient, result.test


def _other_person(result: Hl7Result, patient: Patient) -> str:
    """Why the result may be another person's than the patient its MRN found ("" when the birth
    date and sex it was sent with agree, or were not sent): a wrong MRN on the order must not
    put another person's value into this patient's advice. Named by a clinician in the inbox,
    the patient is theirs to choose."""
    check = "check whose result it is, then match it to the patient here"
    sent = result.birth_date_sent
    if sent and patient.birth_date.strftime("%Y%m%d")[: len(sent)] != sent:
        born = patient.birth_date.isoformat()
        return (
            f"PID-7: birth date {result.birth_date_shown} is not {patient.mrn}'s ({born}): {check}"
        )
    sex = hl7v2.SEX_SENT.get(result.sex_sent)
    if sex and sex != patient.sex:
        return f"PID-8: sex {result.sex_sent} is not {patient.mrn}'s ({patient.sex}): {check}"
    return ""


def _loinc(result: Hl7Result) -> str:
    return result.code if result.coding_system.upper() in hl7v2.LOINC_SYSTEMS else ""


def _match(
    result: Hl7Result, authority: str
) -> tuple[Patient, str, str, float, float | None, float | None]:
    """The result's patient, test, unit, value and the lab's limits."""
    patient, test = _match_patient_and_test(result, authority)
    allowed = hl7v2.units_for(test, _loinc(result))
    if result.unit_matched and result.unit_matched not in allowed:  # chosen in the inbox
        chosen, result.unit_matched = result.unit_matched, ""
        raise _Unmatched(f"unit {chosen} (as matched) is not one of {', '.join(allowed)}")
    unit = result.unit_matched or hl7v2.map_unit(result.unit, allowed)
    if unit is None:
        raise _Unmatched(
            f"OBX-6: unit {result.unit or '(blank)'} is not one of {', '.join(allowed)}"
        )
    result.unit_matched = unit
    try:
        value = hl7v2.numeric_value(result.value)
        low, high = hl7v2.reference_limits(result.reference_range)
    except ValueError as error:
        raise _Unmatched(f"OBX-5/OBX-7: {error}") from error
    # The case's own rules for a result (bounds, limits, a required upper limit), as for a
    # result typed or imported, in the segment's words.
    if problems := engine.lab_problems(test, unit, value, low, high):
        first = problems[0]
        raise _Unmatched(f"{_WHERE[str(first.location[-1])]}: {first.message}")
    return patient, test, unit, value, low, high


# Where a case's lab field comes from in an ORU^R01 result.
_WHERE = {
    "value": "OBX-5 (value)",
    "unit": "OBX-6 (unit)",
    "reference_low": "OBX-7 (reference_low, the lower limit)",
    "reference_high": "OBX-7 (reference_high, the upper limit)",
}


def _earlier(result: Hl7Result, test: str, on: date, at: time | None) -> LabResult | None:
    """The stored result a correction or withdrawal refers to."""
    if result.filler_order:
        prior = (
            Hl7Result.objects.filter(
                patient=result.patient, filler_order=result.filler_order, code=result.code,
                sub_id=result.sub_id, state=Hl7Result.State.APPLIED, lab_result__isnull=False,
            ).exclude(pk=result.pk).order_by("-pk").first()
        )  # fmt: skip
        if prior is not None:
            return prior.lab_result
    assert result.patient is not None
    return _stored_at(result.patient, test, on, at)


def _stored_at(patient: Patient, test: str, on: date, at: time | None) -> LabResult | None:
    """The patient's stored result of ``test`` collected at that date and time (one at most)."""
    return LabResult.objects.filter(
        patient=patient, test=test, collected_on=on, collected_time=at
    ).first()


def _preliminary(result: Hl7Result) -> Hl7Result | None:
    """The preliminary result (P) a status change to final (U) without its value refers to:
    the same patient identifier, order, code and sub-ID, and the same collection time."""
    return (
        Hl7Result.objects.filter(
            clinic=result.clinic, mrn=result.mrn, filler_order=result.filler_order,
            code=result.code, sub_id=result.sub_id, collected_at=result.collected_at,
            status="P",
        ).exclude(pk=result.pk).exclude(value="").order_by("-pk").first()
    )  # fmt: skip


def _same_result(patient: Patient, lab: engine.Lab) -> LabResult | None:
    """The stored result a final result resent is: its value within 0.5 % of the stored one
    after conversion, in any unit (spec §1: then they are one result, "as a lab feed
    resending a result must not fail a case"), as the FHIR import reads one."""
    stored = _stored_at(patient, lab.test, lab.collected_on, lab.collected_time)
    if stored is None:
        return None
    if engine.values_agree(lab.test, (stored.value, stored.unit), (lab.value, lab.unit)):
        return stored
    return None


# OBX-11 (HL7 Table 0085) statuses acted on: final, corrected, and final without the value
# sent again (U: "results status change to final without retransmitting results already sent
# as preliminary"); and the withdrawals: X "results cannot be obtained", D "deletes the OBX
# record", W "post original as wrong, e.g. transmitted for wrong patient". A withdrawal needs
# no value: only the patient, the test and the result it withdraws.
WITHDRAWALS: Final = ("X", "D", "W")
ACTED_ON: Final = ("F", "C", "U", *WITHDRAWALS)


def status_note(status: str) -> str:
    """What applying a parked result does, for an OBX-11 status other than F (final): said in
    the inbox before it is matched, since a withdrawal there has no value to show."""
    if status == "F":
        return ""
    if status in WITHDRAWALS:
        return f"Withdrawal (OBX-11 {status}): applying it removes the stored result"
    if status == "C":
        return "Correction (OBX-11 C): applying it replaces the stored result"
    if status == "U":
        return "Final (OBX-11 U): the preliminary result made final"
    return f"OBX-11 {status}"


@transaction.atomic
def apply_result(result: Hl7Result, *, user: Any, authority: str = "") -> Hl7Result:
    """Store one result on its patient (or park it in the inbox with the reason); saves it."""
    if result.status not in ACTED_ON:
        result.state = Hl7Result.State.NOT_STORED
        result.reason = (
            f"OBX-11: status {result.status} is not final; only {', '.join(ACTED_ON)} are acted on"
        )
        result.save()
        return result
    if result.status == "U" and not result.value.strip():
        preliminary = _preliminary(result)
        if preliminary is None:
            result.state = Hl7Result.State.NOT_STORED
            result.reason = (
                "OBX-11: status U (final as sent before) but no preliminary result of this "
                "order, code and time was received: resend it as final (F)"
            )
            result.save()
            return result
        result.value, result.unit = preliminary.value, preliminary.unit
        result.reference_range = preliminary.reference_range
    withdrawal = result.status in WITHDRAWALS
    withdrew_waiting = withdrawal and _withdraw_waiting(result)
    try:
        if withdrawal:
            patient, test = _match_patient_and_test(result, authority)
        else:
            patient, test, unit, value, low, high = _match(result, authority)
    except _Unmatched as unmatched:
        if withdrew_waiting:  # what it withdraws was never stored: nothing else to do
            result.state, result.reason = Hl7Result.State.WITHDRAWN, WITHDREW_WAITING
            result.applied_at = timezone.now()
        else:
            result.state, result.reason = Hl7Result.State.UNMATCHED, str(unmatched)[:300]
        result.save()
        return result
    on, at = hl7v2.local_collection(result.collected_at, result.collected_has_time)
    if withdrawal:
        return _withdraw(result, patient, test, on, at, withdrew_waiting=withdrew_waiting)
    if on < patient.birth_date:  # as a typed or imported result is refused (spec §1)
        result.state = Hl7Result.State.UNMATCHED
        result.reason = (
            f"OBX-14/OBR-7: collected {on.isoformat()}, before {patient.mrn}'s birth date "
            f"({patient.birth_date.isoformat()}): check the patient or the date"
        )[:300]
        result.save()
        return result
    lab = engine.Lab.create(test, value, unit, on, at, high, low)
    version = (
        Patient.objects.select_for_update().values_list("version", flat=True).get(pk=patient.pk)
    )
    source = LabResult.Source.IMPORTED
    result.save()  # a primary key, so that _earlier can exclude this row
    earlier = _earlier(result, test, on, at) if result.status == "C" else None
    replaced = _applied_rows(result, earlier)
    result.reason = ""
    if earlier is not None:
        try:
            result.lab_result = patient_change_result(
                patient=patient, result=earlier, user=user, lab=lab, expected_version=version,
                source=source, lab_comment=result.comment,
                corrected_by_lab=True,
            )  # fmt: skip
            result.state = Hl7Result.State.APPLIED
        except DuplicateResult as duplicate:  # the corrected time is another result's
            result.state = Hl7Result.State.UNMATCHED
            result.reason = f"{duplicate} The correction would put this result on it."[:300]
            replaced = []
    else:
        try:
            result.lab_result = patient_record_result(
                patient=patient, user=user, lab=lab, expected_version=version, source=source,
                lab_comment=result.comment,
            )  # fmt: skip
            result.state = Hl7Result.State.APPLIED
        except DuplicateResult as duplicate:
            same = _same_result(patient, lab)
            if same is None:
                result.state = Hl7Result.State.UNMATCHED
                result.reason = f"{duplicate} with another value: send a correction (C)"[:300]
            else:
                result.lab_result, result.state = same, Hl7Result.State.APPLIED
                result.reason = "the same value was already recorded"
    for previous in replaced:  # the earlier message's row says what became of it
        previous.state = Hl7Result.State.CORRECTED
        previous.save()
    if result.state != Hl7Result.State.UNMATCHED:
        result.applied_at = timezone.now()
    result.save()
    return result


def _applied_rows(result: Hl7Result, earlier: LabResult | None) -> list[Hl7Result]:
    """The earlier messages' rows that stored the result a correction or withdrawal replaces."""
    if earlier is None:
        return []
    return list(
        Hl7Result.objects.filter(lab_result=earlier, state=Hl7Result.State.APPLIED).exclude(
            pk=result.pk
        )
    )


WITHDREW_WAITING = "the result was waiting in the inbox, never stored: withdrawn there"


def _withdraw_waiting(result: Hl7Result) -> bool:
    """X, D or W of a result waiting in the inbox (or dismissed from it, and so able to be put
    back): withdrawn there, so that no one matches and stores what the laboratory withdrew.
    The same patient identifier, order, code, sub-ID and collection time, as for U."""
    if result.pk is None:  # a new message's result: a key, for the rows it withdraws to name it
        result.save()
    waiting = list(
        Hl7Result.objects.select_for_update().filter(
            clinic=result.clinic, mrn=result.mrn, assigning_authority=result.assigning_authority,
            filler_order=result.filler_order, code=result.code, sub_id=result.sub_id,
            collected_at=result.collected_at,
            state__in=(Hl7Result.State.UNMATCHED, Hl7Result.State.DISMISSED),
            pk__lt=result.pk,  # sent before it: one sent after is the laboratory's new word
        ).exclude(status__in=WITHDRAWALS)
    )  # fmt: skip
    for row in waiting:
        row.state, row.withdrawn_by = Hl7Result.State.WITHDRAWN, result
        row.reason = (
            f"OBX-11 {result.status}: withdrawn by the laboratory (message "
            f"{result.message.control_id}) before it was stored"
        )[:300]
        row.save()
    return bool(waiting)


def _withdraw(
    result: Hl7Result,
    patient: Patient,
    test: str,
    on: date,
    at: time | None,
    *,
    withdrew_waiting: bool,
) -> Hl7Result:
    """X, D or W: the stored result it refers to is removed (its value, unit and limits are
    not needed, and usually not sent)."""
    version = (
        Patient.objects.select_for_update().values_list("version", flat=True).get(pk=patient.pk)
    )
    result.save()  # a primary key, so that _earlier can exclude this row
    earlier = _earlier(result, test, on, at)
    replaced = _applied_rows(result, earlier)
    result.state = Hl7Result.State.WITHDRAWN
    if earlier is not None:
        result.reason = ""
        patient_remove_result(patient=patient, result=earlier, expected_version=version)
    else:
        result.reason = WITHDREW_WAITING if withdrew_waiting else "nothing stored to withdraw"
    for previous in replaced:
        previous.state, previous.lab_result = Hl7Result.State.WITHDRAWN, None  # deleted above
        previous.withdrawn_by = result
        previous.save()
    result.applied_at = timezone.now()
    result.save()
    return result


@transaction.atomic
def inbox_match(
    result: Hl7Result,
    *,
    user: Any,
    patient: Patient | None = None,
    test: str = "",
    unit: str = "",
) -> Hl7Result:
    """Match a parked result to a patient, a test (remembered as the clinic's local code) or a
    unit, then apply it: one transaction. A match that leaves it unmatched changes nothing but
    the reason shown (no local code remembered, no patient or test kept on the row)."""
    result = Hl7Result.objects.select_for_update().get(pk=result.pk)
    if result.state != Hl7Result.State.UNMATCHED:
        raise ValueError("this result is no longer in the inbox")
    if patient is not None and patient.clinic_id != result.clinic_id:
        raise ValueError("patient: not a patient of this result's clinic")
    loinc = _loinc(result)
    table = hl7v2.loinc_table()
    if test and loinc in table and table[loinc][0] != test:
        raise ValueError(
            f"test: {result.code} is the LOINC code of {table[loinc][0]}, not of {test}"
        )
    # Named by the clinician, the patient is theirs to choose; otherwise the MRN must be one the
    # feed's assigning authority issued, as on arrival.
    feed = Hl7Feed.objects.filter(sending_facility=result.message.sending_facility).first()
    authority = feed.assigning_authority if feed and feed.clinic_id == result.clinic_id else ""
    attempt = transaction.savepoint()
    if patient is not None:
        result.patient = patient
        authority = ""
    if test:
        result.test = test
        if loinc not in table:
            Hl7LocalCode.objects.update_or_create(
                clinic=result.clinic, code=result.code, defaults={"test": test}
            )
    if unit:
        result.unit_matched = unit
    applied = apply_result(result, user=user, authority=authority)
    if applied.state != Hl7Result.State.UNMATCHED:
        transaction.savepoint_commit(attempt)
        return applied
    reason = applied.reason
    transaction.savepoint_rollback(attempt)
    refused = Hl7Result.objects.get(pk=result.pk)
    refused.reason = reason
    refused.save(update_fields=["reason"])
    return refused


DISMISSAL_NOTE_LENGTH = _length(Hl7Result, "dismissal_note")


@transaction.atomic
def inbox_dismiss(result: Hl7Result, *, user: Any, note: str) -> Hl7Result:
    """Clear a parked result from the inbox without storing it (a patient alpcare does not
    follow, a value the laboratory will resend): who, when and why are kept, with history."""
    note = note.strip()
    if not note:
        raise ValueError("note: say why the result is not stored (for the record)")
    if len(note) > DISMISSAL_NOTE_LENGTH:
        raise ValueError(f"note: at most {DISMISSAL_NOTE_LENGTH} characters")
    result = Hl7Result.objects.select_for_update().get(pk=result.pk)
    if result.state != Hl7Result.State.UNMATCHED:
        raise ValueError("this result is no longer in the inbox")
    result.state = Hl7Result.State.DISMISSED
    result.dismissed_by, result.dismissed_at = user, timezone.now()
    result.dismissal_note = note
    result.save()
    return result


@transaction.atomic
def inbox_restore(result: Hl7Result) -> Hl7Result:
    """Undo a dismissal: the result is back in the inbox (the history keeps the dismissal)."""
    result = Hl7Result.objects.select_for_update().get(pk=result.pk)
    if result.state != Hl7Result.State.DISMISSED:
        raise ValueError("this result is no longer among the dismissed ones")
    result.state = Hl7Result.State.UNMATCHED
    result.dismissed_by, result.dismissed_at, result.dismissal_note = None, None, ""
    result.save()
    return result
