"""The HL7 v2 lab feed: parsing and mapping, storing with nothing lost, corrections and
withdrawals, resends, the unmatched inbox, and the ACKs."""

from __future__ import annotations

from datetime import date, time
from typing import Any

import pytest
from django.contrib.auth.models import User

from pathways import feed
from pathways.feed_models import Hl7Feed, Hl7LocalCode, Hl7Message, Hl7Result
from pathways.interop import hl7v2
from pathways.models import Clinic, LabResult, Patient
from tests.factories import stored_patient


def oru(
    control_id: str = "MSG0001",
    *,
    facility: str = "NORTHLAB",
    mrn: str = "N100",
    authority: str = "NORTHHOSP",
    code: str = "6768-6^Alkaline phosphatase^LN",
    value: str = "412",
    unit: str = "U/L",
    reference: str = "40-129",
    status: str = "F",
    collected: str = "20261101081500+0100",
    filler: str = "F-77",
    version: str = "2.5.1",
    sub_id: str = "1",
) -> str:
    return (
        "\r".join(
            [
                f"MSH|^~\\&|LIS|{facility}|ALPCARE|NORTH|20261101090000+0100||ORU^R01^ORU_R01|"
                f"{control_id}|P|{version}",
                f"PID|1||{mrn}^^^{authority}^MR~555-22^^^SSA^SS||Ellis^Margaret||19500302|F",
                f"OBR|1|P-1|{filler}|24326-1^Panel^LN|||{collected}",
                f"OBX|1|NM|{code}|{sub_id}|{value}|{unit}|{reference}|H|||{status}|||{collected}",
            ]
        )
        + "\r"
    )


@pytest.fixture
def lab_user(db: Any) -> User:
    return User.objects.create_user("northlab-feed")


@pytest.fixture
def north_feed(north_clinic: Clinic, lab_user: User) -> Hl7Feed:
    return Hl7Feed.objects.create(
        sending_facility="NORTHLAB",
        clinic=north_clinic,
        service_user=lab_user,
        assigning_authority="NORTHHOSP",
    )


@pytest.fixture
def patient(north_clinic: Clinic, alice: User) -> Patient:
    return stored_patient(north_clinic, alice, mrn="N100")


# --- parser and mapping (no database) ---------------------------------------------------------


def test_parse_reads_header_patient_and_observation() -> None:
    message = hl7v2.parse_message(oru().replace("\r", "\n"))
    assert (message.control_id, message.sending_facility, message.version) == (
        "MSG0001",
        "NORTHLAB",
        "2.5.1",
    )
    assert (message.mrn, message.assigning_authority) == ("N100", "NORTHHOSP")
    [obs] = message.observations
    assert (obs.code, obs.coding_system, obs.value, obs.unit) == ("6768-6", "LN", "412", "U/L")
    assert (obs.filler_order, obs.status, obs.sub_id, obs.reference_range) == (
        "F-77",
        "F",
        "1",
        "40-129",
    )
    assert obs.collected_at is not None
    assert str(obs.collected_at.utcoffset()) == "1:00:00"


@pytest.mark.parametrize("version", ["2.3", "2.3.1", "2.4", "2.5", "2.5.1"])
def test_versions_2_3_to_2_5_1_are_read(version: str) -> None:
    assert hl7v2.parse_message(oru(version=version)).version == version


def test_the_mrn_repetition_typed_mr_is_chosen() -> None:
    text = oru().replace("N100^^^NORTHHOSP^MR~555-22^^^SSA^SS", "555-22^^^SSA^SS~N100^^^NH^MR")
    message = hl7v2.parse_message(text)
    assert (message.mrn, message.assigning_authority) == ("N100", "NH")


def test_obr_7_is_used_when_obx_14_is_blank_and_msh_offset_applies() -> None:
    text = oru(collected="").replace("|||\r", "|||202610300700\r", 1)
    [obs] = hl7v2.parse_message(text).observations
    assert obs.collected_at is not None
    assert obs.collected_at.isoformat() == "2026-10-30T07:00:00+01:00"


def test_collection_time_is_converted_to_the_site_time_zone(settings: Any) -> None:
    settings.TIME_ZONE = "UTC"
    [obs] = hl7v2.parse_message(oru(collected="20261101081500+0100")).observations
    assert obs.collected_at is not None
    assert hl7v2.local_collection(obs.collected_at, True) == (date(2026, 11, 1), time(7, 15))


@pytest.mark.parametrize(
    ("text", "limits"),
    [("40-129", (40.0, 129.0)), ("<129", (None, 129.0)), (">8.8", (8.8, None)), ("", (None, None))],
)
def test_reference_ranges(text: str, limits: tuple[float | None, float | None]) -> None:
    assert hl7v2.reference_limits(text) == limits


@pytest.mark.parametrize("text", ["1e3", "1_120", "inf", "nan", "\u0661\u0662\u0663", "12 5", "-4"])
def test_a_value_that_is_not_an_hl7_number_is_not_read_as_one(text: str) -> None:
    """OBX-5 of type NM: Python's float() took "1e3" as 1000 and "1_120" as 1120."""
    with pytest.raises(ValueError, match="is not a"):
        hl7v2.numeric_value(text)


@pytest.mark.parametrize(
    ("obx_5", "read"),
    [("^412", "412"), ("=^412", "412"), (">^1000", ">1000"), ("<^5", "<5"), ("1^:^128", "1:128")],
)
def test_a_structured_numeric_is_its_number_only_when_exact(obx_5: str, read: str) -> None:
    """OBX-2 SN: the first component (the comparator) was read as the value: "" for "^412"."""
    message = oru().replace("OBX|1|NM|", "OBX|1|SN|").replace("|412|U/L|", f"|{obx_5}|U/L|")
    assert hl7v2.parse_message(message).observations[0].value == read


@pytest.mark.parametrize(("text", "value"), [("412", 412), ("+8.5", 8.5), (".5", 0.5), ("40.", 40)])
def test_hl7_numbers_are_read(text: str, value: float) -> None:
    assert hl7v2.numeric_value(text) == value


@pytest.mark.parametrize("text", ["normal", "40-\u0661\u0662\u0669", "<\u0661\u0662\u0669"])
def test_a_reference_range_not_understood_is_an_error(text: str) -> None:
    with pytest.raises(ValueError, match="not understood"):
        hl7v2.reference_limits(text)


def test_loinc_table_derives_from_the_declaration() -> None:
    table = hl7v2.loinc_table()
    assert table["6768-6"][0] == "alp"
    assert table["17838-4"] == ("bone_alp", ("ug/L",))
    assert table["1777-2"] == ("bone_alp", ("U/L", "ukat/L"))
    assert table["2160-0"][0] == "creatinine"


@pytest.mark.parametrize(
    ("unit", "code"), [("u/l", "U/L"), ("µmol/l", "umol/L"), ("UMOL/L", "umol/L")]
)
def test_units_match_case_insensitively_with_micro_as_u(unit: str, code: str) -> None:
    assert hl7v2.map_unit(unit, ("U/L", "umol/L", "mg/dL")) == code


@pytest.mark.django_db
@pytest.mark.parametrize("unit", ["U/L^U/L^UCUM", "^U/L^UCUM"])
def test_a_unit_given_as_its_text_alone_is_read(
    north_feed: Hl7Feed, patient: Patient, unit: str
) -> None:
    """OBX-6 is a coded element (identifier^text^coding system): "^U/L^UCUM" names the unit in
    its text with no identifier, and was read as no unit (the result went to the inbox).
    Found by an audit."""
    assert feed.receive(oru(unit=unit), via="test").code == "AA"
    stored = LabResult.objects.get(patient=patient, collected_on=date(2026, 11, 1))
    assert (stored.value, stored.unit) == (412, "U/L")


