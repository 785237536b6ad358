"""The HL7 feed as a clinician then sees it, from an audit: a withdrawal of a result still in
the inbox, a parked withdrawal said to be one, the feed's own MRN checked for length, LOINC
as the alternate identifier of a code with no coding system, a corrected result marked."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import pytest
from django.contrib.auth.models import User

from pathways import feed
from pathways.feed_models import Hl7Feed, Hl7Result
from pathways.models import LabResult, Patient
from tests.test_hl7_feed import INBOX, _alp_on_1_nov, lab_user, north_feed, oru, patient

__all__ = ["lab_user", "north_feed", "patient"]  # fixtures, found by pytest under these names


def _inbox_row(page: str, row_id: int) -> str:
    """The text of the waiting row ``row_id`` before its forms, as a reader sees it."""
    row = next(r for r in re.findall(r"<tr>.*?</tr>", page, re.S) if f"/inbox/{row_id}/" in r)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row.split("<form")[0])).strip()


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["D", "W", "X"])
def test_a_withdrawal_also_withdraws_the_same_result_waiting_in_the_inbox(
    alice_client: Any, north_feed: Hl7Feed, patient: Patient, status: str
) -> None:
    """HL7 Table 0085: D "deletes the OBX record", W "post original as wrong, e.g. transmitted
    for wrong patient". The final result (same order F-77, code, sub-ID and time) waits in the
    inbox for its unit (IU/L). It was left there, unmarked, and the withdrawal filed as
    "nothing stored to withdraw": a clinician who then picked its unit stored the result the
    laboratory deleted."""
    assert feed.receive(oru("O1", unit="IU/L"), via="test").code == "AA"
    withdrawal = oru("O2", status=status, value="", unit="", reference="")
    assert feed.receive(withdrawal, via="test").text == "1 result(s): 1 withdrawn"
    original = Hl7Result.objects.get(message__control_id="O1")
    withdrawing = Hl7Result.objects.get(message__control_id="O2")
    assert (original.state, original.withdrawn_by) == (Hl7Result.State.WITHDRAWN, withdrawing)
    assert withdrawing.reason == feed.WITHDREW_WAITING

    page = alice_client.get(INBOX).content.decode()
    assert f"/inbox/{original.pk}/" not in page  # no match form: not waiting any more
    shown = re.search(rf'<tr data-withdrawn="{original.pk}">.*?</tr>', page, re.S)
    assert shown is not None and "Withdrawn by the laboratory" in page
    received = withdrawing.message.received_at.strftime("%Y-%m-%d")
    assert received in shown[0] and f"OBX-11 {status}, message O2" in shown[0]

    response = alice_client.post(f"{INBOX}{original.pk}/", {f"r{original.pk}-unit": "U/L"})
    assert response.status_code == 404
    assert not _alp_on_1_nov(patient).exists()


@pytest.mark.django_db
def test_a_withdrawal_for_an_unknown_mrn_withdraws_its_result_waiting_beside_it(
    north_feed: Hl7Feed, patient: Patient
) -> None:
    """Both for an MRN the clinic does not know: the result waiting for its patient is
    withdrawn, and so is the withdrawal (nothing else to do), rather than two rows waiting for
    a clinician to match the first and then the second."""
    feed.receive(oru("T1", mrn="TEMP-1"), via="test")
    outcome = feed.receive(oru("T2", mrn="TEMP-1", status="D", value="", unit=""), via="test")
    assert outcome.text == "1 result(s): 1 withdrawn"
    states = dict(Hl7Result.objects.values_list("message__control_id", "state"))
    assert states == {"T1": "withdrawn", "T2": "withdrawn"}
    assert not Hl7Result.objects.filter(state=Hl7Result.State.UNMATCHED).exists()


@pytest.mark.django_db
def test_a_withdrawal_also_withdraws_a_result_dismissed_from_the_inbox(
    alice_client: Any, alice: User, north_feed: Hl7Feed, patient: Patient
) -> None:
    """A dismissed result can be put back in the inbox, and then matched: withdrawn too."""
    feed.receive(oru("R1", unit="IU/L"), via="test")
    feed.inbox_dismiss(Hl7Result.objects.get(), user=alice, note="the lab will resend it")
    feed.receive(oru("R2", status="D", value="", unit=""), via="test")
    dismissed = Hl7Result.objects.get(message__control_id="R1")
    assert dismissed.state == Hl7Result.State.WITHDRAWN
    assert alice_client.post(f"{INBOX}{dismissed.pk}/restore/").status_code == 404


@pytest.mark.django_db
def test_the_inbox_says_a_parked_row_is_a_withdrawal_before_it_is_applied(
    alice_client: Any, north_feed: Hl7Feed, patient: Patient
) -> None:
    """A D (delete) for an MRN alpcare does not know waits in the inbox. Its row showed an
    empty value and "no patient with MRN TEMP-1": nothing said that "Match and apply" to a
    patient deletes that patient's stored result of this test and time."""
    assert feed.receive(oru("K1"), via="test").code == "AA"  # N100's ALP, stored
    parked = oru("K2", mrn="TEMP-1", status="D", value="", unit="", reference="")
    assert feed.receive(parked, via="test").code == "AA"
    corrected = oru("K3", mrn="TEMP-1", status="C", value="421", filler="F-78")
    assert feed.receive(corrected, via="test").code == "AA"
    rows = {row.message.control_id: row.pk for row in Hl7Result.objects.all()}
    page = alice_client.get(INBOX).content.decode()
    withdrawal = _inbox_row(page, rows["K2"])
    assert "Withdrawal (OBX-11 D): applying it removes the stored result" in withdrawal
    assert "Correction (OBX-11 C): applying it replaces the stored result" in _inbox_row(
        page, rows["K3"]
    )
    # What applying it does: the matched patient's result is removed.
    alice_client.post(f"{INBOX}{rows['K2']}/", {f"r{rows['K2']}-mrn": "N100"})
    assert not _alp_on_1_nov(patient).exists()


