from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
from typing import Any

from asgiref.sync import sync_to_async
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections
from hl7.mllp import InvalidBlockError, start_hl7_server

from pathways import feed
from pathways.interop import hl7v2

_log = logging.getLogger(__name__)
LIMIT = 8 * 1024 * 1024  # the largest message read, in bytes


def _receive(text: str) -> feed.Outcome:
    close_old_connections()  # a database restart between messages is survived
    return feed.receive(text, via="mllp")


class Command(BaseCommand):
    help = (
        "Receive HL7 v2 ORU^R01 lab results over MLLP and answer each message with an ACK "
        "(AA stored, AE not storable with the reason, AR not HL7). Only sending facilities "
        "configured as HL7 feeds in the admin are accepted; results are recorded as the "
        "feed's service user."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="address (default loopback)")
        parser.add_argument("--port", type=int, default=2575, help="TCP port (default 2575)")
        parser.add_argument("--encoding", default="utf-8", help="message encoding (utf-8)")

    def handle(self, *args: Any, host: str, port: int, encoding: str, **options: Any) -> None:
        # Refused here, not by every connection (with no ACK): an unknown name, or a codec
        # that is not bytes-to-text (hex, base64, rot13), which codecs.lookup() finds too.
        if (problem := hl7v2.encoding_problem(encoding)) is not None:
            raise CommandError(f"--encoding: {problem}")
        if not 0 <= port <= 65535:
            raise CommandError(f"--port: a TCP port from 0 to 65535, not {port}")
        asyncio.run(self._serve(host, port, encoding))

    async def _serve(self, host: str, port: int, encoding: str) -> None:
        # One thread for the database (thread_sensitive): messages are applied one at a time,
        # each in its own transaction, while connections are read concurrently.
        receive = sync_to_async(_receive, thread_sensitive=True)

        async def connection(reader: Any, writer: Any) -> None:
            try:
                while True:
                    try:
                        block = await reader.readblock()
                    except ValueError as error:  # larger than the limit: never read
                        reason = f"the message is larger than this listener accepts ({LIMIT} bytes)"
                        writer.writeblock(hl7v2.build_ack("", "AR", reason).encode(encoding))
                        await writer.drain()
                        raise InvalidBlockError(str(error)) from None  # the rest is unframed
                    try:
                        text = block.decode(encoding)
                    except UnicodeDecodeError as error:  # never read with stand-in characters
                        reason = f"byte {error.start} of the message is not {encoding} text"
                        ack = hl7v2.build_ack(block.decode(encoding, "replace"), "AR", reason)
                    else:
                        try:
                            ack = (await receive(text)).ack
                        except Exception:  # the database away or locked: the lab sends it again
                            _log.exception("an HL7 message could not be received")
                            reason = "not stored: alpcare could not store it now; send it again"
                            ack = hl7v2.build_ack(text, "AE", reason)
                    writer.writeblock(ack.encode(encoding, errors="replace"))
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass  # the sender closed the connection
            except (InvalidBlockError, ValueError) as error:
                self.stderr.write(f"closing a connection: {error}")
            finally:
                writer.close()

        server = await self._listen(connection, host, port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with server:
            self.stdout.write(f"Listening for HL7 v2 (MLLP) on {host}:{port}")
            self.stdout.flush()
            await stop.wait()
        self.stdout.write("Stopped.")

    async def _listen(self, connection: Any, host: str, port: int) -> Any:
        """The server, or a CommandError naming the option at fault (not an OSError traceback)."""
        try:
            return await start_hl7_server(connection, host, port, limit=LIMIT)
        except socket.gaierror as error:
            raise CommandError(f"--host: cannot resolve {host!r} ({error.strerror})") from None
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise CommandError(f"--port: {port} is already in use on {host}") from None
            if error.errno == errno.EACCES:
                raise CommandError(f"--port: not permitted to listen on {port}") from None
            if error.errno == errno.EADDRNOTAVAIL:
                raise CommandError(f"--host: {host} is not an address of this machine") from None
            raise CommandError(f"--host/--port: cannot listen on {host}:{port}: {error}") from None
