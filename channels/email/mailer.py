"""Sending mail through the SMTP server of JIANBAO_SMTP_URL, with aiosmtplib.

    smtp://host:port                 plain SMTP, upgraded with STARTTLS when the server offers it
    smtp://user:password@host:port   the same, but STARTTLS is required before the password is sent
                                     (except to a loopback server, e.g. a local relay)
    smtps://user:password@host:port  TLS from the first byte (port 465)

`Mailer` opens one connection per message: sign-up mails are rare. `SmtpPool` keeps several connections
open for broadcasts, because one aiosmtplib connection sends sequentially (docs/channels.md, "aiosmtplib
and aiosmtpd") and opening a connection (greeting, EHLO, STARTTLS, AUTH) costs more than sending a
message over it. Errors never carry the server's text, which may quote the recipient's address, nor the
URL, which may hold the password.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import aiosmtplib

from channels.base import PushResult, PushStatus
from content.errors import BadInput, Unavailable

DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
# Long enough for a slow relay, short enough that a sign-up mail does not hang around for minutes.
SEND_TIMEOUT_SECONDS = 30.0


class MailRefused(Unavailable):
    """The server refused the message or its recipient for good (a 5xx reply): retrying will not help,
    and a broadcast may mark the subscriber BOUNCED."""

    kind = "mail_refused"


@dataclass(frozen=True, slots=True)
class SmtpServer:
    host: str
    port: int
    use_tls: bool
    start_tls: bool | None  # None: when the server offers it
    username: str | None
    password: str | None

    @classmethod
    def from_url(cls, url: str) -> SmtpServer:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        try:
            port = parts.port
        except ValueError:
            port = -1
        if scheme not in DEFAULT_PORTS or not parts.hostname or port == -1:
            # Never echo the URL itself: it may contain the password.
            raise BadInput(
                "JIANBAO_SMTP_URL must look like smtp://host:port or smtps://user:password@host:465"
            )
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        start_tls: bool | None = None
        if scheme == "smtp" and username and not _is_loopback(parts.hostname):
            start_tls = True
        return cls(
            host=parts.hostname,
            port=port or DEFAULT_PORTS[scheme],
            use_tls=scheme == "smtps",
            start_tls=False if scheme == "smtps" else start_tls,
            username=username,
            password=password,
        )


class Mailer:
    def __init__(self, smtp_url: str, *, timeout: float = SEND_TIMEOUT_SECONDS) -> None:
        self.server = SmtpServer.from_url(smtp_url)
        self._timeout = timeout

    async def send(self, message: EmailMessage) -> None:
        """Send `message` to the recipients of its To/Cc/Bcc headers; Unavailable (MailRefused for a
        permanent refusal) when it could not be handed over."""
        server = self.server
        try:
            errors, _ = await aiosmtplib.send(
                message,
                hostname=server.host,
                port=server.port,
                username=server.username,
                password=server.password,
                use_tls=server.use_tls,
                start_tls=server.start_tls,
                timeout=self._timeout,
            )
        except aiosmtplib.SMTPResponseException as error:
            if 500 <= error.code < 600:
                raise MailRefused(f"the mail server refused the message ({error.code})") from None
            raise Unavailable(f"the mail server cannot take the message now ({error.code})") from None
        except aiosmtplib.SMTPRecipientsRefused as error:
            codes = sorted({refused.code for refused in error.recipients})
            if all(500 <= code < 600 for code in codes):
                raise MailRefused(f"the mail server refused the recipient ({codes[0]})") from None
            raise Unavailable(f"the mail server cannot take the message now ({codes[0]})") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            raise Unavailable(f"cannot reach the mail server ({type(error).__name__})") from None
        if errors:  # some recipients refused, others accepted: report the refusal
            codes = sorted({response.code for response in errors.values()})
            raise MailRefused(f"the mail server refused a recipient ({codes[0]})")


class SmtpPool:
    """`size` SMTP connections, opened on first use and reopened after an error, shared by pushes."""

    name = "email"

    def __init__(self, smtp_url: str, *, size: int = 4, timeout: float = SEND_TIMEOUT_SECONDS) -> None:
        server = SmtpServer.from_url(smtp_url)
        self._idle: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
        for _ in range(max(1, size)):
            self._idle.put_nowait(
                aiosmtplib.SMTP(
                    hostname=server.host,
                    port=server.port,
                    username=server.username,
                    password=server.password,
                    use_tls=server.use_tls,
                    start_tls=server.start_tls,
                    timeout=timeout,
                )
            )
        self._clients = list(self._idle._queue)  # type: ignore[attr-defined]  # every client, to close

    async def close(self) -> None:
        for client in self._clients:
            if client.is_connected:
                client.close()

    async def push(self, message: EmailMessage) -> PushResult:
        """Hand `message` to the server. 4xx and dropped connections: RETRY; 5xx: BOUNCED; no answer to
        the message's data in time: UNCERTAIN (the server may have taken it)."""
        client = await self._idle.get()
        message_id = str(message["Message-ID"] or "") or None
        try:
            if not client.is_connected:
                await client.connect()
            errors, _ = await client.send_message(message)
        except aiosmtplib.SMTPRecipientsRefused as error:
            client.close()
            codes = sorted({refused.code for refused in error.recipients})
            status = PushStatus.BOUNCED if all(500 <= code < 600 for code in codes) else PushStatus.RETRY
            return PushResult(status, error=f"recipient refused ({codes[0]})")
        except aiosmtplib.SMTPResponseException as error:
            client.close()
            status = PushStatus.BOUNCED if 500 <= error.code < 600 else PushStatus.RETRY
            return PushResult(status, error=f"the mail server answered {error.code}")
        except aiosmtplib.SMTPReadTimeoutError:
            client.close()
            return PushResult(
                PushStatus.UNCERTAIN, message_id=message_id, error="no answer in time: maybe delivered"
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            client.close()
            return PushResult(
                PushStatus.RETRY, error=f"cannot reach the mail server ({type(error).__name__})"
            )
        finally:
            self._idle.put_nowait(client)
        if errors:
            codes = sorted({response.code for response in errors.values()})
            return PushResult(PushStatus.BOUNCED, error=f"recipient refused ({codes[0]})")
        return PushResult(PushStatus.SENT, message_id=message_id)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
