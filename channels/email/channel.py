"""Email as a `Channel`: addresses checked by channels.email.address, an issue rendered once into a
template and personalised per subscriber (their address, one-click unsubscribe link, preference page link
and, with per-reader clicks, the reader id of tracked links), sent through a pool of SMTP connections.

aiosmtplib is imported when a sender is opened, not with this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from channels.base import PushResult, PushStatus
from channels.channel import Channel, Delivery, Outcome, Pace, Rendered, needs_public_url
from channels.document import IssueDocument
from channels.email.address import check_email_address, email_address_key
from channels.email.render import EmailTemplate, render_email
from channels.email.settings import EmailSettings
from content.errors import BadInput

if TYPE_CHECKING:
    from channels.email.mailer import SmtpPool

__all__ = ["EMAIL", "EmailChannel", "EmailSettings"]


class EmailChannel(Channel[EmailSettings]):
    name: ClassVar[str] = "email"
    label: ClassVar[str] = "email"
    settings: ClassVar[type[EmailSettings]] = EmailSettings
    personal_links: ClassVar[bool] = True

    def check_address(self, address: str) -> str:
        return check_email_address(address)

    def address_key(self, address: str) -> str:
        return email_address_key(address)

    def off_reason(self, settings: EmailSettings) -> str:
        if not settings.smtp_url:
            return "JIANBAO_SMTP_URL is not set"
        if not settings.public_url:
            return needs_public_url("the unsubscribe link in every mail")
        if not settings.secret_key:
            return "JIANBAO_SECRET_KEY is not set (unsubscribe links must keep working after a restart)"
        return ""

    def rate(self, settings: EmailSettings) -> float:
        return max(settings.email_rate, 0.0) if settings.rate_limits else 0.0

    def render(
        self, document: IssueDocument, settings: EmailSettings, *, max_messages: int | None = None
    ) -> Rendered:
        if max_messages is not None:
            raise BadInput(
                "--max-messages only applies to channels that send several messages (not email: one mail)"
            )
        template = render_email(document, mail_from=settings.mail_from)
        return Rendered(
            payload=template,
            links=template.links,
            parts=1,
            sizes={"subject": template.subject, "html_bytes": template.html_worst_bytes},
        )

    async def open_sender(self, settings: EmailSettings) -> SmtpPool:
        from channels.email.mailer import SmtpPool

        return SmtpPool(settings.smtp_url, size=settings.smtp_connections, timeout=settings.send_timeout)

    async def deliver(self, sender: SmtpPool, rendered: Rendered, delivery: Delivery, pace: Pace) -> Outcome:
        template = rendered.payload
        if not isinstance(template, EmailTemplate):
            raise TypeError(f"email cannot send a {type(template).__name__}")
        if delivery.address is None:
            raise ValueError("an email delivery needs an address")
        try:
            if delivery.unsubscribe_url is None:
                raise ValueError("the delivery has no unsubscribe link")
            message = template.personalize(
                to=delivery.address,
                unsubscribe_url=delivery.unsubscribe_url,
                reader=delivery.reader,
                preferences_url=delivery.preferences_url,
            )
        except ValueError as error:
            return Outcome(PushResult(PushStatus.FAILED, error=f"cannot address the mail: {error}"), 0)
        await pace.slot()
        pushed = await sender.push(message)
        if pushed.status in (PushStatus.SENT, PushStatus.UNCERTAIN):
            uncertain = pushed.status == PushStatus.UNCERTAIN
            return Outcome(pushed, 1, pushed.message_id, uncertain)
        return Outcome(pushed, 0)


EMAIL = EmailChannel()