def test_unknown_unit_does_not_match() -> None:
    assert hl7v2.map_unit("IU/L", ("U/L",)) is None


def test_not_hl7_is_unparseable_and_other_types_are_refused() -> None:
    with pytest.raises(hl7v2.Unparseable):
        hl7v2.parse_message("hello world")
    with pytest.raises(hl7v2.Refused, match="ADT\\^A01"):
        hl7v2.parse_message(oru().replace("ORU^R01^ORU_R01", "ADT^A01"))
    with pytest.raises(hl7v2.Refused, match="MSH-12"):
        hl7v2.parse_message(oru(version="2.7"))
    with pytest.raises(hl7v2.Refused, match="is not an HL7 date/time"):
        hl7v2.parse_message(oru(collected="2026-11-01"))
    arabic_indic = "".join(chr(0x0660 + int(digit)) for digit in "20261101")
    with pytest.raises(hl7v2.Refused, match="is not an HL7 date/time"):
        hl7v2.parse_message(oru(collected=arabic_indic))


# --- storing ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_final_result_is_stored_as_the_feed_user_and_reassesses(
    north_feed: Hl7Feed, patient: Patient, lab_user: User
) -> None:
    version = patient.version
    outcome = feed.receive(oru(), via="test")
    assert outcome.code == "AA"
    assert "MSA|AA|MSG0001" in outcome.ack
    stored = LabResult.objects.get(patient=patient, collected_on=date(2026, 11, 1))
    assert (stored.test, stored.value, stored.unit, stored.reference_high) == (
        "alp",
        412,
        "U/L",
        129,
    )
    assert stored.reference_low == 40  # OBX-7 "40-129": the lab's lower limit is kept too
    assert stored.collected_time == time(7, 15)  # 08:15+01:00 in UTC (the test site)
    assert stored.entered_by == lab_user and stored.source == LabResult.Source.IMPORTED
    patient.refresh_from_db()
    assert patient.version == version + 1
    assert patient.snapshot.alp_latest == 412
    message = Hl7Message.objects.get()
    assert message.raw.startswith("MSH|") and message.status == Hl7Message.Status.APPLIED


@pytest.mark.django_db
def test_a_resent_message_is_acknowledged_without_a_second_copy(
    north_feed: Hl7Feed, patient: Patient
) -> None:
    first = feed.receive(oru(), via="test")
    again = feed.receive(oru(), via="test")
    assert (first.code, again.code, again.duplicate) == ("AA", "AA", True)
    assert Hl7Message.objects.count() == 1 and Hl7Message.objects.get().resent == 1
    assert Hl7Result.objects.count() == 1
    assert LabResult.objects.filter(patient=patient, collected_on=date(2026, 11, 1)).count() == 1


@pytest.mark.django_db
def test_a_copy_that_arrived_while_the_first_was_applied_is_not_applied_again(
    north_feed: Hl7Feed, patient: Patient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sender resending after a timeout: the second copy found the first stored but not yet
    applied, waited for its lock, then applied every result a second time."""
    store_raw = feed._store_raw
    second_copy: list[Any] = []

    def second_copy_arrives_meanwhile(*args: Any) -> Any:
        if second_copy:
            return second_copy.pop()
        first = store_raw(*args)
        second_copy.append(store_raw(*args))  # read while the first is not applied yet
        return first

    monkeypatch.setattr(feed, "_store_raw", second_copy_arrives_meanwhile)
    first, second = feed.receive(oru("R1"), via="api"), feed.receive(oru("R1"), via="mllp")
    assert (first.code, second.code, second.duplicate) == ("AA", "AA", True)
    assert second.text == "duplicate of message R1, already stored"
    assert Hl7Result.objects.count() == 1
    assert Hl7Message.objects.get().resent == 1


def _failing_once(monkeypatch: pytest.MonkeyPatch, control_id: str) -> None:
    """The message is received once and fails to apply (AE, "resend to retry")."""
    apply_result = feed.apply_result

    def disk_full(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk full")

    monkeypatch.setattr(feed, "apply_result", disk_full)
    assert feed.receive(oru(control_id), via="api").code == "AE"
    monkeypatch.setattr(feed, "apply_result", apply_result)


@pytest.mark.django_db
def test_the_resend_of_a_message_that_failed_is_applied_and_counted(
    north_feed: Hl7Feed, patient: Patient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The count was written over by the row's stale copy: 0 after a resend."""
    _failing_once(monkeypatch, "F1")
    again = feed.receive(oru("F1"), via="api")
    assert (again.code, again.duplicate) == ("AA", False)
    message = Hl7Message.objects.get()
    assert (message.status, message.resent) == (Hl7Message.Status.APPLIED, 1)
    assert LabResult.objects.filter(patient=patient, collected_on=date(2026, 11, 1)).count() == 1


@pytest.mark.django_db
def test_a_copy_that_lost_the_race_to_store_a_failed_message_applies_it(
    north_feed: Hl7Feed, patient: Patient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other copy inserted the row first and failed: this one was answered "duplicate,
    already stored" (AA) though nothing of the message was stored, so it was never resent."""
    _failing_once(monkeypatch, "L1")
    lock = Hl7Message.objects.select_for_update
    looked: list[bool] = []

    def looked_before_the_other_copy_inserted(*args: Any, **kwargs: Any) -> Any:
        if not looked:
            looked.append(True)
            return Hl7Message.objects.none()
        return lock(*args, **kwargs)

    monkeypatch.setattr(
        Hl7Message.objects, "select_for_update", looked_before_the_other_copy_inserted
    )
    second = feed.receive(oru("L1"), via="mllp")
    assert (second.code, second.duplicate) == ("AA", False), second.text
    assert Hl7Message.objects.get().status == Hl7Message.Status.APPLIED
    assert LabResult.objects.filter(patient=patient, collected_on=date(2026, 11, 1)).count() == 1


@pytest.mark.django_db
def test_an_mrn_too_long_to_store_is_refused_not_cut_to_another_patients(
    north_feed: Hl7Feed, north_clinic: Clinic, alice: User
) -> None:
    """A 41-character PID-3 whose first 40 characters are a patient's MRN: cut to fit its
    column, it was that patient's result."""
    other = stored_patient(north_clinic, alice, mrn="M" * 40)
    before = LabResult.objects.filter(patient=other).count()
    outcome = feed.receive(oru(mrn="M" * 41), via="test")
    assert outcome.code == "AE" and outcome.text == "PID-3 is longer than 40 characters"
    assert LabResult.objects.filter(patient=other).count() == before
    assert not Hl7Result.objects.exists()
    assert Hl7Message.objects.get().status == Hl7Message.Status.REFUSED


@pytest.mark.django_db
def test_a_message_with_two_patients_is_refused_not_filed_on_the_first(
    north_feed: Hl7Feed, north_clinic: Clinic, alice: User, patient: Patient
) -> None:
    """An ORU^R01 may hold several patients' results: every OBX was filed on the first PID."""
    other = stored_patient(north_clinic, alice, mrn="N200")
    before = other.lab_results.count()
    first, second = oru(), oru(mrn="N200", value="980")
    both = first + "\r".join(second.split("\r")[1:])  # the second patient's PID, OBR, OBX
    outcome = feed.receive(both, via="test")
    assert outcome.code == "AE"
    assert outcome.text.startswith("the message holds 2 PID segments: one patient per message")
    assert not LabResult.objects.filter(collected_on=date(2026, 11, 1)).exists()
    assert not Hl7Result.objects.exists() and other.lab_results.count() == before


@pytest.mark.django_db
def test_a_control_id_too_long_to_store_is_not_taken_for_a_resend(
    north_feed: Hl7Feed, patient: Patient
) -> None:
    """Two control IDs alike in their first 100 characters: cut, the second was acknowledged
    as a duplicate of the first and its result dropped."""
    assert feed.receive(oru("C" * 100), via="test").code == "AA"
    second = feed.receive(oru("C" * 100 + "2", value="480"), via="test")
    assert (second.code, second.duplicate) == ("AE", False)
    assert second.text == "MSH-10 is longer than 100 characters"
    assert Hl7Message.objects.count() == 2


@pytest.mark.django_db
def test_a_facility_too_long_to_store_is_kept_as_its_own_refusal(
    north_feed: Hl7Feed, patient: Patient
) -> None:
    """Its key cut to fit would be another message's (an applied one here): the refusal is
    kept as a row of its own, with its raw text, and the applied message is untouched."""
    long_facility = "NORTHLAB" + "X" * 100
    applied = feed.receive(oru("SAME"), via="test").message
    assert applied is not None
    Hl7Message.objects.filter(pk=applied.pk).update(sending_facility=long_facility[:100])
    outcome = feed.receive(oru("SAME", facility=long_facility), via="test")
    assert (outcome.code, outcome.text) == ("AE", "MSH-4 is longer than 100 characters")
    applied.refresh_from_db()
    assert (applied.status, applied.resent) == (Hl7Message.Status.APPLIED, 0)
    refused = Hl7Message.objects.exclude(pk=applied.pk).get()
    assert refused.status == Hl7Message.Status.REFUSED and long_facility in refused.raw


@pytest.mark.django_db
def test_a_message_refused_while_read_with_a_long_control_id_keeps_its_own_record(
    north_feed: Hl7Feed, patient: Patient
) -> None:
    """Refused before it is read (not ORU^R01), its key comes from the raw header: cut to fit,
    it was another message's key and overwrote that message's record."""
    first = feed.receive(oru("D" * 100).replace("ORU^R01^ORU_R01", "ADT^A01"), via="test")
    second = feed.receive(oru("D" * 100 + "2").replace("ORU^R01^ORU_R01", "ADT^A08"), via="test")
    assert (first.code, second.code) == ("AR", "AR")  # not ORU^R01: rejected (HL7 §2.9)
    assert Hl7Message.objects.count() == 2
    assert {m.raw.count("ADT^A01") for m in Hl7Message.objects.all()} == {0, 1}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "where"),
    [
        ({"value": "4" * 101}, "OBX-5 is longer than 100 characters"),
        ({"unit": "U" * 41}, "OBX-6 is longer than 40 characters"),
        ({"filler": "F" * 101}, "OBR-3 is longer than 100 characters"),
        ({"sub_id": "1" * 21}, "OBX-4 is longer than 20 characters"),
    ],
)
def test_an_observation_field_too_long_to_store_refuses_the_message(
    north_feed: Hl7Feed, patient: Patient, field: dict[str, str], where: str
) -> None:
    outcome = feed.receive(oru(**field), via="test")
    assert (outcome.code, outcome.text) == ("AE", f"OBX 1: {where}")
    assert not Hl7Result.objects.exists()


