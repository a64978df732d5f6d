"""The fake SMTP server's scripted answers, injected faults and delivery accounting, as aiosmtplib sees them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib
import pytest

from tests.fakes.faults import FaultPlan
from tests.fakes.smtp import FakeSmtp, running_fake_smtp

READER = "reader@example.com"


@pytest.fixture
async def smtp() -> AsyncIterator[FakeSmtp]:
    with running_fake_smtp() as fake:
        yield fake


def mail(to: str = READER, message_id: str = "<issue-1.reader@jianbao.example>") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "简报 <news@jianbao.example>"
    message["To"] = to
    message["Subject"] = "嵌入式AI简报"
    message["Date"] = formatdate()
    message["Message-ID"] = message_id
    message.set_content("正文")
    return message


async def send(smtp: FakeSmtp, message: EmailMessage, patience: float = 5) -> None:
    await aiosmtplib.send(message, hostname="127.0.0.1", port=smtp.port, timeout=patience)


async def test_421_at_rcpt_refuses_and_closes_the_connection(smtp: FakeSmtp) -> None:
    smtp.fail(READER, "421 4.7.0 Try again later")
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as raised:
        await send(smtp, mail())
    assert [refusal.code for refusal in raised.value.recipients] == [421]
    await send(smtp, mail())  # `times` was 1
    assert smtp.delivered() == {(READER, "<issue-1.reader@jianbao.example>"): 1}

    # The server hangs up after its 421, whatever the client does.
    smtp.fail(READER, "421 4.7.0 Try again later")
    reader, writer = await asyncio.open_connection("127.0.0.1", smtp.port)
    try:
        await reader.readline()  # greeting
        for command in (b"HELO client", b"MAIL FROM:<news@jianbao.example>", f"RCPT TO:<{READER}>".encode()):
            writer.write(command + b"\r\n")
            reply = await reader.readline()
        assert reply.startswith(b"421 4.7.0")
        assert await asyncio.wait_for(reader.read(), 2) == b""
    finally:
        writer.close()
        await writer.wait_closed()


async def test_451_comes_at_the_end_of_data(smtp: FakeSmtp) -> None:
    smtp.fail(READER, "451 4.3.0 Mail server temporarily rejected message", times=2)
    for _ in range(2):
        with pytest.raises(aiosmtplib.SMTPResponseException) as raised:
            await send(smtp, mail())
        assert isinstance(raised.value, aiosmtplib.SMTPDataError)
        assert raised.value.code == 451
    await send(smtp, mail())
    assert len(smtp.messages) == 1
    assert smtp.injected == [("451", READER), ("451", READER)]


async def test_550_is_permanent_at_rcpt(smtp: FakeSmtp) -> None:
    smtp.fail(READER, "550 5.1.1 No such user", times=5)
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as raised:
        await send(smtp, mail())
    assert [(refusal.code, refusal.recipient) for refusal in raised.value.recipients] == [(550, READER)]
    assert smtp.delivered() == {}
    with pytest.raises(ValueError, match="SMTP error reply"):
        smtp.fail(READER, "250 OK")


async def test_a_drop_disconnects_during_data_and_stores_nothing(smtp: FakeSmtp) -> None:
    smtp.faults(FaultPlan(rates={"drop": 1.0}))
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await send(smtp, mail())
    assert smtp.messages == []
    assert smtp.injected == [("drop", READER)]


async def test_plan_faults_421_and_451_at_data(smtp: FakeSmtp) -> None:
    for fault in ("421", "451"):
        smtp.faults(FaultPlan(rates={fault: 1.0}))
        with pytest.raises(aiosmtplib.SMTPDataError) as raised:
            await send(smtp, mail())
        assert raised.value.code == int(fault)
    smtp.faults(None)
    await send(smtp, mail())
    assert smtp.stats() == {
        "accepted": 1,
        "rejected": 0,
        "duplicates": 0,
        "delivered": [[READER, 1]],
        "injected": {"421": 1, "451": 1},
    }


async def test_slow_stores_then_answers_late_and_duplicates_show(smtp: FakeSmtp) -> None:
    smtp.faults(FaultPlan(rates={"slow": 1.0}, slow_seconds=0.5))
    with pytest.raises(aiosmtplib.SMTPTimeoutError):
        await send(smtp, mail(), patience=0.2)
    assert len(await smtp.wait_for(1)) == 1  # delivered, though the sender saw a timeout
    smtp.faults(None)
    await send(smtp, mail())  # the sender's retry: the reader now has it twice
    assert smtp.delivered() == {(READER, "<issue-1.reader@jianbao.example>"): 2}
    assert smtp.stats()["duplicates"] == 1


async def test_without_recording_only_counts_are_kept() -> None:
    with running_fake_smtp(record=False) as smtp:
        await send(smtp, mail())
        await send(smtp, mail(message_id="<issue-2.reader@jianbao.example>"))
        assert smtp.messages == []
        assert smtp.stats()["accepted"] == 2
        anonymous = mail()
        del anonymous["Message-ID"]
        with pytest.raises(aiosmtplib.SMTPDataError) as raised:  # headers are still checked
            await send(smtp, anonymous)
        assert raised.value.code == 554
        assert sorted(message_id for _, message_id in smtp.delivered()) == [
            "<issue-1.reader@jianbao.example>",
            "<issue-2.reader@jianbao.example>",
        ]
