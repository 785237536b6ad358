"""The HL7 feed's ways in: POST /api/v1/hl7, `manage.py import_hl7`, the MLLP listener driven by
the hl7 package's own `mllp_send` client, and the clinician's unmatched inbox."""

from __future__ import annotations

import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection

from pathways.feed_models import Hl7Feed, Hl7Message, Hl7Result
from pathways.models import ApiToken, Clinic, LabResult, Patient
from tests.factories import stored_patient
from tests.test_hl7_feed import oru
from tests.workers import start, stop, wait_for

MLLP_PORT = 8911  # this branch's port range: 8900-8999


@pytest.fixture
def north_feed(north_clinic: Clinic) -> Hl7Feed:
    service = User.objects.create_user("northlab-feed")
    return Hl7Feed.objects.create(sending_facility="NORTHLAB", clinic=north_clinic,
                                  service_user=service)  # fmt: skip


@pytest.fixture
def patient(north_clinic: Clinic, alice: User) -> Patient:
    return stored_patient(north_clinic, alice, mrn="N100")


def _post(client: Any, key: str, body: str, content_type: str = "application/hl7-v2") -> Any:
    return client.post("/api/v1/hl7", body, content_type=content_type,
                       HTTP_AUTHORIZATION=f"Token {key}")  # fmt: skip


