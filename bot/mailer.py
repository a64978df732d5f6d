"""Sending mail through the SMTP server of JIANBAO_SMTP_URL, with aiosmtplib.

    smtp://host:port                 plain SMTP, upgraded with STARTTLS when the server offers it
    smtp://user:password@host:port   the same, but STARTTLS is required before the password is sent
                                     (except to a loopback server, e.g. a local relay)
    smtps://user:password@host:port  TLS from the first byte (port 465)

One connection per message: sign-up mails are rare, and a broadcast that wants throughput runs several
Mailers at once (one aiosmtplib connection sends sequentially). Errors never carry the server's text,
which may quote the recipient's address, nor the URL, which may hold the password.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import aiosmtplib

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


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