@pytest.mark.django_db
def test_a_correction_replaces_the_value_with_history_kept(
    north_feed: Hl7Feed, patient: Patient
) -> None:
    feed.receive(oru("M1"), via="test")
    outcome = feed.receive(oru("M2", value="421", status="C"), via="test")
    assert outcome.code == "AA"
    stored = LabResult.objects.get(patient=patient, collected_on=date(2026, 11, 1))
    assert stored.value == 421
    assert [h.value for h in stored.history.order_by("history_id")] == [412, 421]
    states = dict(Hl7Result.objects.values_list("message__control_id", "state"))
    assert states == {"M1": "corrected", "M2": "applied"}


@pytest.mark.django_db
def test_a_withdrawal_removes_the_result(north_feed: Hl7Feed, patient: Patient) -> None:
    feed.receive(oru("M1"), via="test")
    assert feed.receive(oru("M2", status="X"), via="test").code == "AA"
    assert not LabResult.objects.filter(patient=patient, collected_on=date(2026, 11, 1)).exists()
    assert LabResult.history.filter(value=412, history_type="-").exists()
    states = dict(Hl7Result.objects.values_list("message__control_id", "state"))
    assert states == {"M1": "withdrawn", "M2": "withdrawn"}


@pytest.mark.django_db
def test_a_loinc_alternate_identifier_is_read(north_feed: Hl7Feed, patient: Patient) -> None:
    """OBX-3 with the lab's own code first and LOINC as the alternate (components 4 to 6): the
    LOINC code was ignored and the result waited in the inbox for a local-code mapping."""
    outcome = feed.receive(
        oru("ALT1", code="ALKP^Alk phos^L^6768-6^Alkaline phosphatase^LN"), via="test"
    )
    assert outcome.text == "1 result(s): 1 stored"
    stored = Hl7Result.objects.get()
    assert (stored.code, stored.coding_system, stored.test) == ("6768-6", "LN", "alp")
    assert LabResult.objects.filter(
        patient=patient, test="alp", collected_on=date(2026, 11, 1)
    ).exists()


def test_a_labs_comment_on_a_result_is_read_from_the_nte_after_its_obx() -> None:
    """NTE segments were skipped: "sample haemolysed" never reached the clinician."""
    about_the_order = "OBR|2|P-2|F-78|24326-1^Panel^LN|||20261101081500+0100\r" + (
        "NTE|1|L|Order note\rNTE|2|L|A second order note\r"
    )
    message = (
        oru().replace("OBR|1|", "NTE|1|L|about the patient, not a result\rOBR|1|")
        + "NTE|1|L|Sample haemolysed\\.br\\interpret with care~repeat requested\r"
        + "NTE|2|L|Phoned to ward 3 \\T\\ noted\r"
        + about_the_order
    )
    (observation,) = hl7v2.parse_message(message).observations
    assert observation.comment == (
        "Sample haemolysed\ninterpret with care\nrepeat requested\nPhoned to ward 3 & noted"
    )
    assert hl7v2.parse_message(oru()).observations[0].comment == ""


@pytest.mark.django_db
def test_a_labs_comment_is_kept_with_the_result_and_shown_on_the_patient_page(
    client: Any, alice: User, north_feed: Hl7Feed, patient: Patient
) -> None:
    feed.receive(oru("N1") + "NTE|1|L|Sample haemolysed\r", via="test")
    stored = LabResult.objects.get(patient=patient, collected_on=date(2026, 11, 1))
    assert stored.lab_comment == "Sample haemolysed"
    client.force_login(alice)
    page = client.get(f"/patients/{patient.pk}/").content.decode()
    assert "Lab comment:</span> Sample haemolysed" in page
    # A correction brings its own comment (or none): the earlier one was about the old value.
    feed.receive(
        oru("N2", value="421", status="C") + "NTE|1|L|Repeat on a new sample\r", via="test"
    )
    stored.refresh_from_db()
    assert (stored.value, stored.lab_comment) == (421, "Repeat on a new sample")


@pytest.mark.django_db
def test_the_ack_counts_what_became_of_each_result(north_feed: Hl7Feed, patient: Patient) -> None:
    """The ACK said "3 result(s) stored" of a message whose preliminary and unmatched results
    were not stored."""
    first = oru("A1")
    stored_line = first.rstrip("\r").split("\r")[-1]
    preliminary = stored_line.replace("OBX|1|", "OBX|2|").replace("|F|||", "|P|||")
    unmatched = stored_line.replace("OBX|1|", "OBX|3|").replace("|U/L|", "|IU/L|")
    outcome = feed.receive(first + preliminary + "\r" + unmatched + "\r", via="test")
    assert outcome.code == "AA"
    assert outcome.text == (
        "3 result(s): 1 stored, 1 in the unmatched inbox, 1 not stored (status not final)"
    )


