"""The MLLP listener (`manage.py hl7_listen`), run in this process on a free port against the
test database: every message is answered with an ACK naming its control ID, whatever goes
wrong while it is stored."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import SyncToAsync
from django.contrib.auth.models import User
from django.db import OperationalError, connections

from pathways import feed
from pathways.feed_models import Hl7Feed
from pathways.management.commands.hl7_listen import Command
from pathways.models import Clinic, Membership, Patient, RuleSet
from pathways.rules import install_catalogue
from tests.factories import stored_patient
from tests.test_hl7_feed import oru

SB, EB = b"\x0b", b"\x1c\r"
TIMEOUT = 15


def frame(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return SB + data + EB


class Listener:
    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.loop = asyncio.new_event_loop()
        self.stoppers: list[Any] = []
        # The command stops on SIGINT/SIGTERM; here the test stops it (not this process).
        setattr(self.loop, "add_signal_handler", self._keep_stopper)  # noqa: B010
        self.command = Command(stdout=io.StringIO(), stderr=io.StringIO())
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _keep_stopper(self, sig: int, callback: Any) -> None:
        self.stoppers.append(callback)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.command._serve("127.0.0.1", self.port, "utf-8"))
        except BaseException as error:  # reported by stop()
            self.error = error
        finally:
            self.loop.close()

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                probe.settimeout(1)
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError("listener did not start")

    def stop(self) -> None:
        if self.thread.is_alive():
            callbacks = list(self.stoppers)
            self.loop.call_soon_threadsafe(lambda: [cb() for cb in callbacks])
            self.thread.join(TIMEOUT)
        assert self.error is None, self.error

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)
        sock.settimeout(TIMEOUT)
        return sock


def read_ack(sock: socket.socket, timeout: float = TIMEOUT) -> str:
    """One framed reply, or '' if the listener closed the connection."""
    sock.settimeout(timeout)
    data = b""
    while EB not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return ""
        data += chunk
    assert data.startswith(SB), data
    return data[1 : data.index(EB)].decode()


def msa(ack: str) -> list[str]:
    line = next(seg for seg in ack.split("\r") if seg.startswith("MSA"))
    return line.split("|")


@pytest.fixture
def lab(transactional_db: None) -> Iterator[tuple[Listener, Hl7Feed, Patient]]:
    if not RuleSet.objects.filter(is_current=True).exists():
        install_catalogue(version="2026-11-29.1")
    north = Clinic.objects.create(name="North Haematology", slug="north")
    alice = User.objects.create_user("alice-ei")
    Membership.objects.create(user=alice, clinic=north, role=Membership.Role.CLINICIAN)
    service = User.objects.create_user("northlab-feed")
    hl7feed = Hl7Feed.objects.create(
        sending_facility="NORTHLAB",
        clinic=north,
        service_user=service,
        assigning_authority="NORTHHOSP",
    )
    patient = stored_patient(north, alice, mrn="N100")
    listener = Listener()
    listener.start()
    try:
        yield listener, hl7feed, patient
    finally:
        listener.stop()
        # The command's database work ran on asgiref's one thread for sync code: its
        # connection would keep the test database open past the session.
        SyncToAsync.single_thread_executor.submit(connections.close_all).result(TIMEOUT)
        assert not listener.thread.is_alive(), "listener thread still running"


def _roundtrip(listener: Listener, message: str) -> str:
    with listener.connect() as sock:
        sock.sendall(frame(message))
        return read_ack(sock)


def test_a_message_whose_processing_raises_is_answered_ae(lab: Any, monkeypatch: Any) -> None:
    """Applying raises inside the transaction: AE, and the listener goes on."""
    listener, _, _ = lab

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(feed, "apply_result", broken)
    ack = _roundtrip(listener, oru("E1"))
    assert msa(ack)[1:3] == ["AE", "E1"], ack


def test_a_database_error_while_storing_is_answered_not_dropped(lab: Any, monkeypatch: Any) -> None:
    """A database error while the raw message was stored ("database is locked", a restart)
    escaped feed.receive: the listener closed the connection with no ACK at all. Found by an
    audit."""
    listener, _, _ = lab

    def locked(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("database is locked")

    monkeypatch.setattr(feed, "_store_raw", locked)
    ack = _roundtrip(listener, oru("E2"))
    assert ack != "", "the connection was closed without an ACK"
    assert msa(ack)[1:3] == ["AE", "E2"], ack
    monkeypatch.undo()
    # and the listener still answers
    assert msa(_roundtrip(listener, oru("E3", sub_id="3")))[1:3] == ["AA", "E3"]


def test_an_oversized_frame_is_answered_ar_not_a_dropped_connection(lab: Any) -> None:
    """A frame over the listener's 8 MB limit closed the connection with no ACK, so the sender
    resends it for ever. Found by an audit."""
    listener, _, _ = lab
    big = oru("BIG1").replace("OBX|1|NM|", "NTE|1||" + "x" * (9 * 1024 * 1024) + "\rOBX|1|NM|")
    with listener.connect() as sock:
        try:
            sock.sendall(frame(big))
            ack = read_ack(sock, timeout=30)
        except (ConnectionResetError, BrokenPipeError):
            ack = ""
    assert ack != "", "the connection was closed without an ACK"
    assert msa(ack)[1] == "AR", ack
    assert msa(_roundtrip(listener, oru("BIG2")))[1:3] == ["AA", "BIG2"]


@pytest.mark.parametrize(
    ("sent", "as_sent", "control_id"),
    [("|NOVER1|P|2.5.1", "|NOVER1", "NOVER1"), ("ORU^R01^ORU_R01", "ADT", "ADT1")],
    ids=["no MSH-11 and MSH-12", "MSH-9 without a trigger"],
)
@pytest.mark.django_db
def test_a_message_too_broken_to_answer_by_the_book_is_acked_with_its_control_id(
    sent: str, as_sent: str, control_id: str
) -> None:
    """The hl7 package cannot build an ACK for these; the fallback ACK named no control ID
    though MSH-10 could be read. Found by an audit."""
    ack = feed.receive(oru(control_id).replace(sent, as_sent), via="test").ack
    assert msa(ack)[1:3] == ["AR", control_id], ack