@pytest.mark.django_db
def test_an_mrn_of_the_feeds_authority_too_long_to_store_is_refused(
    north_feed: Hl7Feed, patient: Patient
) -> None:
    """README: AE for "a PID-3 over 40 characters: refused, never cut". The length check read
    the first MR repetition; the MRN issued by the feed's authority, swapped in afterwards,
    was never checked: 41 characters written into a 40-character column (stored whole on
    SQLite, a DataError on PostgreSQL answered "resend to retry", failing the same way for
    ever)."""
    text = oru("L1").replace(
        "N100^^^NORTHHOSP^MR~555-22^^^SSA^SS", "S-42^^^SOUTHHOSP^MR~" + "N" * 41 + "^^^NORTHHOSP^MR"
    )
    outcome = feed.receive(text, via="test")
    assert (outcome.code, outcome.text) == ("AE", "PID-3 is longer than 40 characters")
    assert not Hl7Result.objects.exists()


@pytest.mark.django_db
def test_a_loinc_alternate_identifier_is_read_when_the_local_code_has_no_coding_system(
    north_feed: Hl7Feed, patient: Patient
) -> None:
    """README: LOINC is read "as the alternate identifier after the laboratory's own code,
    components 4-6". A local code sent with OBX-3.3 blank (labs often leave their own system
    empty) was taken as LOINC, the explicit LN alternate ignored, and the ALP waited in the
    inbox as "code ALKP is not mapped"."""
    code = "ALKP^Alk phos^^6768-6^Alkaline phosphatase^LN"
    outcome = feed.receive(oru("LA1", code=code), via="test")
    row = Hl7Result.objects.get()
    assert outcome.text == "1 result(s): 1 stored", row.reason
    assert (row.code, row.coding_system, row.test) == ("6768-6", "LN", "alp")
    assert LabResult.objects.filter(
        patient=patient, test="alp", collected_on=date(2026, 11, 1)
    ).exists()


@pytest.mark.django_db
def test_a_blank_system_code_that_is_a_loinc_code_is_kept_before_its_alternate(
    north_feed: Hl7Feed, patient: Patient
) -> None:
    """A first identifier with no coding system is still read as LOINC when it is one."""
    code = "6768-6^Alkaline phosphatase^^1920-8^Aspartate aminotransferase^LN"
    assert feed.receive(oru("LA2", code=code), via="test").text == "1 result(s): 1 stored"
    assert Hl7Result.objects.get().code == "6768-6"


