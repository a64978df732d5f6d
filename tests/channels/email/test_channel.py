"""The email channel object: the one email-address check (email-validator), settings, rendering for a
broadcast, and deliveries through a real SMTP server (aiosmtpd, tests/fakes/smtp.py): sent, refused for good
(bounced), refused for now (retry), and a mail that cannot be addressed."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest

from channels.base import PushStatus
from channels.channel import Delivery, Rendered, needs_public_url
from channels.document import IssueDocument, build_document, summary_parser
from channels.email.address import MAX_ADDRESS_CHARS
from channels.email.channel import EMAIL, EmailSettings
from channels.email.mailer import SmtpPool
from channels.email.render import EmailTemplate
from channels.links import LinkPolicy, LinkRewriter
from content.errors import BadInput
from content.parser import parse_issue
from content.source import read_issue_file
from storage.tables import MAX_ADDRESS_LENGTH, NAME_LENGTH
from tests.content.corpus import corpus_dir
from tests.fakes.pace import RecordingPace
from tests.fakes.smtp import FakeSmtp, running_fake_smtp

DAY = dt.date(2020, 7, 2)
READER = "Reader.Name@example.com"
UNSUBSCRIBE_URL = "https://jianbao.example/unsubscribe/TOKEN-1"
SENDER = "嵌入式AI简报 <news@jianbao.example>"
# The longest address there is: 64 characters before the @, labels of at most 63, 254 in all.
LONGEST = "r" * 64 + "@" + "d" * 63 + "." + "e" * 63 + "." + "f" * 57 + ".com"


def document() -> IssueDocument:
    issue = parse_issue(read_issue_file(corpus_dir() / f"{DAY}.md"))
    policy = LinkPolicy("email", public_url="https://jianbao.example", tracking=True, secret=b"test")
    return build_document(issue, LinkRewriter(policy, issue.date), summary_parser())


def settings_for(smtp: FakeSmtp, **changes: object) -> EmailSettings:
    values: dict[str, object] = {
        "smtp_url": smtp.url,
        "public_url": "https://jianbao.example",
        "secret_key": "test-secret-key",
        "mail_from": SENDER,
        "smtp_connections": 2,
        "send_timeout": 2.0,
        **changes,
    }
    return EmailSettings.model_validate(values)


def delivery(address: str = READER, unsubscribe_url: str | None = UNSUBSCRIBE_URL) -> Delivery:
    return Delivery(id=1, broadcast_id=7, issue_date=DAY, address=address, unsubscribe_url=unsubscribe_url)


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    return EMAIL.render(document(), EmailSettings(mail_from=SENDER))


@pytest.fixture
async def smtp() -> AsyncIterator[FakeSmtp]:
    with running_fake_smtp() as fake:
        yield fake


@pytest.fixture
async def pool(smtp: FakeSmtp) -> AsyncIterator[SmtpPool]:
    sender = await EMAIL.open_sender(settings_for(smtp))
    try:
        yield sender
    finally:
        await sender.close()


# --- addresses (moved from storage.subscribers.check_address) ------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "reader@example.com",
        "Reader.Name+jianbao@mail.example.co.uk",
        "o'brien@example.com",
        "r" * 64 + "@example.com",
        LONGEST,
    ],
)
def test_check_address_accepts(address: str) -> None:
    assert EMAIL.check_address(address) == address  # as typed: the case is kept
    assert EMAIL.check_address(f"  {address} ") == address  # spaces around what was typed are dropped


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("a@b.c\nBcc: x@example.com", "invalid characters"),
        ("reader@example.com\r\n", "invalid characters"),
        ("reader example@example.com", "invalid characters before the @-sign"),
        ("reader@@example.com", "after the @-sign contains invalid characters"),
        ("reader@exa@mple.com", "after the @-sign contains invalid characters"),
        ("readerexample.com", "must have an @-sign"),
        ("@example.com", "something before the @-sign"),
        ("reader@", "something after the @-sign"),
        ("reader@localhost", "after the @-sign is not valid"),
        ("reader@example.invalid", "special-use or reserved name"),
        ("reader..name@example.com", "two periods in a row"),
        ('"reader name"@example.com', "quoting"),
        ("reader@[127.0.0.1]", "bracketed IP address"),
        ("<reader@example.com>", "angle brackets"),
        ("Reader <reader@example.com>", "angle brackets"),
        ("读者@example.com", "ASCII only"),
        ("reader@例子.com", "ASCII only"),
        ("r" * 65 + "@example.com", "too long before the @-sign"),
        ("reader@" + "d" * 64 + ".com", "periods cannot be separated by so many characters"),
        (LONGEST + "x", f"at most {MAX_ADDRESS_CHARS}"),
        ("", "must have an @-sign"),
    ],
)
def test_check_address_refuses(address: str, reason: str) -> None:
    with pytest.raises(BadInput, match=reason) as refused:
        EMAIL.check_address(address)
    assert refused.value.message.startswith(("not a valid email address: ", "an email address has at most"))
    assert "\n" not in refused.value.message  # one line, whatever was typed


def test_address_key_ignores_case() -> None:
    assert EMAIL.address_key("Reader.Name@Example.COM") == "reader.name@example.com"
    assert EMAIL.address_key("reader.name@example.com") == "reader.name@example.com"


def test_the_longest_address_fits_the_address_column() -> None:
    assert MAX_ADDRESS_CHARS <= MAX_ADDRESS_LENGTH


def test_the_name_fits_the_channel_column() -> None:
    assert EMAIL.name.isidentifier()
    assert len(EMAIL.name) <= NAME_LENGTH


def test_a_mail_is_addressed_by_the_same_rule(rendered: Rendered) -> None:
    """EmailTemplate.personalize refuses what check_address refuses, and takes a display name."""
    template = rendered.payload
    assert isinstance(template, EmailTemplate)
    for refused in ("reader@localhost", "Reader <reader@example.invalid>", "Reader <读者@example.com>"):
        with pytest.raises(ValueError, match="not one recipient address: not a valid email address"):
            template.personalize(to=refused, unsubscribe_url=UNSUBSCRIBE_URL)
    message = template.personalize(to=f"读者 <{LONGEST}>", unsubscribe_url=UNSUBSCRIBE_URL)
    assert LONGEST in str(message["To"])


# --- settings -------------------------------------------------------------------------------------------


def test_off_reason_in_order() -> None:
    settings = EmailSettings()
    assert EMAIL.off_reason(settings) == "JIANBAO_SMTP_URL is not set"
    settings = EmailSettings(smtp_url="smtp://127.0.0.1:1025")
    assert EMAIL.off_reason(settings) == needs_public_url("the unsubscribe link in every mail")
    assert EMAIL.off_reason(settings).startswith("JIANBAO_PUBLIC_URL is not set")
    settings = EmailSettings(smtp_url="smtp://127.0.0.1:1025", public_url="https://jianbao.example")
    assert EMAIL.off_reason(settings) == (
        "JIANBAO_SECRET_KEY is not set (unsubscribe links must keep working after a restart)"
    )
    settings = settings.model_copy(update={"secret_key": "k"})
    assert EMAIL.off_reason(settings) == ""


def test_rate_is_the_email_rate_unless_limits_are_off() -> None:
    assert EMAIL.rate(EmailSettings()) == 20.0
    assert EMAIL.rate(EmailSettings(email_rate=5.0)) == 5.0
    assert EMAIL.rate(EmailSettings(rate_limits=False)) == 0.0


def test_every_mail_needs_its_own_unsubscribe_link() -> None:
    assert EMAIL.personal_links


# --- rendering ------------------------------------------------------------------------------------------


def test_render_gives_the_template_and_its_sizes(rendered: Rendered) -> None:
    template = rendered.payload
    assert isinstance(template, EmailTemplate)
    assert template.mail_from == SENDER
    assert rendered.parts == 1
    assert rendered.links == template.links
    assert rendered.links
    assert rendered.sizes == {"subject": template.subject, "html_bytes": template.html_worst_bytes}
    assert rendered.to_dict()["subject"] == template.subject


def test_max_messages_is_refused() -> None:
    assert not EMAIL.fits_messages
    with pytest.raises(BadInput, match=r"--max-messages only applies .*email"):
        EMAIL.render(document(), EmailSettings(), max_messages=1)


# --- delivering -----------------------------------------------------------------------------------------


async def test_a_mail_is_personalised_and_sent(smtp: FakeSmtp, pool: SmtpPool, rendered: Rendered) -> None:
    pace = RecordingPace()
    outcome = await EMAIL.deliver(pool, rendered, delivery(), pace)

    [mail] = await smtp.wait_for(1)
    assert mail.recipients == (READER,)
    assert mail.message["From"] == SENDER
    assert mail.message["List-Unsubscribe"] == f"<{UNSUBSCRIBE_URL}>"
    assert UNSUBSCRIBE_URL in mail.text
    assert outcome.pushed.status == PushStatus.SENT
    assert outcome.parts_done == 1
    assert outcome.message_id == str(mail.message["Message-ID"])
    assert not outcome.uncertain
    assert pace.slots == 1
    assert pace.reached_calls == []  # one part: nothing to report before the end


async def test_a_refused_recipient_is_bounced(smtp: FakeSmtp, pool: SmtpPool, rendered: Rendered) -> None:
    smtp.refuse(READER)
    outcome = await EMAIL.deliver(pool, rendered, delivery(), RecordingPace())
    assert outcome.pushed.status == PushStatus.BOUNCED
    assert outcome.pushed.error == "recipient refused (550)"
    assert (outcome.parts_done, outcome.message_id) == (0, None)
    await smtp.nothing_more_than(0, wait=0.0)


async def test_a_temporary_refusal_is_a_retry(smtp: FakeSmtp, pool: SmtpPool, rendered: Rendered) -> None:
    smtp.fail(READER, "451 4.3.0 Mail server temporarily rejected message")
    outcome = await EMAIL.deliver(pool, rendered, delivery(), RecordingPace())
    assert outcome.pushed.status == PushStatus.RETRY
    assert outcome.parts_done == 0

    again = await EMAIL.deliver(pool, rendered, delivery(), RecordingPace())
    assert again.pushed.status == PushStatus.SENT
    await smtp.wait_for(1)


@pytest.mark.parametrize(
    ("address", "unsubscribe_url"),
    [
        (READER, None),
        (READER, "javascript:alert(1)"),
        ("reader@localhost", UNSUBSCRIBE_URL),
        ("a@b.example\r\nBcc: mallory@example.com", UNSUBSCRIBE_URL),
    ],
)
async def test_a_mail_that_cannot_be_addressed_fails(
    smtp: FakeSmtp, pool: SmtpPool, rendered: Rendered, address: str, unsubscribe_url: str | None
) -> None:
    pace = RecordingPace()
    outcome = await EMAIL.deliver(pool, rendered, delivery(address, unsubscribe_url), pace)
    assert outcome.pushed.status == PushStatus.FAILED
    assert outcome.pushed.error is not None
    assert outcome.pushed.error.startswith("cannot address the mail: ")
    assert outcome.parts_done == 0
    assert pace.slots == 0  # nothing went out, so no slot of the shared rate was used
    await smtp.nothing_more_than(0, wait=0.0)
