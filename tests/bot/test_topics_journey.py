"""Readers choose their topics on every channel, end to end, on one running app with the fake WeChat API,
the fake Bot API and the fake SMTP server:

- a WeChat reader sends `订阅 量化` to the account (a signed webhook push);
- a Telegram reader opens /topics and presses two of its buttons;
- an email reader follows the preference link of the mail the first broadcast gave them and ticks 剪枝;
- a reader of each kind stays without topics, and a Telegram reader chooses a topic no issue is about.

Then a broadcast of another issue: each reader with topics gets it with their own "你关注的" block first
(the items about their topics, and only those), readers without topics get it whole with no block, and
the reader whose topic the issue is not about gets nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import shutil
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from bot.app import create_app
from bot.broadcast.audience import SKIP_TOPICS, TopicMatcher
from bot.broadcast.control import BroadcastControl, SendRequest
from bot.broadcast.runtime import open_worker
from bot.csrf import FIELD
from bot.importing import import_paths
from bot.services import SERVICES, Services
from bot.settings import Settings
from channels.document import FOCUS_SECTION
from content.parser import parse_issue
from content.source import read_issue_file
from storage.broadcasts import StartReport
from storage.database import Database
from storage.deliveries import DeliveryLedger
from storage.issues import IssueStore
from storage.tables import SubscriberRow, core_table
from tests.bot.helpers import DEMO_DIR, sqlite_url
from tests.bot.signup_helpers import csrf_field
from tests.bot.telegram_helpers import SECRET as TELEGRAM_SECRET
from tests.bot.telegram_helpers import TelegramService
from tests.bot.wechat_helpers import TOKEN, WeChatService
from tests.fakes.smtp import FakeSmtp, free_port, running_fake_smtp
from tests.fakes.telegram_api import TOKEN as TELEGRAM_TOKEN
from tests.fakes.telegram_api import running_fake_telegram
from tests.fakes.telegram_updates import callback_update
from tests.fakes.wechat_api import APPID, SECRET, running_fake_wechat

FIRST = dt.date(2020, 6, 17)  # the broadcast whose mail carries the preference link
ISSUE_DATE = dt.date(2020, 7, 2)
ISSUE = parse_issue(read_issue_file(DEMO_DIR / f"{ISSUE_DATE}.md"))
WECHAT_READER = "oJianbaoTopicsReader000000001"
WECHAT_PLAIN = "oJianbaoTopicsReader000000002"
TELEGRAM_READER = 810_001
TELEGRAM_PLAIN = 810_002
TELEGRAM_OFF_TOPIC = 810_003
EMAIL_READER = "topics-reader@example.com"
EMAIL_PLAIN = "plain-reader@example.com"


@dataclass
class Journey:
    app: web.Application
    client: TestClient[Any, Any]
    settings: Settings
    wechat: WeChatService
    telegram: TelegramService
    smtp: FakeSmtp

    @property
    def services(self) -> Services:
        return self.app[SERVICES]

    async def seen_lately(self, *openids: str) -> None:
        """Wait until the followers' last messages are written (in batches, about a second later): the
        48 h window the broadcast opens for them."""
        s = core_table(SubscriberRow)
        query = select(func.count()).where(
            s.c.channel == "wechat", s.c.address.in_(openids), s.c.last_seen_at.is_not(None)
        )
        for _ in range(100):
            async with self.services.storage.database.transaction() as connection:
                if (await connection.execute(query)).scalar_one() == len(openids):
                    return
            await asyncio.sleep(0.1)
        raise AssertionError("the followers' last messages were not written in 10 s")

    async def broadcast(self, date: dt.date, *channels: str) -> StartReport:
        database = self.services.storage.database
        outcome = await BroadcastControl(self.settings, database).send(
            SendRequest(date, channels, wechat_text=True)
        )
        assert isinstance(outcome, StartReport)
        async with open_worker(self.settings, database, name="journey") as parts:
            await asyncio.wait_for(parts.worker.run(asyncio.Event(), until_idle=True), 60)
        return outcome


@pytest.fixture
async def journey(tmp_path: Path) -> AsyncIterator[Journey]:
    folder = tmp_path / "issues"
    folder.mkdir()
    for date in (FIRST, ISSUE_DATE):
        shutil.copy(DEMO_DIR / f"{date}.md", folder / f"{date}.md")
    port = free_port()
    with running_fake_smtp() as smtp:
        async with running_fake_telegram() as telegram, running_fake_wechat() as wechat:
            settings = Settings(
                _env_file=None,
                database_url=sqlite_url(tmp_path / "journey.db"),
                public_url=f"http://127.0.0.1:{port}",
                secret_key="journey-secret-key-0123456789abcdef",
                wechat_token=TOKEN,
                wechat_aes_key="",
                wechat_appid=APPID,
                wechat_secret=SECRET,
                wechat_api_url=wechat.url,
                wechat_thumb_media_id="thumb-media-id",
                telegram_token=TELEGRAM_TOKEN,
                telegram_secret=TELEGRAM_SECRET,
                telegram_api_url=telegram.url,
                smtp_url=smtp.url,
                mail_from="嵌入式AI简报 <newsletter@jianbao.example>",
                rate_limits=False,
                serve_worker="off",
                worker_poll_seconds=0.05,
                wecom_api_url="",
                feishu_api_url="",
            )
            async with Database(settings.database_url) as database:
                await database.migrate()
                report = await import_paths(sorted(folder.glob("*.md")), IssueStore(database))
                assert not report.failed
            app = create_app(settings)
            async with TestClient(TestServer(app, host="127.0.0.1", port=port)) as client:
                yield Journey(
                    app,
                    client,
                    settings,
                    WeChatService(client, wechat),
                    TelegramService(app, client, telegram),
                    smtp,
                )


def focus_titles(*topics: str) -> list[str]:
    return [ISSUE.sections[at].items[index].title for at, index in TopicMatcher(ISSUE).focus(topics)]


def block(text: str, end: str) -> str:
    start = text.index(FOCUS_SECTION)
    return text[start : text.index(end, start + len(FOCUS_SECTION))]


def listed(text: str) -> int:
    return len(re.findall(r"^\d+\. ", text, flags=re.MULTILINE))


async def test_readers_choose_topics_on_every_channel_and_get_their_block(journey: Journey) -> None:
    subscribers = journey.services.subscribers
    # Email readers and the off-topic Telegram reader exist before the first broadcast.
    await subscribers.import_active(
        [("email", EMAIL_READER, ()), ("email", EMAIL_PLAIN, ()), ("telegram", str(TELEGRAM_PLAIN), ())]
    )
    # Email only: WeChat allows one mass send a day, which the second broadcast takes.
    await journey.broadcast(FIRST, "email")

    # WeChat: 订阅 量化 in the chat (a follower who said something is inside the 48 h window).
    reply = await journey.wechat.say("订阅 量化", openid=WECHAT_READER)
    assert "已订阅：量化" in reply
    assert "最多 20 个" not in reply
    assert await journey.wechat.event("subscribe", openid=WECHAT_PLAIN)
    assert await journey.wechat.say("最新", openid=WECHAT_PLAIN)
    await journey.seen_lately(WECHAT_READER, WECHAT_PLAIN)
    # Telegram: /topics, then two presses.
    telegram = journey.telegram
    sent = await telegram.say(TELEGRAM_READER, "/topics")
    labels = [button["text"] for row in sent["reply_markup"]["inline_keyboard"] for button in row]
    chosen = [label for label in labels if label in ("剪枝", "tensorrt", "量化", "移动端", "gpu")][:2]
    assert len(chosen) == 2, labels
    for label in chosen:
        message = telegram.fake.last_message(TELEGRAM_READER)
        data = next(
            button["callback_data"]
            for row in message["reply_markup"]["inline_keyboard"]
            for button in row
            if button["text"] == label
        )
        await telegram.post(callback_update(TELEGRAM_READER, message, data))
    telegram_reader = await subscribers.get("telegram", str(TELEGRAM_READER))
    assert telegram_reader is not None
    assert telegram_reader.topics == tuple(chosen)
    # A topic no issue is about (the bots refuse it; an imported list may still hold one).
    await subscribers.subscribe("telegram", str(TELEGRAM_OFF_TOPIC), topics=("区块链",))
    # Email: the preference link of the first broadcast's mail.
    mail = next(mail for mail in journey.smtp.messages if EMAIL_READER in mail.recipients)
    link = re.search(r"http://127\.0\.0\.1:\d+(/preferences/[A-Za-z0-9._~-]+)", mail.text)
    assert link is not None, mail.text
    page = await journey.client.get(link.group(1))
    assert page.status == 200
    saved = await journey.client.post(
        link.group(1), data=[(FIELD, csrf_field(await page.text())), ("topic", "剪枝"), ("pause", "keep")]
    )
    assert saved.status == 200, await saved.text()
    email_reader = await subscribers.get("email", EMAIL_READER)
    assert email_reader is not None
    assert email_reader.topics == ("剪枝",)

    sent_before = {chat: len(telegram.fake.sent_to(chat)) for chat in (TELEGRAM_READER, TELEGRAM_PLAIN)}
    texts_before = {
        openid: len(journey.wechat.fake.texts_to(openid)) for openid in (WECHAT_READER, WECHAT_PLAIN)
    }
    mails_before = len(journey.smtp.messages)

    report = await journey.broadcast(ISSUE_DATE, "wechat", "telegram", "email")
    rows = await DeliveryLedger(journey.services.storage.database).deliveries(report.broadcast.id)
    states = Counter((row["channel"], row["state"], row["last_error"]) for row in rows)
    assert states == {
        ("wechat", "sent", None): 3,  # the mass send, and a text to each reader who wrote lately
        ("telegram", "sent", None): 2,
        ("telegram", "skipped", SKIP_TOPICS): 1,
        ("email", "sent", None): 2,
    }

    # WeChat: the customer-service text opens with the 量化 items.
    (text,) = journey.wechat.fake.texts_to(WECHAT_READER)[texts_before[WECHAT_READER] :]
    wechat_block = block(text, "【")
    # A text reply holds 2,048 bytes: the block is fitted like a section, its first items shown and the
    # rest counted ("还有 N 条", linking to the issue's page).
    more = re.search(r"还有 (\d+) 条", wechat_block)
    hidden = int(more.group(1)) if more else 0
    assert listed(wechat_block) >= 1
    assert listed(wechat_block) + hidden == len(focus_titles("量化"))
    assert focus_titles("量化")[0][:15] in wechat_block
    (plain_text,) = journey.wechat.fake.texts_to(WECHAT_PLAIN)[texts_before[WECHAT_PLAIN] :]
    assert FOCUS_SECTION not in plain_text
    # Telegram: the first message's block lists the items of the two toggled topics.
    first = telegram.fake.sent_to(TELEGRAM_READER)[sent_before[TELEGRAM_READER]]["text"]
    telegram_block = block(first, "<b>")
    expected = focus_titles(*chosen)
    assert listed(telegram_block) == len(expected)
    for title in expected:
        assert title[:15] in telegram_block
    plain_first = telegram.fake.sent_to(TELEGRAM_PLAIN)[sent_before[TELEGRAM_PLAIN]]["text"]
    assert FOCUS_SECTION not in plain_first
    assert telegram.fake.sent_to(TELEGRAM_OFF_TOPIC) == []
    # Email: the 剪枝 items first, in both parts.
    mails = {mail.recipients[0]: mail for mail in journey.smtp.messages[mails_before:]}
    email_block = block(mails[EMAIL_READER].text, f"【{ISSUE.sections[0].name}")
    for title in focus_titles("剪枝"):
        assert title[:15] in email_block
    assert listed(email_block) == len(focus_titles("剪枝"))
    assert FOCUS_SECTION not in mails[EMAIL_PLAIN].text