@pytest.mark.django_db
def test_a_result_collected_after_today_is_refused(north_feed: Hl7Feed, patient: Patient) -> None:
    """It was stored as the patient's latest result; the case could then not be saved by hand
    ("collected after today's date") until that day came."""
    from datetime import timedelta

    from django.utils import timezone

    later = timezone.localdate() + timedelta(days=2)
    outcome = feed.receive(oru("T1", collected=later.strftime("%Y%m%d") + "0815"), via="test")
    assert outcome.code == "AE"
    assert outcome.text == (
        f"OBX 1: collected {later.isoformat()}, after today ({timezone.localdate().isoformat()}): "
        "check the sending system's clock and time zone"
    )
    assert not LabResult.objects.filter(patient=patient, collected_on=later).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("collected", ["000101010000+0100", "99991231235900-0100"])
def test_a_collection_time_outside_the_calendar_in_utc_is_refused_with_an_ack(
    north_feed: Hl7Feed, patient: Patient, collected: str
) -> None:
    """Year 1 at +01:00 is before year 1 in UTC: converting it raised OverflowError, which
    reached the sender as no ACK at all (MLLP) or a server error (the API)."""
    stored = LabResult.objects.count()
    outcome = feed.receive(oru("Y1", collected=collected), via="test")
    assert outcome.code == "AE"
    assert f"OBR-7: '{collected}' is outside the calendar in UTC" in outcome.text
    assert LabResult.objects.count() == stored


@pytest.mark.django_db
@pytest.mark.parametrize("offset", ["+2400", "-0060"])
def test_a_time_zone_offset_that_is_none_is_refused_with_an_ack(
    north_feed: Hl7Feed, patient: Patient, offset: str
) -> None:
    """+2400 raised ValueError while reading the message: the listener closed the connection
    with no ACK (the lab resends it for ever, the feed behind it blocked) and import_hl7
    stopped with a traceback."""
    outcome = feed.receive(oru("Z1", collected=f"20261101081500{offset}"), via="test")
    assert outcome.code == "AE"
    assert f"OBR-7: '20261101081500{offset}': {offset} is not a time zone offset" in outcome.text


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("value", "unit", "same"),
    [
        ("412", "U/L", True),
        ("6.87", "ukat/L", True),
        ("414", "U/L", True),
        ("415", "U/L", False),
        ("7", "ukat/L", False),
    ],
)
def test_a_final_result_resent_within_half_a_percent_is_the_stored_one(
    north_feed: Hl7Feed, patient: Patient, value: str, unit: str, same: bool
) -> None:
    """Spec §1: values within 0.5 % after conversion are one result, "as a lab feed resending
    a result must not fail a case": 6.87 ukat/L (412.2 U/L) and 414 U/L (0.48 %) are the
    stored 412 U/L, as on FHIR import; 415 U/L (0.72 %) and 7 ukat/L (420 U/L) are another
    value, parked for a correction."""
    assert feed.receive(oru("R1"), via="test").code == "AA"
    resent = oru("R2", value=value, unit=unit, reference="")
    assert feed.receive(resent, via="test").code == "AA"
    row = Hl7Result.objects.get(message__control_id="R2")
    stored = LabResult.objects.get(patient=patient, collected_on=date(2026, 11, 1), test="alp")
    assert (stored.value, stored.unit) == (412, "U/L")
    if same:
        assert row.state == Hl7Result.State.APPLIED and row.lab_result == stored
        assert row.reason == "the same value was already recorded"
    else:
        assert row.state == Hl7Result.State.UNMATCHED
        assert row.reason.endswith("with another value: send a correction (C)")


@pytest.mark.django_db
def test_a_correction_onto_another_results_time_is_parked_with_the_reason(
    north_feed: Hl7Feed, patient: Patient
) -> None:
    """Correcting the 08:15 result to 09:15, where another result is stored: the clash was
    not caught, so the whole message failed (AE, resend to retry) and a resend could not help;
    matched from the inbox it was a server error."""
    assert feed.receive(oru("C1", filler="F-77"), via="test").code == "AA"
    later = oru("C2", filler="F-78", value="300", collected="20261101091500+0100")
    assert feed.receive(later, via="test").code == "AA"
    correction = oru("C3", filler="F-77", value="420", status="C", collected="20261101091500+0100")
    outcome = feed.receive(correction, via="test")
    assert outcome.text == "1 result(s): 1 in the unmatched inbox"
    parked = Hl7Result.objects.get(message__control_id="C3")
    assert parked.reason == (
        "A alp result collected at 2026-11-01 08:15 is already recorded. "
        "The correction would put this result on it."
    )
    stored = LabResult.objects.filter(patient=patient, collected_on=date(2026, 11, 1))
    assert sorted(stored.values_list("value", flat=True)) == [300, 412]  # both unchanged
    first = Hl7Result.objects.get(message__control_id="C1")
    assert first.state == Hl7Result.State.APPLIED  # not marked corrected


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("value", "unit", "reason"),
    [
        ("1000000000000", "U/L", "OBX-5 (value): must be below 1,000,000,000,000"),
        (
            "20000000000",
            "ukat/L",
            "OBX-5 (value): is 1.2e+12 U/L: must be below 1,000,000,000,000 U/L",
        ),
    ],
)
def test_a_value_too_large_to_store_is_parked_with_that_reason(
    north_feed: Hl7Feed, patient: Patient, value: str, unit: str, reason: str
) -> None:
    """It was parked as "already recorded ... send a correction": the database's bound on
    values was read as a duplicate result."""
    outcome = feed.receive(oru("V1", value=value, unit=unit), via="test")
    assert outcome.text == "1 result(s): 1 in the unmatched inbox"
    assert Hl7Result.objects.get().reason == reason


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"reference": "<0"}, "OBX-7 (reference_high, the upper limit): must be greater than 0"),
        (
            {"code": "1777-2^Bone ALP activity^LN", "value": "40", "reference": ""},
            "OBX-7 (reference_high, the upper limit): required for bone_alp in U/L "
            "(no built-in interval for activity)",
        ),
    ],
)
def test_a_result_the_case_would_refuse_is_parked_with_the_case_s_reason(
    north_feed: Hl7Feed, patient: Patient, fields: dict[str, str], reason: str
) -> None:
    """The feed checks a result by the case's own rules (engine.lab_problems), as a typed or
    imported result is checked, naming the segment it came from."""
    stored = patient.lab_results.count()
    outcome = feed.receive(oru("R1", **fields), via="test")
    assert outcome.text == "1 result(s): 1 in the unmatched inbox"
    assert Hl7Result.objects.get().reason == reason
    assert patient.lab_results.count() == stored


@pytest.mark.django_db
def test_unknown_patient_code_and_unit_are_parked_and_acknowledged(
    north_feed: Hl7Feed, patient: Patient
) -> None:
    outcomes = [
        feed.receive(oru("M1", mrn="N999"), via="test"),
        feed.receive(oru("M2", code="ALKP^Alk phos^L"), via="test"),
        feed.receive(oru("M3", unit="IU/L"), via="test"),
    ]
    assert [o.code for o in outcomes] == ["AA", "AA", "AA"]
    assert "1 in the unmatched inbox" in outcomes[0].ack
    reasons = list(Hl7Result.objects.order_by("pk").values_list("state", "reason"))
    assert [state for state, _ in reasons] == ["unmatched"] * 3
    assert "no patient with MRN N999" in reasons[0][1]
    assert "code ALKP" in reasons[1][1]
    assert "unit IU/L" in reasons[2][1]
    assert not LabResult.objects.filter(collected_on=date(2026, 11, 1)).exists()


