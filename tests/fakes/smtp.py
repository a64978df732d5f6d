"""A real SMTP server for tests: aiosmtpd on a free loopback port, recording every message it accepts.

aiosmtpd speaks the protocol as a mail server does (EHLO, MAIL, RCPT, DATA with dot-stuffing, the
RFC 5321 line length limit, a message size limit) and refuses malformed commands the same way. On top
of that the handler checks what receiving servers check in practice, and answers like them:

- a message must have From and Date (RFC 5322 3.6: the only required headers), and To, Subject and
  Message-ID, which RFC 5322 says SHOULD be there and large mailbox providers insist on: 554 otherwise;
- every envelope recipient must appear in To/Cc (our mail never uses Bcc): 554 otherwise;
- addresses in `refused` get 550 5.1.1 at RCPT, as an unknown mailbox does.

What a sender must survive, scripted or at random:

- `fail(address, reply, times)`: the next `times` transactions to that address get `reply`, at RCPT for
  most codes (421 busy, 450 mailbox unavailable, 550 no such user...) and at the end of DATA for 451, 552
  and 554, where servers give them (RFC 5321 4.2.2, 4.5.3.1); after a 421 the server closes the
  connection, as RFC 5321 3.8 has it. Scripts for one address are played in the order they were given;
- `faults(FaultPlan)` (tests/fakes/faults.py), drawn at the end of DATA with the recipients as the key:
  "421" (reply and close), "451" (temporary refusal), "drop" (the connection closed without a reply, the
  message not stored: the client sees the server disconnect) and "slow" (the message stored, then the
  reply `slow_seconds` late: a client that gives up sooner cannot tell whether it was delivered);
- `delivered()` counts the accepted messages by (recipient, Message-ID): above 1 is a duplicate.

aiosmtpd runs in a thread of its own (its Controller) with its own event loop, so the handler's state,
written there and read or arranged from the test's thread, is guarded by a lock. Port 0 does not work with
the Controller (it connects to the port it was given to check that the server is up), so a free port is
picked first. `record=False` keeps counters and delivered() only and parses headers alone, for sending
runs too large to keep every message.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses
from typing import Any, Literal

import pytest
from aiosmtpd.controller import Controller

from tests.fakes.faults import FaultPlan

REQUIRED_HEADERS = ("From", "Date", "To", "Subject", "Message-ID")
FAULTS = ("421", "451", "drop", "slow")  # what a FaultPlan may inject at the end of DATA
FAULT_REPLIES = {
    "421": "421 4.7.0 Try again later, closing connection",
    "451": "451 4.3.0 Mail server temporarily rejected message",
}
# Replies that belong at the end of DATA; every other scripted reply is given at RCPT.
_DATA_CODES = {451, 552, 554}
_REPLY = re.compile(r"[245][0-9][0-9][ -].*")

Stage = Literal["RCPT", "DATA"]


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


@dataclass
class _Script:
    reply: str
    stage: Stage
    remaining: int


class RecordingHandler:
    def __init__(self, *, record: bool = True) -> None:
        self.record = record
        self.messages: list[ReceivedMail] = []
        self.rejected: list[str] = []  # why each refused DATA was refused
        self.refused: set[str] = set()  # recipient addresses answered with 550
        self.on_message: Callable[[], object] = lambda: None  # called in the server's thread
        self.plan: FaultPlan | None = None
        self.injected: list[tuple[str, str]] = []  # (fault or scripted reply code, recipient(s))
        self.accepted_count = 0
        self._scripts: dict[str, deque[_Script]] = {}
        self._delivered: Counter[tuple[str, str]] = Counter()
        self.lock = threading.Lock()

    def fail(self, address: str, reply: str, times: int = 1, at: Stage | None = None) -> None:
        if not _REPLY.fullmatch(reply) or reply.startswith("2"):
            raise ValueError(f"expected an SMTP error reply like '451 4.3.0 Try later', got {reply!r}")
        stage: Stage = at or ("DATA" if int(reply[:3]) in _DATA_CODES else "RCPT")
        with self.lock:
            self._scripts.setdefault(address.lower(), deque()).append(_Script(reply, stage, times))

    def delivered(self) -> Counter[tuple[str, str]]:
        with self.lock:
            return Counter(self._delivered)

    def _scripted(self, address: str, stage: Stage) -> str | None:
        """The scripted reply due now for this address at this stage, if any (call with the lock)."""
        scripts = self._scripts.get(address.lower())
        if not scripts or scripts[0].stage != stage:
            return None
        script = scripts[0]
        script.remaining -= 1
        if script.remaining <= 0:
            scripts.popleft()
        self.injected.append((script.reply[:3], address))
        return script.reply

    async def handle_RCPT(  # aiosmtpd's hook names
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        with self.lock:
            if address.lower() in self.refused:
                return "550 5.1.1 The email account that you tried to reach does not exist"
            reply = self._scripted(address, "RCPT")
        if reply is not None:
            return _closing_after(server, reply)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        recipients = tuple(envelope.rcpt_tos)
        with self.lock:
            reply = next(filter(None, (self._scripted(rcpt, "DATA") for rcpt in recipients)), None)
            fault = None
            plan = self.plan
            if reply is None and plan is not None:
                key = ",".join(rcpt.lower() for rcpt in recipients)
                fault = plan.draw(key)
                if fault is not None:
                    self.injected.append((fault, key))
        if reply is not None:
            return _closing_after(server, reply)
        if fault == "drop":
            if server.transport is not None:
                server.transport.close()
            # connection_lost cancels this hook; aiosmtpd treats that as a client gone mid-command.
            await asyncio.Event().wait()
        if fault in FAULT_REPLIES:
            return _closing_after(server, FAULT_REPLIES[fault])
        raw: bytes = envelope.original_content or envelope.content
        # Every check below reads headers only: the body is parsed only to be kept (a 200 KB mail costs
        # ~6 ms to parse whole, ~0.3 ms for its header block).
        message = BytesParser(policy=policy.default).parsebytes(raw if self.record else _header_block(raw))
        assert isinstance(message, EmailMessage)
        missing = [name for name in REQUIRED_HEADERS if name not in message]
        if missing:
            return self._reject(f"554 5.6.0 Message lacks {', '.join(missing)}")
        header_addresses = {
            address.lower()
            for _, address in getaddresses(message.get_all("To", []) + message.get_all("Cc", []))
        }
        strangers = [rcpt for rcpt in recipients if rcpt.lower() not in header_addresses]
        if strangers:
            return self._reject("554 5.7.1 Envelope recipient not named in To or Cc")
        message_id = str(message["Message-ID"]).strip()
        with self.lock:
            if self.record:
                self.messages.append(ReceivedMail(envelope.mail_from, recipients, message, raw))
            self.accepted_count += 1
            for rcpt in recipients:
                self._delivered[(rcpt, message_id)] += 1
        self.on_message()
        if fault == "slow" and plan is not None:
            await asyncio.sleep(plan.slow_seconds)  # cancelled if the client hangs up first
        return "250 Message accepted for delivery"

    def _reject(self, reply: str) -> str:
        with self.lock:
            self.rejected.append(reply)
        return reply


def _header_block(raw: bytes) -> bytes:
    """The header section of a message, through the empty line that ends it (SMTP data has CRLF line
    endings; bare LF is accepted too)."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        end = raw.find(b"\n\n")
    return raw if end < 0 else raw[: end + 2]