@pytest.mark.django_db
def test_api_stores_and_answers_with_the_ack(
    client: Any, alice: User, north_feed: Hl7Feed, patient: Patient
) -> None:
    key = ApiToken.issue(user=alice, name="lab", scopes=["hl7"])[1]
    response = _post(client, key, oru("API1"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/hl7-v2")
    assert "MSA|AA|API1" in response.content.decode()
    stored = LabResult.objects.get(patient=patient, collected_on=date(2026, 11, 1))
    assert stored.entered_by == alice
    rejected = _post(client, key, "nonsense", "text/plain")
    assert rejected.status_code == 400 and "MSA|AR" in rejected.content.decode()
    not_utf8 = client.post("/api/v1/hl7", b"MSH|\xff", content_type="text/plain",
                           HTTP_AUTHORIZATION=f"Token {key}")  # fmt: skip
    assert not_utf8.status_code == 400 and "not UTF-8" in not_utf8.content.decode()
    assert _post(client, key, oru("API2"), "application/json").status_code == 415


@pytest.mark.django_db
def test_api_needs_the_hl7_scope_and_a_member_of_the_feeds_clinic(
    client: Any, alice: User, bob: User, north_feed: Hl7Feed, patient: Patient
) -> None:
    read_only = ApiToken.issue(user=alice, name="read", scopes=["read"])[1]
    assert _post(client, read_only, oru("API1")).status_code == 403
    assert client.post("/api/v1/hl7", oru(), content_type="text/plain").status_code == 401
    other = ApiToken.issue(user=bob, name="lab", scopes=["hl7"])[1]
    ack = _post(client, other, oru("API1")).content.decode()
    assert "MSA|AE" in ack and "clinic you are not in" in ack
    assert not LabResult.objects.filter(collected_on=date(2026, 11, 1)).exists()


@pytest.mark.django_db
def test_import_hl7_reads_a_file_of_messages(
    tmp_path: Path, north_feed: Hl7Feed, patient: Patient, capsys: Any
) -> None:
    second = oru("F2", code="2160-0^Creatinine^LN", value="1.1", unit="mg/dL", reference="<1.2")
    path = tmp_path / "results.hl7"
    # MLLP framing in one file, plain line endings in the other message.
    path.write_text("\x0b" + oru("F1") + "\x1c\r" + second.replace("\r", "\n"))
    call_command("import_hl7", str(path))
    output = capsys.readouterr().out
    assert "F1: AA" in output and "F2: AA" in output
    creatinine = LabResult.objects.get(patient=patient, test="creatinine",
                                       collected_on=date(2026, 11, 1))  # fmt: skip
    assert (creatinine.value, creatinine.reference_high) == (1.1, 1.2)
    call_command("import_hl7", str(path))  # the same file again: nothing new
    assert LabResult.objects.filter(collected_on=date(2026, 11, 1)).count() == 2


def test_import_hl7_for_another_clinic_is_not_recorded_as_the_feeds_service_user(
    tmp_path: Path, north_feed: Hl7Feed, south_clinic: Clinic, bob: User
) -> None:
    """`import_hl7 --clinic south` of NORTHLAB's messages stored south's results as written by
    north's feed service user, not a member of south (the feed's authority was already kept to
    its own clinic; its author was not). Found by an audit."""
    patient = stored_patient(south_clinic, bob, mrn="N100")
    path = tmp_path / "south.hl7"
    path.write_text(oru("S-1"))
    call_command("import_hl7", str(path), clinic="south")
    added = LabResult.objects.get(patient=patient, source=LabResult.Source.IMPORTED)
    assert added.entered_by is None
    assert added.history.get(history_type="+").history_user is None


@pytest.mark.django_db
def test_import_hl7_says_a_message_the_database_did_not_take_and_goes_on(
    tmp_path: Path, north_feed: Hl7Feed, patient: Patient, monkeypatch: Any, capsys: Any
) -> None:
    """A database error on one message ended the command with a traceback: the messages after
    it were neither imported nor reported. Found by an audit."""
    from django.db import OperationalError

    from pathways import feed

    real = feed._store_raw

    def locked_for_db1(oru_message: Any, *args: Any, **kwargs: Any) -> Any:
        if oru_message.control_id == "DB1":
            raise OperationalError("database is locked")
        return real(oru_message, *args, **kwargs)

    monkeypatch.setattr(feed, "_store_raw", locked_for_db1)
    path = tmp_path / "results.hl7"
    path.write_text(oru("DB1") + oru("DB2", sub_id="2"))
    with pytest.raises(CommandError, match="1 message"):
        call_command("import_hl7", str(path))
    out = capsys.readouterr().out
    assert "message 1: not stored (OperationalError: database is locked)" in out
    assert "DB2: AA" in out and Hl7Message.objects.filter(control_id="DB2").exists()


@pytest.mark.django_db
def test_import_hl7_clinic_override_and_errors(
    tmp_path: Path, patient: Patient, north_clinic: Clinic
) -> None:
    path = tmp_path / "results.hl7"
    path.write_text(oru("F1", facility="UNKNOWN"))
    with pytest.raises(CommandError, match="1 message"):
        call_command("import_hl7", str(path))
    call_command("import_hl7", str(path), "--clinic", "north")
    assert LabResult.objects.filter(patient=patient, collected_on=date(2026, 11, 1)).exists()
    with pytest.raises(CommandError, match="--clinic"):
        call_command("import_hl7", str(path), "--clinic", "nowhere")
    (tmp_path / "empty.hl7").write_text("")
    with pytest.raises(CommandError, match="no HL7 message"):
        call_command("import_hl7", str(tmp_path / "empty.hl7"))
    with pytest.raises(CommandError, match="--encoding: no encoding named 'klingon'"):
        call_command("import_hl7", str(path), "--encoding", "klingon")
    # Named as the listener names it (it said "no encoding named 'hex'").
    with pytest.raises(CommandError, match="--encoding: 'hex' is not a text encoding"):
        call_command("import_hl7", str(path), "--encoding", "hex")


@pytest.mark.django_db
def test_import_hl7_reads_a_latin_1_file_only_when_told(
    tmp_path: Path, north_feed: Hl7Feed, patient: Patient, capsys: Any
) -> None:
    path = tmp_path / "results.hl7"
    message = oru("L1").replace("Margaret", "Ren\u00e9e")
    path.write_bytes(message.encode("latin-1"))
    at = message.index("\u00e9")  # one byte per character in Latin-1
    with pytest.raises(CommandError, match=f"byte {at} of .* is not utf-8 \\(give --encoding\\)"):
        call_command("import_hl7", str(path))
    assert not Hl7Message.objects.exists()  # nothing read with a stand-in character
    call_command("import_hl7", str(path), "--encoding", "latin-1")
    assert "Ren\u00e9e" in Hl7Message.objects.get(control_id="L1").raw


@pytest.mark.django_db
def test_import_hl7_names_what_in_a_file_is_not_imported(
    tmp_path: Path, north_feed: Hl7Feed, patient: Patient, capsys: Any
) -> None:
    """hl7.split_file dropped a segment before the first MSH with a log line only, added one
    after a batch trailer to the message before it, and read no batch count."""
    first, second = oru("B1"), oru("B2")
    pid = first.split("\r")[1]
    path = tmp_path / "batch.hl7"
    path.write_text(
        f"FHS|^~\\&\r{pid}\rBHS|^~\\&\r{first}BTS|2\rBHS|^~\\&\r{second}BTS|1\r{pid}\rFTS|3\r"
    )
    with pytest.raises(CommandError, match="0 message\\(s\\) were not accepted and the file has 4"):
        call_command("import_hl7", str(path))
    output = capsys.readouterr().out
    assert "B1: AA" in output and "B2: AA" in output
    assert "segment 2 (PID) is not part of a message (no MSH before it): not imported" in output
    assert "segment 8: BTS-1 says 2 messages, the file holds 1 (cut short?)" in output
    assert "segment 15 (PID) is not part of a message" in output
    assert "segment 16: FTS-1 says 3 batches, the file holds 2 (cut short?)" in output
    assert Hl7Message.objects.get(control_id="B2").raw.count("PID|") == 1


@pytest.mark.django_db
def test_inbox_screen_shows_own_clinic_and_applies_a_match(
    client: Any, alice: User, bob: User, north_feed: Hl7Feed, patient: Patient
) -> None:
    from pathways import feed

    feed.receive(oru("M1", mrn="TEMP-9"), via="test")
    parked = Hl7Result.objects.get()
    client.force_login(bob)
    assert "TEMP-9" not in client.get("/lab-feed/inbox/").content.decode()
    assert (
        client.post(f"/lab-feed/inbox/{parked.pk}/", {f"r{parked.pk}-mrn": "N100"}).status_code
        == 404
    )
    client.force_login(alice)
    page = client.get("/lab-feed/inbox/").content.decode()
    assert "TEMP-9" in page and "no patient with MRN TEMP-9" in page
    bad = client.post(f"/lab-feed/inbox/{parked.pk}/", {f"r{parked.pk}-mrn": "NOPE"})
    assert bad.status_code == 400 and "No patient with this MRN" in bad.content.decode()
    response = client.post(f"/lab-feed/inbox/{parked.pk}/", {f"r{parked.pk}-mrn": "N100"})
    assert response.status_code == 302
    parked.refresh_from_db()
    assert parked.state == Hl7Result.State.APPLIED
    assert LabResult.objects.filter(patient=patient, collected_on=date(2026, 11, 1)).exists()


@pytest.mark.django_db
def test_a_result_alpcare_should_not_store_is_dismissed_from_the_inbox_with_a_note(
    client: Any, alice: User, bob: User, north_feed: Hl7Feed, patient: Patient
) -> None:
    """A result that could never be matched (a patient alpcare does not follow) stayed in the
    inbox for good: nothing could clear it."""
    from pathways import feed

    feed.receive(oru("D1", mrn="VISITOR-7"), via="test")
    parked = Hl7Result.objects.get()
    url, field = f"/lab-feed/inbox/{parked.pk}/dismiss/", f"d{parked.pk}-note"
    client.force_login(bob)  # another clinic
    assert client.post(url, {field: "not ours"}).status_code == 404
    client.force_login(alice)
    refused = client.post(url, {field: "  "})
    assert refused.status_code == 400 and "This field is required." in refused.content.decode()
    assert "VISITOR-7" in refused.content.decode()  # still listed, the error in its row
    response = client.post(url, {field: "Visiting patient, not followed here"}, follow=True)
    page = response.content.decode()
    assert "Dismissed, not stored: 6768-6 412 U/L for MRN VISITOR-7." in page
    assert "No unmatched results." in page
    parked.refresh_from_db()
    assert parked.state == Hl7Result.State.DISMISSED
    assert (parked.dismissed_by, parked.dismissal_note) == (
        alice,
        "Visiting patient, not followed here",
    )
    assert parked.dismissed_at is not None
    assert parked.history.first().history_user == alice
    assert not LabResult.objects.filter(collected_on=date(2026, 11, 1)).exists()
    again = client.post(url, {field: "twice"})
    assert again.status_code == 404  # no longer in the inbox
    # Listed under the inbox, and put back by one click (a dismissal made by mistake).
    listed = page[page.index('id="dismissed-heading"') :]
    assert "VISITOR-7" in listed and "Visiting patient, not followed here" in listed
    restore = f"/lab-feed/inbox/{parked.pk}/restore/"
    client.force_login(bob)
    assert client.post(restore).status_code == 404
    client.force_login(alice)
    back = client.post(restore, follow=True).content.decode()
    assert "Back in the inbox: 6768-6 412 U/L for MRN VISITOR-7." in back
    assert 'id="dismissed-heading"' not in back
    parked.refresh_from_db()
    assert (parked.state, parked.dismissed_by, parked.dismissal_note) == ("unmatched", None, "")
    assert parked.history.filter(state="dismissed").exists()  # the dismissal stays on record
    assert client.post(restore).status_code == 404  # not a dismissed one any more


@pytest.mark.django_db
def test_a_restore_that_someone_else_made_first_is_said_not_a_server_error(
    client: Any, alice: User, north_feed: Hl7Feed, patient: Patient, monkeypatch: Any
) -> None:
    """Two clinicians restore the same dismissed result: the second request read it as
    dismissed, then found it back in the inbox under its lock, and answered with a 500."""
    from pathways import feed, inbox

    feed.receive(oru("R1", mrn="VISITOR-8"), via="test")
    parked = Hl7Result.objects.get()
    feed.inbox_dismiss(parked, user=alice, note="Visiting patient")
    read_as_dismissed = inbox._parked

    def other_clinician_restores_first(*args: Any) -> Hl7Result:
        result = read_as_dismissed(*args)
        feed.inbox_restore(result)
        return result

    monkeypatch.setattr(inbox, "_parked", other_clinician_restores_first)
    client.force_login(alice)
    response = client.post(f"/lab-feed/inbox/{parked.pk}/restore/?page=1")
    assert response.status_code == 302 and response["Location"] == "/lab-feed/inbox/?page=1"
    page = client.get(response["Location"]).content.decode()
    assert "this result is no longer among the dismissed ones" in page
    parked.refresh_from_db()
    assert parked.state == Hl7Result.State.UNMATCHED and parked.history.count() == 3


@pytest.mark.django_db
def test_a_unit_of_another_test_chosen_in_the_inbox_is_said_not_a_server_error(
    client: Any, alice: User, north_feed: Hl7Feed, patient: Patient
) -> None:
    """The unit list offers every test's units; mg/dL for an ALP reached the engine (KeyError)."""
    from pathways import feed

    feed.receive(oru("U1", unit="IU/L"), via="test")
    parked = Hl7Result.objects.get()
    client.force_login(alice)
    response = client.post(f"/lab-feed/inbox/{parked.pk}/", {f"r{parked.pk}-unit": "mg/dL"})
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    assert "Still unmatched: unit mg/dL (as matched) is not one of U/L, ukat/L" in page
    parked.refresh_from_db()
    assert (parked.state, parked.unit_matched) == (Hl7Result.State.UNMATCHED, "")
    applied = client.post(f"/lab-feed/inbox/{parked.pk}/", {f"r{parked.pk}-unit": "U/L"})
    parked.refresh_from_db()
    assert applied.status_code == 302 and parked.state == Hl7Result.State.APPLIED


@pytest.mark.django_db
def test_the_inbox_pages_through_every_unmatched_result(
    client: Any, alice: User, north_feed: Hl7Feed, patient: Patient, monkeypatch: Any
) -> None:
    """It listed the newest 200 and no more: an older one was out of sight with nothing said.
    Now a page at a time (2 here), and a match made on page 2 comes back to page 2."""
    from pathways import feed

    monkeypatch.setattr("pathways.inbox.RESULTS_PER_PAGE", 2)
    for number in range(3):
        feed.receive(oru(f"P{number}", mrn=f"TEMP-{number}"), via="test")
    client.force_login(alice)
    first = client.get("/lab-feed/inbox/").content.decode()
    assert "TEMP-2" in first and "TEMP-1" in first and "TEMP-0" not in first
    assert "Showing 1\u20132 of 3 unmatched results, newest first" in first
    assert 'href="?page=2"' in first
    second = client.get("/lab-feed/inbox/?page=2").content.decode()
    assert "TEMP-0" in second and "Showing 3\u20133 of 3" in second
    oldest = Hl7Result.objects.get(mrn="TEMP-0")
    assert f'action="/lab-feed/inbox/{oldest.pk}/?page=2"' in second
    bad = client.post(f"/lab-feed/inbox/{oldest.pk}/?page=2", {f"r{oldest.pk}-mrn": "NOPE"})
    assert bad.status_code == 400 and "TEMP-0" in bad.content.decode()
    done = client.post(f"/lab-feed/inbox/{oldest.pk}/?page=2", {f"r{oldest.pk}-mrn": "N100"})
    assert done.status_code == 302 and done["Location"] == "/lab-feed/inbox/?page=2"


def _frame(*messages: str) -> bytes:
    return b"".join(b"\x0b" + m.encode() + b"\x1c\r" for m in messages)


@pytest.fixture
def shared_database(transactional_db: None) -> None:
    """A database another process sees, with the rule set (an earlier transactional test's
    flush removes the migration's one)."""
    if connection.vendor != "postgresql":
        pytest.skip("a listener process needs the shared PostgreSQL test database (CI runs it)")
    from pathways.models import RuleSet
    from pathways.rules import install_catalogue

    if not RuleSet.objects.filter(is_current=True).exists():
        install_catalogue(version="2026-11-29.1")


@pytest.mark.django_db(transaction=True)
def test_mllp_round_trip_with_mllp_send(
    shared_database: None, tmp_path: Path, north_feed: Hl7Feed, patient: Patient
) -> None:
    listener = start("hl7_listen", "--port", str(MLLP_PORT), log=tmp_path / "listener.log")
    try:

        def listening() -> bool:
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", MLLP_PORT)) == 0

        wait_for(listening, timeout=60, what="the MLLP listener")
        messages = tmp_path / "messages.hl7"
        corrected = oru("R2", value="430", status="C")
        latin_1 = oru("R4").replace("Margaret", "Ren\u00e9e").encode("latin-1")
        messages.write_bytes(
            _frame(
                oru("R1"), oru("R1"), corrected, oru("R3", facility="ELSEWHERE"), "this is not HL7"
            )
            + b"\x0b"
            + latin_1
            + b"\x1c\r"
        )
        mllp_send = Path(sys.executable).parent / "mllp_send"
        sent = subprocess.run(
            [str(mllp_send), "--file", str(messages), "--port", str(MLLP_PORT), "127.0.0.1"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
    finally:
        stop(listener)
    acks = [line for line in sent.stdout.replace("\r", "\n").splitlines() if line.startswith("MSA")]
    assert [ack.split("|")[1] for ack in acks] == ["AA", "AA", "AA", "AE", "AR", "AR"], sent.stdout
    assert "duplicate" in acks[1] and "ELSEWHERE" in acks[3]
    # Not read with a stand-in character: refused, naming the byte (the é of the name).
    assert acks[5].split("|")[2] == "R4"
    assert f"byte {latin_1.index(0xE9)} of the message is not utf-8 text" in acks[5]
    stored = LabResult.objects.get(patient=patient, collected_on=date(2026, 11, 1))
    assert stored.value == 430 and stored.entered_by == north_feed.service_user
    assert Hl7Message.objects.filter(control_id="R1").count() == 1


def test_the_listener_refuses_an_unknown_encoding_before_it_listens(monkeypatch: Any) -> None:
    """It listened, and every connection died decoding its first message: no ACK, ever."""
    from pathways.management.commands import hl7_listen

    def would_listen(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("hl7_listen started listening with --encoding klingon")

    monkeypatch.setattr(hl7_listen, "start_hl7_server", would_listen)
    with pytest.raises(CommandError, match="--encoding: no encoding named 'klingon'"):
        call_command("hl7_listen", "--port", "1", "--encoding", "klingon")


@pytest.mark.parametrize("encoding", ["hex", "rot13", "base64"])
def test_the_listener_refuses_a_codec_that_is_not_a_text_encoding_before_it_listens(
    monkeypatch: Any, encoding: str
) -> None:
    """codecs.lookup() finds bytes-to-bytes and str-to-str codecs too: it listened, and every
    message's block.decode() raised LookupError, uncaught by the connection: no ACK, ever.
    Found by an audit."""
    from pathways.management.commands import hl7_listen

    def would_listen(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"hl7_listen started listening with --encoding {encoding}")

    monkeypatch.setattr(hl7_listen, "start_hl7_server", would_listen)
    with pytest.raises(CommandError, match=f"--encoding: '{encoding}' is not a text encoding"):
        call_command("hl7_listen", "--port", "0", "--encoding", encoding)


def _listen_in_a_thread(*args: str) -> None:
    """`manage.py hl7_listen` as its own process runs it: outside any event loop (in the
    browser tests' run, pytest-playwright leaves one running in the main thread, and
    asyncio.run refuses to start there)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(call_command, "hl7_listen", *args).result()


def test_the_listener_says_its_port_is_in_use() -> None:
    """An OSError [Errno 98] traceback from asyncio, not a CommandError naming --port. Found by
    an audit."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(CommandError, match=f"--port: {port} is already in use"):
            _listen_in_a_thread("--host", "127.0.0.1", "--port", str(port))


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_the_listener_refuses_a_port_out_of_range(port: str) -> None:
    """An OverflowError "bind(): port must be 0-65535" traceback. Found by an audit."""
    with pytest.raises(CommandError, match=f"--port: a TCP port from 0 to 65535, not {port}"):
        call_command("hl7_listen", "--port", port)


def test_the_listener_refuses_a_host_it_cannot_resolve() -> None:
    """A socket.gaierror traceback, not a CommandError naming --host. Found by an audit."""
    with pytest.raises(CommandError, match=r"--host: cannot resolve 'no-such-host\.invalid'"):
        _listen_in_a_thread("--host", "no-such-host.invalid", "--port", "0")


@pytest.mark.django_db
def test_import_hl7_reads_a_utf8_file_with_a_bom(
    tmp_path: Path, north_feed: Hl7Feed, patient: Patient, capsys: Any
) -> None:
    """A file saved as "UTF-8 with BOM" (import_fhir accepts one): the BOM made the first
    segment "\\ufeffMSH", so the whole message was reported as segments "not part of a message
    (no MSH before it)": nothing imported, and never said why. Found by an audit."""
    import codecs

    path = tmp_path / "results.hl7"
    path.write_bytes(codecs.BOM_UTF8 + oru("BOM1").encode())
    call_command("import_hl7", str(path))
    assert "BOM1: AA" in capsys.readouterr().out
    assert LabResult.objects.filter(patient=patient, collected_on=date(2026, 11, 1)).exists()