@pytest.mark.django_db
def test_inbox_match_to_a_code_and_a_patient_applies_and_remembers_the_code(
    north_feed: Hl7Feed, patient: Patient, alice: User, north_clinic: Clinic
) -> None:
    feed.receive(oru("M1", code="ALKP^Alk phos^L", mrn="OLD-7"), via="test")
    parked = Hl7Result.objects.get()
    applied = feed.inbox_match(parked, user=alice, patient=patient, test="alp")
    assert applied.state == Hl7Result.State.APPLIED and applied.lab_result is not None
    assert applied.lab_result.entered_by == alice
    assert Hl7LocalCode.objects.get(clinic=north_clinic, code="ALKP").test == "alp"
    # The next message with that local code maps by itself.
    feed.receive(oru("M2", code="ALKP^Alk phos^L", collected="20261102081500"), via="test")
    assert Hl7Result.objects.get(message__control_id="M2").state == Hl7Result.State.APPLIED


@pytest.mark.django_db
def test_inbox_refuses_another_clinics_patient(
    north_feed: Hl7Feed, bob: User, south_clinic: Clinic
) -> None:
    feed.receive(oru("M1", mrn="N999"), via="test")
    other = stored_patient(south_clinic, bob, mrn="S1")
    with pytest.raises(ValueError, match="patient"):
        feed.inbox_match(Hl7Result.objects.get(), user=bob, patient=other)


@pytest.mark.django_db
def test_acks_ae_for_unknown_facility_and_ar_for_garbage(patient: Patient) -> None:
    refused = feed.receive(oru(facility="ELSEWHERE"), via="test")
    assert refused.code == "AE" and "ELSEWHERE is not configured" in refused.ack
    rejected = feed.receive("this is not HL7", via="test")
    assert rejected.code == "AR" and "MSA|AR" in rejected.ack
    assert Hl7Message.objects.filter(status=Hl7Message.Status.REJECTED).count() == 1
    assert not LabResult.objects.filter(collected_on=date(2026, 11, 1)).exists()


@pytest.mark.django_db
def test_a_message_that_fails_midway_leaves_nothing_half_applied(
    north_feed: Hl7Feed, patient: Patient, monkeypatch: pytest.MonkeyPatch
) -> None:
    two = (
        oru("M1")
        + "OBX|2|NM|2160-0^Creatinine^LN|1|1.1|mg/dL|0.5-1.2|N|||F|||20261101081500+0100\r"
    )
    original = feed.apply_result
    calls = []

    def failing(result: Hl7Result, **kwargs: Any) -> Hl7Result:
        calls.append(result.code)
        if result.code == "2160-0":
            raise RuntimeError("disk full")
        return original(result, **kwargs)

    monkeypatch.setattr(feed, "apply_result", failing)
    outcome = feed.receive(two, via="test")
    assert outcome.code == "AE" and "resend to retry" in outcome.ack
    assert calls == ["6768-6", "2160-0"]
    assert not LabResult.objects.filter(collected_on=date(2026, 11, 1)).exists()
    assert Hl7Message.objects.get().status == Hl7Message.Status.REFUSED
    monkeypatch.setattr(feed, "apply_result", original)
    assert feed.receive(two, via="test").code == "AA"  # the resend is applied, once
    assert LabResult.objects.filter(collected_on=date(2026, 11, 1)).count() == 2


@pytest.mark.django_db
def test_import_override_clinic_needs_no_feed(patient: Patient, north_clinic: Clinic) -> None:
    outcome = feed.receive(oru(facility="UNCONFIGURED"), via="file", clinic=north_clinic)
    assert outcome.code == "AA"
    assert LabResult.objects.filter(patient=patient, value=412).exists()


@pytest.mark.django_db
def test_a_resend_refused_after_the_feed_was_disabled_keeps_the_stored_copy(
    north_feed: Hl7Feed, patient: Patient
) -> None:
    assert feed.receive(oru("M1"), via="test").code == "AA"
    north_feed.enabled = False
    north_feed.save()
    again = feed.receive(oru("M1"), via="test")
    assert again.code == "AE" and "disabled" in again.text
    stored = Hl7Message.objects.get()
    assert (stored.status, stored.resent) == (Hl7Message.Status.APPLIED, 1)


@pytest.mark.django_db
def test_bone_alp_activity_without_the_labs_upper_limit_is_parked(
    north_feed: Hl7Feed, patient: Patient
) -> None:
    feed.receive(oru("M1", code="1777-2^Bone ALP^LN", value="30", reference=""), via="test")
    parked = Hl7Result.objects.get()
    assert parked.state == Hl7Result.State.UNMATCHED and "upper limit" in parked.reason
    feed.receive(oru("M2", code="1777-2^Bone ALP^LN", value="30", reference="<20"), via="test")
    stored = Hl7Result.objects.get(message__control_id="M2").lab_result
    assert stored is not None and (stored.test, stored.reference_high) == ("bone_alp", 20)


@pytest.mark.django_db
def test_nul_characters_are_rejected_and_kept_marked(north_feed: Hl7Feed, patient: Patient) -> None:
    outcome = feed.receive(oru("M1").replace("412", "41\x002"), via="test")
    assert outcome.code == "AR" and "NUL" in outcome.text
    assert "\ufffd" in Hl7Message.objects.get().raw


@pytest.mark.django_db
def test_a_reference_range_upside_down_is_parked_with_the_reason(
    north_feed: Hl7Feed, patient: Patient
) -> None:
    feed.receive(oru("M1", reference="129-40"), via="test")
    parked = Hl7Result.objects.get()
    assert parked.state == Hl7Result.State.UNMATCHED
    assert parked.reason == "OBX-7 (reference_low, the lower limit): must be below reference_high"
    assert not LabResult.objects.filter(patient=patient, collected_on=date(2026, 11, 1)).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("zone", "collected"),
    [
        ("Europe/Berlin", "20261101"),
        ("Pacific/Auckland", "20261101"),
        ("UTC", "20261101+0100"),  # a bare date with an offset: still that date
    ],
)
def test_a_bare_date_waiting_in_the_inbox_is_stored_and_shown_on_its_date(
    settings: Any,
    north_feed: Hl7Feed,
    patient: Patient,
    alice: User,
    client: Any,
    zone: str,
    collected: str,
) -> None:
    """Spec §1: a bare date keeps its date, its time unknown. A bare date kept as midnight
    somewhere came back from the database in UTC: east of UTC it was matched onto the day
    before, and the inbox showed it at "23:00" or "00:00"."""
    settings.TIME_ZONE = zone
    text = oru("D1", code="ALKP^Alk phos^L", collected=collected)
    if "+" not in collected:  # no offset anywhere: the message's own (MSH-7) taken out
        text = text.replace("20261101090000+0100", "20261101090000")
    feed.receive(text, via="test")
    parked = Hl7Result.objects.get()
    assert parked.state == Hl7Result.State.UNMATCHED
    client.force_login(alice)
    shown = client.get("/lab-feed/inbox/").content.decode()
    assert '<td data-label="Collected"><span class="text-nowrap">2026-11-01</span> ' in shown
    assert "(no time)" in shown
    applied = feed.inbox_match(parked, user=alice, patient=patient, test="alp")
    assert applied.lab_result_id is not None
    lab = LabResult.objects.get(pk=applied.lab_result_id)
    assert (lab.collected_on, lab.collected_time) == (date(2026, 11, 1), None)


