"""Editors' test sends (`Channel.test_send`): the whole issue to one address an editor names, with no
subscriber row and no delivery row behind it. Telegram through the fake Bot API, email through aiosmtpd,
WeChat as a draft then message/mass/preview through the fake WeChat API; and what an editor can get
wrong or the platform can refuse."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import AsyncIterator

import pytest

from channels.base import ChannelDown, PushStatus
from channels.channel import (
    TEST_SEND_ID,
    TEST_SEND_UNSUBSCRIBE_URL,
    Delivery,
    Outcome,
    Pace,
    Rendered,
)
from channels.document import IssueDocument, build_document, summary_parser
from channels.email.channel import EMAIL, EmailSettings
from channels.email.mailer import SmtpPool
from channels.links import LinkPolicy, LinkRewriter
from channels.telegram.channel import TELEGRAM, TelegramChannel, TelegramOutbox, TelegramSettings
from channels.telegram.payload import TelegramPayload
from channels.wechat.api import MASS_PREVIEW
from channels.wechat.channel import NO_COVER, WECHAT, WeChatOutbox, WeChatSettings
from channels.wechat.render import WeChatPayload
from content.errors import BadInput
from content.parser import parse_issue
from content.source import read_issue_file
from tests.content.corpus import corpus_dir
from tests.fakes.faults import FaultPlan
from tests.fakes.smtp import FakeSmtp, running_fake_smtp
from tests.fakes.telegram_api import TOKEN, FakeTelegram, fake_telegram
from tests.fakes.wechat_api import APPID, SECRET, FakeWeChatApi, fake_wechat

__all__ = ["fake_telegram", "fake_wechat"]  # the fixtures, used by name

DAY = dt.date(2020, 7, 2)
EDITOR_CHAT = 987_654_321  # a chat no subscriber row names: the editor's own
EDITOR_MAIL = "Editor.Name@example.com"
EDITOR_OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"  # the shape of WeChat's documented sample openids
STRANGER_OPENID = "oAbCdEfGhIjKlMnOpQrStUvWxYz1"  # well formed, but no openid of this account
THUMB = "thumb-media-1"
SENDER = "嵌入式AI简报 <news@jianbao.example>"


def document(channel: str) -> IssueDocument:
    issue = parse_issue(read_issue_file(corpus_dir() / f"{DAY}.md"))
    policy = LinkPolicy(channel, public_url="https://jianbao.example", tracking=True, secret=b"test")
    return build_document(issue, LinkRewriter(policy, issue.date), summary_parser())


# --- Telegram -------------------------------------------------------------------------------------------


def telegram_settings(fake: FakeTelegram, **changes: object) -> TelegramSettings:
    values: dict[str, object] = {
        "telegram_token": TOKEN,
        "telegram_api_url": fake.url,
        "rate_limits": False,
        "send_timeout": 2.0,
        **changes,
    }
    return TelegramSettings.model_validate(values)


@pytest.fixture(scope="module")
def telegram_rendered() -> Rendered:
    return TELEGRAM.render(document("telegram"), TelegramSettings())


@pytest.fixture
async def telegram_outbox(fake_telegram: FakeTelegram) -> AsyncIterator[TelegramOutbox]:
    sender = await TELEGRAM.open_sender(telegram_settings(fake_telegram))
    try:
        yield sender
    finally:
        await sender.close()


def telegram_texts(rendered: Rendered) -> list[str]:
    assert isinstance(rendered.payload, TelegramPayload)
    return [message.text for message in rendered.payload.messages]


class WatchedTelegram(TelegramChannel):
    """Telegram as it is, keeping the Delivery and Pace each `deliver` was given."""

    def __init__(self) -> None:
        self.given: list[tuple[Delivery, Pace]] = []

    async def deliver(
        self, sender: TelegramOutbox, rendered: Rendered, delivery: Delivery, pace: Pace
    ) -> Outcome:
        self.given.append((delivery, pace))
        return await super().deliver(sender, rendered, delivery, pace)


async def test_telegram_sends_every_message_in_order_to_a_chat_with_no_subscriber(
    fake_telegram: FakeTelegram, telegram_outbox: TelegramOutbox, telegram_rendered: Rendered
) -> None:
    outcome = await TELEGRAM.test_send(telegram_outbox, telegram_rendered, f" {EDITOR_CHAT} ")

    sent = [params["text"] for params in fake_telegram.sent_to(EDITOR_CHAT)]
    assert len(sent) == telegram_rendered.parts > 1
    assert sent == telegram_texts(telegram_rendered)
    assert fake_telegram.errors == []
    assert outcome.pushed.status == PushStatus.SENT
    assert outcome.finished
    assert outcome.parts_done == telegram_rendered.parts
    assert outcome.message_id is not None
    assert len(outcome.message_id.split(",")) == telegram_rendered.parts


async def test_the_delivery_is_a_one_off_from_the_first_part(
    fake_telegram: FakeTelegram, telegram_outbox: TelegramOutbox, telegram_rendered: Rendered
) -> None:
    channel = WatchedTelegram()
    outcome = await channel.test_send(telegram_outbox, telegram_rendered, str(EDITOR_CHAT))

    [(delivery, _)] = channel.given
    assert delivery == Delivery(
        id=TEST_SEND_ID,
        broadcast_id=TEST_SEND_ID,
        issue_date=DAY,  # the rendered issue's, not today's
        address=str(EDITOR_CHAT),
        mass=False,
        parts_done=0,
        message_id=None,
        unsubscribe_url=None,  # Telegram carries no personal links
    )
    assert outcome.finished
    assert len(fake_telegram.sent_to(EDITOR_CHAT)) == telegram_rendered.parts


async def test_telegram_keeps_its_per_chat_gap_in_a_test_send(
    fake_telegram: FakeTelegram, telegram_rendered: Rendered
) -> None:
    interval = 0.1
    settings = telegram_settings(fake_telegram, rate_limits=True, telegram_chat_interval=interval)
    sender = await TELEGRAM.open_sender(settings)
    try:
        outcome = await TELEGRAM.test_send(sender, telegram_rendered, str(EDITOR_CHAT))
    finally:
        await sender.close()
    assert outcome.parts_done == telegram_rendered.parts
    gaps = [later - earlier for earlier, later in itertools.pairwise(fake_telegram.accepted_times())]
    assert len(gaps) == telegram_rendered.parts - 1
    assert min(gaps) >= interval * 0.95, gaps


async def test_a_blocked_editor_chat_is_a_blocked_outcome(
    fake_telegram: FakeTelegram, telegram_outbox: TelegramOutbox, telegram_rendered: Rendered
) -> None:
    fake_telegram.blocked.add(EDITOR_CHAT)
    outcome = await TELEGRAM.test_send(telegram_outbox, telegram_rendered, str(EDITOR_CHAT))
    assert outcome.pushed.status == PushStatus.BLOCKED
    assert not outcome.finished
    assert outcome.parts_done == 0
    assert fake_telegram.sent_to(EDITOR_CHAT) == []


# --- email ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def email_rendered() -> Rendered:
    return EMAIL.render(document("email"), EmailSettings(mail_from=SENDER))


@pytest.fixture
async def smtp() -> AsyncIterator[FakeSmtp]:
    with running_fake_smtp() as fake:
        yield fake


@pytest.fixture
async def pool(smtp: FakeSmtp) -> AsyncIterator[SmtpPool]:
    settings = EmailSettings.model_validate(
        {
            "smtp_url": smtp.url,
            "public_url": "https://jianbao.example",
            "secret_key": "test-secret-key",
            "mail_from": SENDER,
            "smtp_connections": 1,
            "send_timeout": 2.0,
        }
    )
    sender = await EMAIL.open_sender(settings)
    try:
        yield sender
    finally:
        await sender.close()


async def test_email_reaches_the_editor_with_a_link_that_unsubscribes_no_one(
    smtp: FakeSmtp, pool: SmtpPool, email_rendered: Rendered
) -> None:
    outcome = await EMAIL.test_send(pool, email_rendered, f"  {EDITOR_MAIL} ")

    [mail] = await smtp.wait_for(1)
    assert mail.recipients == (EDITOR_MAIL,)
    assert mail.message["To"] == EDITOR_MAIL
    assert mail.message["From"] == SENDER
    assert mail.message["Subject"] == email_rendered.to_dict()["subject"]
    assert mail.message["List-Unsubscribe"] == f"<{TEST_SEND_UNSUBSCRIBE_URL}>"
    assert TEST_SEND_UNSUBSCRIBE_URL in mail.text
    assert ".example/" in TEST_SEND_UNSUBSCRIBE_URL  # RFC 2606: a host that never resolves
    assert outcome.pushed.status == PushStatus.SENT
    assert (outcome.parts_done, outcome.message_id) == (1, str(mail.message["Message-ID"]))
    await smtp.nothing_more_than(1, wait=0.0)


async def test_a_refused_editor_mailbox_is_a_bounced_outcome(
    smtp: FakeSmtp, pool: SmtpPool, email_rendered: Rendered
) -> None:
    smtp.refuse(EDITOR_MAIL)
    outcome = await EMAIL.test_send(pool, email_rendered, EDITOR_MAIL)
    assert outcome.pushed.status == PushStatus.BOUNCED
    assert outcome.pushed.error == "recipient refused (550)"
    assert outcome.parts_done == 0
    await smtp.nothing_more_than(0, wait=0.0)


# --- WeChat ---------------------------------------------------------------------------------------------


def wechat_settings(fake: FakeWeChatApi, **changes: object) -> WeChatSettings:
    values: dict[str, object] = {
        "wechat_appid": APPID,
        "wechat_secret": SECRET,
        "wechat_api_url": fake.url,
        "wechat_thumb_media_id": THUMB,
        "send_timeout": 2.0,
        **changes,
    }
    return WeChatSettings.model_validate(values)


@pytest.fixture(scope="module")
def wechat_rendered() -> Rendered:
    return WECHAT.render(document("wechat"), WeChatSettings())


@pytest.fixture
async def wechat_outbox(fake_wechat: FakeWeChatApi) -> AsyncIterator[WeChatOutbox]:
    sender = await WECHAT.open_sender(wechat_settings(fake_wechat))
    try:
        yield sender
    finally:
        await sender.close()


def article_of(rendered: Rendered) -> dict[str, str]:
    assert isinstance(rendered.payload, WeChatPayload)
    return rendered.payload.article.to_dict()


async def test_wechat_previews_the_article_to_the_editors_openid(
    fake_wechat: FakeWeChatApi, wechat_outbox: WeChatOutbox, wechat_rendered: Rendered
) -> None:
    outcome = await WECHAT.test_send(wechat_outbox, wechat_rendered, EDITOR_OPENID)

    [media_id] = fake_wechat.previews_to(EDITOR_OPENID)
    assert fake_wechat.draft(media_id) == [article_of(wechat_rendered) | {"thumb_media_id": THUMB}]
    [preview] = fake_wechat.previews
    assert outcome.pushed.status == PushStatus.SENT
    assert outcome.finished
    assert outcome.parts_done == 2  # the draft, then the preview
    assert outcome.message_id == f"{media_id} {preview.msg_id}"
    # Followers got nothing: no mass send (its quota is untouched), no customer-service text.
    assert fake_wechat.mass_sends == []
    assert fake_wechat.mass_quota == 1
    assert fake_wechat.texts_to(EDITOR_OPENID) == []
    assert [call.path for call in fake_wechat.received] == ["/cgi-bin/draft/add", MASS_PREVIEW]
    preview_body = fake_wechat.received[1].payload
    assert preview_body == {"touser": EDITOR_OPENID, "mpnews": {"media_id": media_id}, "msgtype": "mpnews"}


async def test_a_second_test_send_makes_a_new_draft(
    fake_wechat: FakeWeChatApi, wechat_outbox: WeChatOutbox, wechat_rendered: Rendered
) -> None:
    first = await WECHAT.test_send(wechat_outbox, wechat_rendered, EDITOR_OPENID)
    second = await WECHAT.test_send(wechat_outbox, wechat_rendered, EDITOR_OPENID)
    assert first.finished
    assert second.finished
    assert len(set(fake_wechat.previews_to(EDITOR_OPENID))) == 2  # a test send is never continued


async def test_an_openid_of_no_follower_is_refused_with_wechats_reason(
    fake_wechat: FakeWeChatApi, wechat_outbox: WeChatOutbox, wechat_rendered: Rendered
) -> None:
    fake_wechat.strangers.add(STRANGER_OPENID)
    outcome = await WECHAT.test_send(wechat_outbox, wechat_rendered, STRANGER_OPENID)

    assert outcome.pushed.status == PushStatus.BLOCKED
    assert not outcome.finished
    assert outcome.pushed.error is not None
    assert outcome.pushed.error.startswith("not the openid of a follower of this account: ")
    assert "40003" in outcome.pushed.error
    assert "invalid openid" in outcome.pushed.error  # the platform's own words
    assert STRANGER_OPENID not in outcome.pushed.error  # errors name no recipient
    assert outcome.parts_done == 1  # the draft was made; nothing reached anyone
    assert fake_wechat.previews == []


async def test_an_openid_that_unfollowed_is_refused(
    fake_wechat: FakeWeChatApi, wechat_outbox: WeChatOutbox, wechat_rendered: Rendered
) -> None:
    fake_wechat.not_following.add(EDITOR_OPENID)
    outcome = await WECHAT.test_send(wechat_outbox, wechat_rendered, EDITOR_OPENID)
    assert outcome.pushed.status == PushStatus.BLOCKED
    assert outcome.pushed.error is not None
    assert "does not follow" in outcome.pushed.error
    assert "43004" in outcome.pushed.error
    assert fake_wechat.previews == []


async def test_without_a_cover_nothing_is_sent(fake_wechat: FakeWeChatApi, wechat_rendered: Rendered) -> None:
    sender = await WECHAT.open_sender(wechat_settings(fake_wechat, wechat_thumb_media_id=""))
    try:
        outcome = await WECHAT.test_send(sender, wechat_rendered, EDITOR_OPENID)
    finally:
        await sender.close()
    assert outcome.pushed.status == PushStatus.FAILED
    assert outcome.pushed.error == NO_COVER
    assert outcome.parts_done == 0
    assert fake_wechat.paths == []  # not even a token was asked for


async def test_the_frequency_limit_is_a_retry(
    fake_wechat: FakeWeChatApi, wechat_outbox: WeChatOutbox, wechat_rendered: Rendered
) -> None:
    fake_wechat.faults(FaultPlan(rates={"45009": 1.0}, max_per_key=1))
    outcome = await WECHAT.test_send(wechat_outbox, wechat_rendered, EDITOR_OPENID)
    assert outcome.pushed.status == PushStatus.RETRY
    assert outcome.pushed.error is not None
    assert "45009" in outcome.pushed.error
    assert fake_wechat.injected == [("45009", EDITOR_OPENID)]
    assert fake_wechat.previews == []

    again = await WECHAT.test_send(wechat_outbox, wechat_rendered, EDITOR_OPENID)
    assert again.finished
    assert len(fake_wechat.previews_to(EDITOR_OPENID)) == 1


async def test_a_preview_with_no_answer_in_time_is_uncertain(
    fake_wechat: FakeWeChatApi, wechat_rendered: Rendered
) -> None:
    fake_wechat.faults(FaultPlan(rates={"slow": 1.0}, slow_seconds=2.0))
    sender = await WECHAT.open_sender(wechat_settings(fake_wechat, send_timeout=0.3))
    try:
        outcome = await WECHAT.test_send(sender, wechat_rendered, EDITOR_OPENID)
    finally:
        await sender.close()
    assert outcome.pushed.status == PushStatus.UNCERTAIN
    assert outcome.finished
    assert outcome.uncertain
    assert len(fake_wechat.previews_to(EDITOR_OPENID)) == 1  # it did arrive


async def test_refused_credentials_are_channel_down(
    fake_wechat: FakeWeChatApi, wechat_rendered: Rendered
) -> None:
    sender = await WECHAT.open_sender(wechat_settings(fake_wechat, wechat_secret="wrong-secret"))
    try:
        with pytest.raises(ChannelDown, match="40125") as raised:
            await WECHAT.test_send(sender, wechat_rendered, EDITOR_OPENID)
    finally:
        await sender.close()
    assert "wrong-secret" not in raised.value.message
    assert fake_wechat.previews == []


# --- addresses an editor can get wrong ------------------------------------------------------------------


@pytest.mark.parametrize("address", ["12a", "@editor", "", "1 2", "+42"])
async def test_a_bad_chat_id_is_bad_input(
    fake_telegram: FakeTelegram, telegram_outbox: TelegramOutbox, telegram_rendered: Rendered, address: str
) -> None:
    with pytest.raises(BadInput) as refused:
        await TELEGRAM.test_send(telegram_outbox, telegram_rendered, address)
    assert refused.value.message == "a Telegram chat id is an integer, like 123456789 or -1001234567890"
    assert [name for name, _ in fake_telegram.received if name == "sendMessage"] == []


@pytest.mark.parametrize(
    "address",
    ["editor@example.com\r\nBcc: mallory@example.com", "editor@localhost", "Editor <editor@example.com>", ""],
)
async def test_a_bad_mail_address_is_bad_input(
    smtp: FakeSmtp, pool: SmtpPool, email_rendered: Rendered, address: str
) -> None:
    with pytest.raises(BadInput) as refused:
        await EMAIL.test_send(pool, email_rendered, address)
    assert refused.value.message.startswith("not a valid email address: ")
    assert "\n" not in refused.value.message
    assert "\r" not in refused.value.message
    await smtp.nothing_more_than(0, wait=0.0)


@pytest.mark.parametrize("address", ["o" * 27, "not an openid at all, not one", EDITOR_OPENID + "!", ""])
async def test_a_bad_openid_is_bad_input(
    fake_wechat: FakeWeChatApi, wechat_outbox: WeChatOutbox, wechat_rendered: Rendered, address: str
) -> None:
    with pytest.raises(BadInput) as refused:
        await WECHAT.test_send(wechat_outbox, wechat_rendered, address)
    assert refused.value.message == "a WeChat openid is 28-64 characters of A-Z, a-z, 0-9, _ and -"
    assert fake_wechat.paths == []  # no draft was made for it