def _closing_after(server: Any, reply: str) -> str:
    """The reply; after a 421 the connection is closed too, once aiosmtpd has sent the reply (it sends
    what a hook returns, so the close is scheduled to run after it)."""
    if reply.startswith("421"):

        def close() -> None:
            if server.transport is not None:
                server.transport.close()

        server.loop.call_soon(close)
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

    @property
    def injected(self) -> list[tuple[str, str]]:
        with self.handler.lock:
            return list(self.handler.injected)

    def refuse(self, address: str) -> None:
        with self.handler.lock:
            self.handler.refused.add(address.lower())

    def fail(self, address: str, reply: str, times: int = 1, *, at: Stage | None = None) -> None:
        """Answer the next `times` transactions to `address` with `reply`, e.g. "421 4.7.0 Try again
        later" (at RCPT, then the connection closes), "451 4.3.0 ..." (at the end of DATA) or
        "550 5.1.1 ..." (at RCPT); `at` overrides where."""
        self.handler.fail(address, reply, times, at)

    def faults(self, plan: FaultPlan | None) -> None:
        """Inject the plan's faults at the end of DATA from now on (None: no more faults)."""
        if plan is not None:
            plan.check(FAULTS)
        with self.handler.lock:
            self.handler.plan = plan

    def delivered(self) -> Counter[tuple[str, str]]:
        """Accepted messages by (recipient, Message-ID): a count above 1 is a duplicate."""
        return self.handler.delivered()

    def stats(self) -> dict[str, Any]:
        delivered = self.delivered()
        per_recipient: Counter[str] = Counter()
        for (recipient, _), count in delivered.items():
            per_recipient[recipient] += count
        with self.handler.lock:
            accepted, rejected = self.handler.accepted_count, len(self.handler.rejected)
            injected = Counter(fault for fault, _ in self.handler.injected)
        return {
            "accepted": accepted,
            "rejected": rejected,
            "duplicates": sum(count - 1 for count in delivered.values()),
            "delivered": sorted([recipient, count] for recipient, count in per_recipient.items()),
            "injected": dict(injected),
        }

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
def running_fake_smtp(port: int = 0, *, record: bool = True) -> Iterator[FakeSmtp]:
    """The server, for as long as the block runs; call it with an event loop running."""
    handler = RecordingHandler(record=record)
    port = port or free_port()
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