@pytest.mark.django_db
def test_a_result_collected_before_the_patient_s_birth_waits_in_the_inbox(
    north_feed: Hl7Feed, patient: Patient
) -> None:
    """A typed or imported result before the birth date is refused (spec §1); from the feed
    it was stored, a case the engine would refuse (00010101 is a bare date in year 1)."""
    stored = patient.lab_results.count()
    outcome = feed.receive(oru("B1", collected="00010101+0100"), via="test")
    assert outcome.text == "1 result(s): 1 in the unmatched inbox"
    assert Hl7Result.objects.get().reason == (
        "OBX-14/OBR-7: collected 0001-01-01, before N100's birth date (1950-03-02): "
        "check the patient or the date"
    )
    assert patient.lab_results.count() == stored


@pytest.mark.django_db
def test_the_history_of_what_the_listener_stores_names_the_feed_s_service_user(
    north_feed: Hl7Feed, patient: Patient
) -> None:
    """The listener and import_hl7 have no request: the result, its inbox row and the patient's
    version were written with history rows that named nobody."""
    outcome = feed.receive(oru("H2"), via="mllp")  # what hl7_listen calls for each message
    assert outcome.code == "AA"
    service = north_feed.service_user
    stored = LabResult.objects.get(patient=patient, collected_on=date(2026, 11, 1))
    assert stored.entered_by == service
    assert stored.history.get().history_user == service
    assert Hl7Result.objects.get().history.latest().history_user == service
    assert patient.history.latest().history_user == service


@pytest.mark.django_db
def test_removing_a_result_from_the_feed_is_in_the_history_of_its_feed_row(
    client: Any, north_feed: Hl7Feed, patient: Patient, alice: User
) -> None:
    """The database's SET NULL cleared the feed row's link by a bulk update: its history still
    pointed at the removed result, and nobody was named."""
    assert feed.receive(oru("R1"), via="test").code == "AA"
    row = Hl7Result.objects.get()
    assert row.lab_result_id is not None
    lab = LabResult.objects.get(pk=row.lab_result_id)
    patient.refresh_from_db()
    client.force_login(alice)
    url = f"/patients/{patient.pk}/results/{lab.pk}/remove/"
    assert client.post(url, {"version": patient.version}).status_code == 302
    latest = row.history.latest()
    assert (latest.lab_result_id, latest.history_user) == (None, alice)


def _alp_on_1_nov(patient: Patient) -> Any:
    return LabResult.objects.filter(patient=patient, test="alp", collected_on=date(2026, 11, 1))


def _msa(ack: str) -> list[str]:
    return next(s for s in ack.split("\r") if s.startswith("MSA")).split("|")


# --- result status (HL7 v2.5.1 Table 0085) --------------------------------------------------


@pytest.mark.django_db
def test_status_w_removes_a_result_posted_for_the_wrong_patient(
    north_feed: Hl7Feed, patient: Patient
) -> None:
    """HL7 v2.5.1 Table 0085 (OBX-11): "W = Post original as wrong, e.g., transmitted for wrong
    patient" (mapped to FHIR Observation.status entered-in-error by HL7's v2-to-FHIR
    ConceptMap, as D is). The final result this message posted earlier is wrong and must no
    longer drive advice for this patient: it is removed (as for D/X), not kept while the W
    row is filed as "not stored (status not final)"."""
    assert feed.receive(oru("W1"), via="test").code == "AA"
    assert _alp_on_1_nov(patient).count() == 1
    outcome = feed.receive(oru("W2", status="W"), via="test")
    assert outcome.code == "AA"
    assert not _alp_on_1_nov(patient).exists(), outcome.text


@pytest.mark.django_db
def test_status_u_makes_the_preliminary_result_final(north_feed: Hl7Feed, patient: Patient) -> None:
    """HL7 v2.5.1 Table 0085: "U = Results status change to final without retransmitting
    results already sent as 'preliminary'". A U for the same order and test (here even
    carrying the value again) makes the result final; alpcare stores final results, so it must
    be stored. It was filed as not stored, as P is: the final result was never stored, and
    the ACK said AA."""
    assert feed.receive(oru("U1", status="P"), via="test").code == "AA"
    outcome = feed.receive(oru("U2", status="U"), via="test")
    assert outcome.code == "AA"
    assert _alp_on_1_nov(patient).count() == 1, outcome.text


# --- MSH-11 processing ID ---------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("processing_id", ["T", "D"])
def test_a_training_or_debugging_message_is_not_stored_as_a_patient_result(
    north_feed: Hl7Feed, patient: Patient, processing_id: str
) -> None:
    """HL7 v2.5.1 MSH-11 (Table 0103: D = Debugging, P = Production, T = Training) "is used to
    decide whether to process the message as defined in HL7 Application (level 7) Processing
    rules"; §2.9 (acknowledgment rules) lists MSH-11 with MSH-9 and MSH-12 as what the receiver
    validates before accepting a message. A training or test message from the lab's test
    system must not become a real patient's result and drive clinical advice; today MSH-11 is
    never read and the value is stored (AA, "1 stored")."""
    text = oru(f"T-{processing_id}").replace("|P|2.5.1", f"|{processing_id}|2.5.1", 1)
    assert f"|{processing_id}|2.5.1" in text
    outcome = feed.receive(text, via="test")
    assert not _alp_on_1_nov(patient).exists(), (outcome.code, outcome.text)


# --- ACK codes -------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("old", "new"), [("ORU^R01^ORU_R01", "ADT^A08^ADT_A01"), ("|P|2.5.1", "|P|2.2")]
)
def test_unsupported_message_type_or_version_is_answered_ar(
    north_feed: Hl7Feed, patient: Patient, old: str, new: str
) -> None:
    """HL7 v2.5.1 §2.9.2 (original acknowledgment mode): the receiver validates MSH-9
    (message type), MSH-12 (version ID) and MSH-11 (processing ID); "if the message fails
    these edits ... an ACK message with a value of AR in MSA-1". AE is for an application
    error in a message it accepts. The feed answers AE (and a sender retrying on AE resends
    the same unsupported message)."""
    outcome = feed.receive(oru("AR1").replace(old, new, 1), via="test")
    assert _msa(outcome.ack)[1] == "AR", outcome.ack


@pytest.mark.django_db
@pytest.mark.parametrize("line_end", ["\n\r", "\r\r", "\r\n\r\n"])
def test_ack_of_a_message_with_a_blank_segment_echoes_its_control_id(
    north_feed: Hl7Feed, patient: Patient, line_end: str
) -> None:
    """HL7 v2.5.1 MSA-2 "contains the message control ID of the message sent by the sending
    system. It allows the sending system to associate this response with the message for which
    it is intended." A message with an empty line between segments (LF CR line endings, or a
    blank line, read by normalise() as two CRs) has a readable MSH with MSH-10 = BL1, yet its
    ACK carries an empty MSA-2 (build_ack's fallback "not even an MSH"), so the sender cannot
    tell which message was rejected. (Whether such a message should be accepted at all is an
    open question; the ACK must name it either way.)"""
    text = oru("BL1").replace("\r", line_end)
    outcome = feed.receive(text, via="test")
    assert _msa(outcome.ack)[2] == "BL1", (outcome.code, outcome.text, outcome.ack)


