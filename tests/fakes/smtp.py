"""A real SMTP server for tests: aiosmtpd on a free loopback port, recording every message it accepts.

aiosmtpd speaks the protocol as a mail server does (EHLO, MAIL, RCPT, DATA with dot-stuffing, the
RFC 5321 line length limit, a message size limit) and refuses malformed commands the same way. On top
of that the handler checks what receiving servers check in practice, and answers like them:

- a message must have From and Date (RFC 5322 3.6: the only required headers), and To, Subject and
  Message-ID, which RFC 5322 says SHOULD be there and large mailbox providers insist on: 554 otherwise;
- every envelope recipient must appear in To/Cc (our mail never uses Bcc): 554 otherwise;
- addresses in `refused` get 550 5.1.1 at RCPT, as an unknown mailbox does.

aiosmtpd runs in a thread of its own (its Controller); `messages` is appended there and read here, which
is safe for a list. Port 0 does not work with the Controller (it connects to the port it was given to
check that the server is up), so a free port is picked first.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses
from typing import Any

import pytest
from aiosmtpd.controller import Controller

REQUIRED_HEADERS = ("From", "Date", "To", "Subject", "Message-ID")


@dataclass(frozen=True, slots=True)
class ReceivedMail:
    mail_from: str
    recipients: tuple[str, ...]
    message: EmailMessage
    raw: bytes

    @property
    def text(self) -> str:
        """The text/plain body (the whole body for a single-part message)."""
        part = self.message.get_body(preferencelist=("plain",))
        assert isinstance(part, EmailMessage), "the message has no text/plain part"
        return str(part.get_content())


class RecordingHandler:
    def __init__(self) -> None:
        self.messages: list[ReceivedMail] = []
        self.rejected: list[str] = []  # why each refused DATA was refused
        self.refused: set[str] = set()  # recipient addresses answered with 550
        self.on_message: Callable[[], object] = lambda: None  # called in the server's thread

    async def handle_RCPT(  # aiosmtpd's hook names
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.lower() in self.refused:
            return "550 5.1.1 The email account that you tried to reach does not exist"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw: bytes = envelope.original_content or envelope.content
        message = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(message, EmailMessage)
        missing = [name for name in REQUIRED_HEADERS if name not in message]
        if missing:
            return self._reject(f"554 5.6.0 Message lacks {', '.join(missing)}")
        header_addresses = {
            address.lower()
            for _, address in getaddresses(message.get_all("To", []) + message.get_all("Cc", []))
        }
        strangers = [rcpt for rcpt in envelope.rcpt_tos if rcpt.lower() not in header_addresses]
        if strangers:
            return self._reject("554 5.7.1 Envelope recipient not named in To or Cc")
        self.messages.append(ReceivedMail(envelope.mail_from, tuple(envelope.rcpt_tos), message, raw))
        self.on_message()
        return "250 Message accepted for delivery"

    def _reject(self, reply: str) -> str:
        self.rejected.append(reply)
        return reply


class FakeSmtp:
    def __init__(self, handler: RecordingHandler, port: int) -> None:
        self.handler = handler
        self.port = port
        self.url = f"smtp://127.0.0.1:{port}"
        # Set from the server's thread, through the test's event loop, whenever a message is accepted.
        self._arrived = asyncio.Event()
        loop = asyncio.get_running_loop()
        handler.on_message = lambda: loop.call_soon_threadsafe(self._arrived.set)

    @property
    def messages(self) -> list[ReceivedMail]:
        return self.handler.messages

    def refuse(self, address: str) -> None:
        self.handler.refused.add(address.lower())

    async def wait_for(self, count: int, seconds: float = 5.0) -> list[ReceivedMail]:
        """The first `count` messages, waiting up to `seconds` for them to arrive."""
        try:
            async with asyncio.timeout(seconds):
                while len(self.messages) < count:
                    self._arrived.clear()
                    if len(self.messages) < count:
                        await self._arrived.wait()
        except TimeoutError:
            raise AssertionError(
                f"expected {count} mail(s) within {seconds} s, got {len(self.messages)}"
            ) from None
        return self.messages[:count]

    async def nothing_more_than(self, count: int, wait: float = 0.3) -> None:
        """Check, after giving stragglers `wait` seconds, that no more than `count` messages came."""
        await asyncio.sleep(wait)
        assert len(self.messages) <= count, [mail.message["Subject"] for mail in self.messages]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running_fake_smtp() -> Iterator[FakeSmtp]:
    """The server, for as long as the block runs; call it with an event loop running."""
    handler = RecordingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield FakeSmtp(handler, port)
    finally:
        controller.stop()


@pytest.fixture
async def fake_smtp() -> AsyncIterator[FakeSmtp]:
    """A real SMTP server (aiosmtpd) on a free loopback port, recording what it accepts."""
    with running_fake_smtp() as fake:
        yield fake
