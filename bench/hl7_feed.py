"""HL7 lab feed benchmark: ORU^R01 messages for many patients sent over MLLP to `hl7_listen`.
(Named hl7_feed.py: a bench/hl7.py would shadow the hl7 package for mypy and for scripts.)

    .venv/bin/python bench/hl7_feed.py [--messages 10000] [--patients 1000] [--connections 1]
        [--port 8950] [--database-url postgres://postgres@127.0.0.1:5432/alpcare_hl7_bench]

Creates (drops first) the PostgreSQL database named in --database-url, migrates it, seeds one
clinic with --patients synthetic patients (bench/bulk.py) and an HL7 feed for it, starts
`manage.py hl7_listen` on --port (loopback) and sends --messages ORU^R01 messages (one ALP
result each, a distinct collection time, patients in turn) over --connections MLLP
connections, each waiting for its ACK before the next message (original-mode acknowledgement,
as a laboratory system sends). Every result is stored, re-assesses its patient and refreshes
the follow-ups, as in production.

Prints messages per second, ACK latency p50/p95/max, the ACK codes, and the database counts:
messages stored, results applied and lab results imported, each of which must equal
--messages (stored exactly once). Target: p95 ACK latency under 100 ms. Exit status 1 when a
count or the target is missed.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

from throwaway_db import recreate_database  # the bench folder: this script's own

ROOT = Path(__file__).resolve().parent.parent
SB, EB, CR = b"\x0b", b"\x1c", b"\r"


def _prepare(patients: int) -> list[str]:
    """Migrate and seed; the patients' MRNs."""
    import django

    django.setup()
    from bulk import seed_assessed
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.utils import timezone

    from pathways.feed_models import Hl7Feed
    from pathways.models import Clinic, Patient

    call_command("migrate", verbosity=0)
    clinic = Clinic.objects.create(name="Feed clinic", slug="feed")
    started = time.perf_counter()
    seed_assessed(clinic=clinic, count=patients, start=0, results=5, today=timezone.localdate())
    print(f"  seeded {patients} patients in {time.perf_counter() - started:.1f} s")
    service = User.objects.create_user("benchlab-feed")
    Hl7Feed.objects.create(sending_facility="BENCHLAB", clinic=clinic, service_user=service)
    return list(Patient.objects.filter(clinic=clinic).values_list("mrn", flat=True))


def message(number: int, mrn: str, when: datetime) -> bytes:
    stamp = when.strftime("%Y%m%d%H%M") + "+0000"
    value = 90 + (number * 37) % 400
    return (
        f"MSH|^~\\&|LIS|BENCHLAB|ALPCARE|FEED|{stamp}||ORU^R01^ORU_R01|B{number:07d}|P|2.5.1\r"
        f"PID|1||{mrn}^^^BENCH^MR||Patient^Bench\r"
        f"OBR|1||ORD{number:07d}|6768-6^ALP^LN|||{stamp}\r"
        f"OBX|1|NM|6768-6^Alkaline phosphatase^LN|1|{value}|U/L|40-129|H|||F|||{stamp}\r"
    ).encode()


def _read_ack(sock: socket.socket, buffer: bytearray) -> bytes:
    while EB + CR not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the listener closed the connection")
        buffer.extend(chunk)
    end = buffer.index(EB + CR)
    block = bytes(buffer[1:end])
    del buffer[: end + 2]
    return block


def _sender(port: int, frames: list[bytes], latencies: list[float], codes: list[str]) -> None:
    buffer = bytearray()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for frame in frames:
            started = time.perf_counter()
            sock.sendall(SB + frame + EB + CR)
            ack = _read_ack(sock, buffer)
            latencies.append((time.perf_counter() - started) * 1000)
            msa = next(s for s in ack.split(CR) if s.startswith(b"MSA"))
            codes.append(msa.split(b"|")[1].decode())


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the listener exited; see its log")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit("the listener did not start within 60 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--patients", type=int, default=1_000)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--port", type=int, default=8950)
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/alpcare_hl7_bench"
    )
    args = parser.parse_args()
    os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alpcare.settings")
    os.environ.setdefault("DJANGO_DEBUG", "1")
    sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

    print(f"HL7 feed: {args.messages} messages for {args.patients} patients over MLLP")
    recreate_database(args.database_url, create=True)
    try:
        mrns = _prepare(args.patients)
        start = datetime(2026, 1, 1, 6, 0)
        frames = [
            message(n, mrns[n % len(mrns)], start + timedelta(minutes=n))
            for n in range(args.messages)
        ]
        log = Path("/tmp") / f"bench-hl7-listener-{os.getpid()}.log"
        with log.open("wb") as out:
            listener = subprocess.Popen(
                [sys.executable, "manage.py", "hl7_listen", "--port", str(args.port)],
                cwd=ROOT, env={**os.environ, "DJANGO_DEBUG": "0",
                               "DJANGO_ALLOWED_HOSTS": "localhost",
                               "DJANGO_SECRET_KEY": secrets.token_urlsafe(50)},
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            _wait_listening(args.port, listener)
            latencies: list[float] = []
            codes: list[str] = []
            shares = [frames[i :: args.connections] for i in range(args.connections)]
            threads = [
                threading.Thread(target=_sender, args=(args.port, share, latencies, codes))
                for share in shares
            ]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
        finally:
            listener.terminate()
            listener.wait(timeout=30)
        return _report(args, elapsed, latencies, codes)
    finally:
        from django.db import connections

        connections.close_all()
        recreate_database(args.database_url, create=False)


def _report(
    args: argparse.Namespace, elapsed: float, latencies: list[float], codes: list[str]
) -> int:
    from pathways.feed_models import Hl7Message, Hl7Result
    from pathways.models import LabResult

    ordered = sorted(latencies)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    print(f"  sent {len(latencies)} in {elapsed:.1f} s: {len(latencies) / elapsed:.0f} messages/s "
          f"over {args.connections} connection(s)")  # fmt: skip
    print(f"  ACK latency ms: p50 {statistics.median(ordered):.1f}  p95 {p95:.1f}  "
          f"max {ordered[-1]:.1f}  (target p95 < 100)")  # fmt: skip
    print("  ACK codes: " + ", ".join(f"{c} {codes.count(c)}" for c in sorted(set(codes))))
    counts = {
        "messages stored": Hl7Message.objects.filter(control_id__startswith="B").count(),
        "distinct control IDs": Hl7Message.objects.values("control_id").distinct().count(),
        "results applied": Hl7Result.objects.filter(state="applied").count(),
        "lab results imported": LabResult.objects.filter(source="imported").count(),
    }
    for name, count in counts.items():
        print(f"  database: {name} {count} (expected {args.messages})")
    ok = all(count == args.messages for count in counts.values()) and codes.count("AA") == len(
        codes
    )
    return 0 if ok and p95 < 100 else 1


if __name__ == "__main__":
    sys.exit(main())