# --- timestamps -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_two_results_seconds_apart_are_two_results_not_a_conflict(
    north_feed: Hl7Feed, patient: Patient
) -> None:
    """pathways.md §1: two labs of the same test are one result only "at the same collected_at
    (the same instant: T08:15 and T08:15:00 are the same ...)"; datetimes are
    YYYY-MM-DDTHH:MM[:SS], and a case typed by hand keeps seconds (T23:59:59). OBX-14 is an
    HL7 DTM with seconds (YYYYMMDDHHMMSS). Two ALP results collected at 08:15:10 and 08:15:50
    are different instants and both must be stored; the feed cuts both to 08:15
    (hl7v2.local_collection) and parks the second as a conflicting duplicate."""
    first = oru("S1", filler="F-1", collected="20261101081510")
    second = oru("S2", filler="F-2", value="300", collected="20261101081550")
    assert feed.receive(first, via="test").code == "AA"
    outcome = feed.receive(second, via="test")
    assert _alp_on_1_nov(patient).count() == 2, outcome.text


@pytest.mark.django_db
def test_a_stored_result_keeps_the_seconds_a_typed_one_keeps(
    north_feed: Hl7Feed, patient: Patient
) -> None:
    """Same result typed by hand vs received: pathways.md §1 accepts T08:15:30 and keeps it
    (the stored-vs-document tests type T23:59:59). OBX-14 20261101081530 is 08:15:30; the feed
    stores 08:15, so the same sample typed by hand at 08:15:30 is a different instant and is
    stored beside it as a second ALP result (a duplicate in the series)."""
    assert feed.receive(oru("S3", collected="20261101081530"), via="test").code == "AA"
    # 08:15:30 at MSH-7's +01:00 is 07:15:30 at the (UTC) test site
    assert _alp_on_1_nov(patient).get().collected_time == time(7, 15, 30)


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["X", "D"])
def test_a_withdrawal_without_a_value_removes_the_stored_result(
    north_feed: Hl7Feed, patient: Patient, status: str
) -> None:
    """HL7 v2.5.1 Table 0085: "X = Results cannot be obtained for this observation", "D =
    Deletes the OBX record". Such an OBX carries no result, so OBX-5 (and OBX-6, OBX-7) are
    empty. feed.apply_result treats X and D as withdrawing the stored result (test_hl7_feed:
    test_a_withdrawal_removes_the_result), but it checks the value, unit and range first
    (_match): with no value the withdrawal is parked in the inbox ("value '' is not a
    number") and the withdrawn final result stays and keeps driving advice."""
    assert feed.receive(oru("X1"), via="test").code == "AA"
    outcome = feed.receive(oru("X2", status=status, value="", unit="", reference=""), via="test")
    assert not _alp_on_1_nov(patient).exists(), outcome.text


@pytest.mark.django_db
def test_a_status_change_to_final_without_the_value_takes_the_preliminary_one(
    north_feed: Hl7Feed, patient: Patient
) -> None:
    """U without OBX-5: the value is the preliminary result's of the same order, code and time;
    with no preliminary received, nothing is stored and the row says why."""
    assert feed.receive(oru("UP1", status="P", value="377"), via="test").code == "AA"
    assert feed.receive(oru("UP2", status="U", value="", unit=""), via="test").code == "AA"
    assert [(lab.value, lab.unit) for lab in _alp_on_1_nov(patient)] == [(377, "U/L")]
    lone = feed.receive(oru("UP3", status="U", value="", unit="", filler="F-99"), via="test")
    row = Hl7Result.objects.get(message__control_id="UP3")
    assert lone.code == "AA" and row.state == Hl7Result.State.NOT_STORED
    assert "no preliminary result" in row.reason


@pytest.mark.django_db
def test_the_mrn_issued_by_the_feeds_authority_is_chosen_among_several_mr(
    north_feed: Hl7Feed, patient: Patient
) -> None:
    """HL7 v2.5.1 PID-3 "contains the list of identifiers (one or more) used by the healthcare
    facility to uniquely identify a patient"; PID-3.4 names who issued each. The feed is set up
    with the authority whose MRNs it files (Hl7Feed.assigning_authority: "PID-3.4 the MRNs must
    carry"). A lab serving two hospitals sends both hospitals' MRs; the one issued by
    NORTHHOSP identifies the patient. The first MR repetition was taken (SOUTHHOSP) and the
    result parked "issued by SOUTHHOSP, this feed expects NORTHHOSP"."""
    text = oru("PI1").replace(
        "N100^^^NORTHHOSP^MR~555-22^^^SSA^SS", "S-42^^^SOUTHHOSP^MR~N100^^^NORTHHOSP^MR"
    )
    assert feed.receive(text, via="test").code == "AA"
    row = Hl7Result.objects.get()
    assert (row.state, row.mrn) == (Hl7Result.State.APPLIED, "N100"), row.reason


INBOX = "/lab-feed/inbox/"


def _one() -> Hl7Result:
    return Hl7Result.objects.get()


# The inbox, as an audit found it: a match without a named patient skipped the feed's assigning
# authority; a refused match kept its local code, patient and test; a LOINC-coded result could
# be stored as another test; a refused form's row on a later page showed no error.


@pytest.mark.django_db
def test_authority_mismatch_is_not_applied_by_a_match_that_names_no_patient(
    alice_client: Any, north_feed: Hl7Feed, patient: Patient
) -> None:
    """A result whose MRN is issued by another authority than the feed's (PID-3.4) waits in the
    inbox: "N100 issued by OTHERHOSP" may be another person than the clinic's N100 (README:
    the feed's assigning authority is "PID-3.4 the MRNs must carry"). A clinician who matches
    it only to a unit (or presses "Match and apply" with nothing chosen) has not said it is
    this clinic's N100: it must stay in the inbox, not be stored on N100. The inbox path calls
    apply_result without the feed's authority, so the check is silently dropped."""
    feed.receive(oru("A1", authority="OTHERHOSP"), via="test")
    parked = _one()
    assert parked.state == Hl7Result.State.UNMATCHED and "OTHERHOSP" in parked.reason
    response = alice_client.post(f"{INBOX}{parked.pk}/", {f"r{parked.pk}-unit": "U/L"})
    assert response.status_code == 302
    parked.refresh_from_db()
    assert parked.state == Hl7Result.State.UNMATCHED, parked.reason
    assert not LabResult.objects.filter(patient=patient, collected_on=date(2026, 11, 1)).exists()


@pytest.mark.django_db
def test_a_match_refused_for_its_unit_remembers_no_local_code(
    alice_client: Any, north_feed: Hl7Feed, patient: Patient, north_clinic: Clinic
) -> None:
    """A match that fails validation leaves the row in the inbox with the reason, and nothing
    else written (rule: nothing half-written). Matching a local code ALKP
    reported in U/L to CTX (ng/L, pg/mL) is refused ("still unmatched"), yet the clinic's
    local code ALKP -> ctx was stored, so every later ALKP result of the clinic is read as a
    CTX and parked (or, in ng/L, stored as a CTX) by a choice that was refused."""
    feed.receive(oru("L1", code="ALKP^Alk phos^L"), via="test")
    parked = _one()
    response = alice_client.post(f"{INBOX}{parked.pk}/", {f"r{parked.pk}-test": "ctx"})
    assert response.status_code == 302
    page = alice_client.get(response["Location"]).content.decode()
    assert "Still unmatched" in page
    parked.refresh_from_db()
    assert parked.state == Hl7Result.State.UNMATCHED
    assert not Hl7LocalCode.objects.filter(clinic=north_clinic, code="ALKP").exists()