@pytest.mark.django_db
def test_a_corrected_result_is_marked_as_corrected_on_the_patient_page(
    alice_client: Any, north_feed: Hl7Feed, patient: Patient
) -> None:
    """OBX-11 C replaces the earlier value (README). The patient page showed 90 U/L exactly
    like a first report: a clinician who saw and acted on 412 U/L was not told that the
    laboratory corrected it. The history kept both values, in the admin only."""
    assert feed.receive(oru("C1", collected="20261125081500+0100"), via="test").code == "AA"
    correction = oru("C2", value="90", status="C", collected="20261125081500+0100")
    assert feed.receive(correction, via="test").text == "1 result(s): 1 stored"
    patient.refresh_from_db()
    assert patient.snapshot.alp_latest == 90
    page = alice_client.get(f"/patients/{patient.pk}/").content.decode()
    row = next(
        r for r in re.findall(r'<tr data-test="alp">.*?</tr>', page, re.S) if "2026-11-25" in r
    )
    assert 'title="Corrected by the laboratory, was 412 U/L">corrected</span>' in row
    stored = LabResult.objects.get(patient=patient, collected_on=date(2026, 11, 25))
    # One history row for the correction, holding the new value and the mark.
    assert [(h.value, h.corrected_from) for h in stored.history.order_by("history_id")] == [
        (412, ""),
        (90, "412 U/L"),
    ]


@pytest.mark.django_db
def test_a_hand_edit_of_a_corrected_result_drops_the_mark(
    alice_client: Any, north_feed: Hl7Feed, patient: Patient
) -> None:
    """The mark says the laboratory corrected the value shown: once a clinician changes it by
    hand, the value is no longer the laboratory's, and "corrected, was 412" would mislead."""
    stored = _corrected_412_to_90(patient)
    assert stored.corrected_from == "412 U/L"
    _hand_edit(alice_client, patient, stored, value="95", reference_high="129")
    assert (stored.value, stored.corrected_from) == (95, "")
    page = alice_client.get(f"/patients/{patient.pk}/").content.decode()
    assert "lab-corrected" not in page


@pytest.mark.django_db
def test_a_hand_edit_that_keeps_the_corrected_value_keeps_the_mark(
    alice_client: Any, north_feed: Hl7Feed, patient: Patient
) -> None:
    """The same rule as for a FHIR Bundle that sends the corrected value with new limits: the
    value shown is still the one the laboratory corrected, so the mark stays. A hand edit of
    the upper limit alone dropped it, and the clinician lost "corrected, was 412"."""
    stored = _corrected_412_to_90(patient)
    _hand_edit(alice_client, patient, stored, value="90", reference_high="130")
    assert (stored.reference_high, stored.corrected_from) == (130, "412 U/L")


def _corrected_412_to_90(patient: Patient) -> LabResult:
    """ALP 412 U/L from the feed, then the laboratory's correction to 90 (OBX-11 C)."""
    feed.receive(oru("E1", collected="20261125081500+0100"), via="test")
    feed.receive(oru("E2", value="90", status="C", collected="20261125081500+0100"), via="test")
    return LabResult.objects.get(patient=patient, collected_on=date(2026, 11, 25))


def _hand_edit(
    client: Any, patient: Patient, stored: LabResult, *, value: str, reference_high: str
) -> None:
    """The result changed on its "Correct a result" page (same test, unit and time)."""
    patient.refresh_from_db()
    posted = {
        "test": "alp", "value": value, "unit": "U/L", "collected_on": "2026-11-25",
        "collected_time": "07:15", "reference_high": reference_high,
        "version": str(patient.version),
    }  # fmt: skip
    url = f"/patients/{patient.pk}/results/{stored.pk}/"
    assert client.post(url, posted).status_code == 302
    stored.refresh_from_db()


@pytest.mark.django_db
def test_a_correction_refused_as_another_results_time_leaves_no_mark(
    north_feed: Hl7Feed, patient: Patient
) -> None:
    """The mark is written with the correction: a correction parked in the inbox leaves the
    stored result as it was."""
    feed.receive(oru("D1", filler="F-1", collected="20261101081500"), via="test")
    feed.receive(oru("D2", filler="F-2", value="300", collected="20261101091500"), via="test")
    moved = oru("D3", filler="F-1", value="421", status="C", collected="20261101091500")
    assert feed.receive(moved, via="test").text == "1 result(s): 1 in the unmatched inbox"
    assert not LabResult.objects.exclude(corrected_from="").exists()