@pytest.mark.django_db
def test_a_match_refused_as_a_duplicate_remembers_no_local_code(
    alice_client: Any, north_feed: Hl7Feed, patient: Patient, north_clinic: Clinic
) -> None:
    """As above, for a match refused because the result would duplicate a stored one with
    another value: the row stays in the inbox with the reason, and nothing else is written
    (rule: nothing half-written) — but the local code mapping is stored."""
    feed.receive(oru("S1", value="300"), via="test")  # LOINC ALP, stored on N100
    assert LabResult.objects.filter(patient=patient, collected_on=date(2026, 11, 1)).count() == 1
    feed.receive(oru("S2", code="ALKP^Alk phos^L", value="500"), via="test")
    parked = Hl7Result.objects.get(message__control_id="S2")
    assert parked.state == Hl7Result.State.UNMATCHED
    response = alice_client.post(f"{INBOX}{parked.pk}/", {f"r{parked.pk}-test": "alp"})
    assert response.status_code == 302
    parked.refresh_from_db()
    assert parked.state == Hl7Result.State.UNMATCHED and "already recorded" in parked.reason
    assert not Hl7LocalCode.objects.filter(clinic=north_clinic, code="ALKP").exists()


@pytest.mark.django_db
def test_a_loinc_coded_result_is_not_stored_as_another_test(
    alice_client: Any, north_feed: Hl7Feed, patient: Patient
) -> None:
    """A result coded LOINC 6768-6 (total ALP, README: "OBX-3 LOINC codes map to tests as
    listed in engine/declaration.py") waits only for its patient (unknown MRN). Choosing
    another test in the match form (GGT: same units) stored the ALP value as a GGT result —
    a wrong clinical record. The test is for an unmapped code (README: "an unmapped code");
    for a mapped LOINC code another test must be refused with an error naming the field."""
    feed.receive(oru("G1", mrn="TEMP-1"), via="test")
    parked = _one()
    response = alice_client.post(
        f"{INBOX}{parked.pk}/", {f"r{parked.pk}-mrn": "N100", f"r{parked.pk}-test": "ggt"}
    )
    assert not LabResult.objects.filter(patient=patient, test="ggt").exists()
    page = alice_client.get(response["Location"]).content.decode()
    assert "test: 6768-6 is the LOINC code of alp, not of ggt" in page


@pytest.mark.django_db
def test_a_refused_match_shows_its_error_when_the_row_moved_to_another_page(
    alice_client: Any, north_feed: Hl7Feed, patient: Patient, monkeypatch: Any
) -> None:
    """Bad input gets a clear error naming the field (project rule). The match form posts
    to the page it was read on (?page=1); a new result arriving meanwhile (newest first)
    pushes the row to page 2. A refused match then answers 400 with page 1, which does not
    hold the row: no error, no field named, nothing says what was wrong."""
    monkeypatch.setattr("pathways.inbox.RESULTS_PER_PAGE", 2)
    feed.receive(oru("P0", mrn="TEMP-0"), via="test")
    feed.receive(oru("P1", mrn="TEMP-1"), via="test")
    row = Hl7Result.objects.get(mrn="TEMP-0")
    assert f'action="{INBOX}{row.pk}/?page=1"' in alice_client.get(INBOX).content.decode()
    feed.receive(oru("P2", mrn="TEMP-2"), via="test")  # arrives while the form is open
    bad = alice_client.post(f"{INBOX}{row.pk}/?page=1", {f"r{row.pk}-mrn": "NOPE"})
    assert bad.status_code == 400
    assert "No patient with this MRN" in bad.content.decode()


@pytest.mark.django_db
def test_a_refused_match_leaves_the_row_as_it_was(
    client: Any, alice: User, north_feed: Hl7Feed, north_clinic: Clinic
) -> None:
    """A match that fails validation leaves the row in the inbox with the reason, and nothing
    else written (rule: nothing half-written). Matching TEMP-5's result to patient
    N200 with an ALP unit refused was kept half: the row now silently points at N200 (the
    page shows only the lab's MRN TEMP-5 and the unit reason), so the next clinician who
    picks just a unit stores it on N200 without ever seeing that patient named."""
    other = stored_patient(north_clinic, alice, mrn="N200")
    feed.receive(oru("H1", mrn="TEMP-5", unit="IU/L"), via="test")
    parked = _one()
    client.force_login(alice)
    client.post(
        f"{INBOX}{parked.pk}/", {f"r{parked.pk}-mrn": "N200", f"r{parked.pk}-unit": "mg/dL"}
    )
    parked.refresh_from_db()
    assert parked.state == Hl7Result.State.UNMATCHED
    page = client.get(INBOX).content.decode()
    assert "N200" not in page  # nothing on the page says it is now bound to N200
    assert (parked.patient_id, parked.test) == (None, ""), (
        f"refused match left patient={parked.patient} test={parked.test!r}"
    )
    assert not LabResult.objects.filter(patient=other, collected_on=date(2026, 11, 1)).exists()


# PID-7 and PID-8: an MRN typed wrong on the order puts another person's result on the patient
# it names. The birth date and sex the laboratory sends are checked against that patient's.


def _with_pid(birth_date: str, sex: str, control_id: str = "D1") -> str:
    return oru(control_id).replace("||19500302|F", f"||{birth_date}|{sex}")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("birth_date", "sex", "reason"),
    [
        ("19510302", "F", "PID-7: birth date 1951-03-02 is not N100's (1950-03-02)"),
        ("1951", "", "PID-7: birth date 1951 is not N100's (1950-03-02)"),
        ("195004", "F", "PID-7: birth date 1950-04 is not N100's (1950-03-02)"),
        ("19500302", "M", "PID-8: sex M is not N100's (female)"),
    ],
)
def test_a_result_sent_with_another_birth_date_or_sex_waits_in_the_inbox(
    north_feed: Hl7Feed, patient: Patient, birth_date: str, sex: str, reason: str
) -> None:
    stored = patient.lab_results.count()
    outcome = feed.receive(_with_pid(birth_date, sex), via="test")
    assert outcome.text == "1 result(s): 1 in the unmatched inbox"
    assert _one().reason == f"{reason}: check whose result it is, then match it to the patient here"
    assert patient.lab_results.count() == stored


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("birth_date", "sex"),
    [("19500302", "F"), ("1950", "F"), ("195003", "U"), ("", ""), ("19500230", "F"), ("x", "O")],
)
def test_a_result_sent_with_the_patient_s_demographics_or_none_is_stored(
    north_feed: Hl7Feed, patient: Patient, birth_date: str, sex: str
) -> None:
    """As far as PID-7 names a date (a year, a month, a day); a date that does not exist, an
    unknown sex (U, O) or none at all says nothing to check."""
    feed.receive(_with_pid(birth_date, sex), via="test")
    assert _one().state == Hl7Result.State.APPLIED, _one().reason


@pytest.mark.django_db
def test_the_inbox_shows_the_sent_demographics_and_a_clinician_names_the_patient(
    alice_client: Any, north_feed: Hl7Feed, patient: Patient
) -> None:
    """The row shows what the laboratory sent, to compare; a match that names no patient
    (only a unit) leaves it waiting; naming the patient stores it on them."""
    feed.receive(_with_pid("19510302", "F"), via="test")
    parked = _one()
    assert "Margaret Ellis · born 1951-03-02 · F" in alice_client.get(INBOX).content.decode()
    alice_client.post(f"{INBOX}{parked.pk}/", {f"r{parked.pk}-unit": "U/L"})
    parked.refresh_from_db()
    assert parked.state == Hl7Result.State.UNMATCHED and parked.reason.startswith("PID-7")
    alice_client.post(f"{INBOX}{parked.pk}/", {f"r{parked.pk}-mrn": "N100"})
    parked.refresh_from_db()
    assert parked.state == Hl7Result.State.APPLIED, parked.reason
    assert parked.lab_result is not None and parked.lab_result.patient == patient
