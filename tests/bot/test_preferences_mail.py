"""The preference link end to end: an email broadcast through the real worker and the fake SMTP server,
each mail's footer (HTML and text) linking that reader's own preference page; the reader follows it and
pauses for one issue; the next broadcast skips them ("paused by the reader") and mails the others; the one
after reaches them again."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from bot.app import create_app
from bot.broadcast.control import BroadcastControl, SendRequest
from bot.broadcast.runtime import open_worker
from bot.csrf import FIELD
from bot.importing import import_paths
from bot.settings import Settings
from channels.registry import channel_registry
from storage.broadcasts import PAUSED, StartReport
from storage.database import Database
from storage.deliveries import DeliveryLedger
from storage.issues import IssueStore
from storage.subscribers import SubscriberStore
from tests.bot.helpers import DEMO_DIR, sqlite_url
from tests.bot.signup_helpers import csrf_field
from tests.fakes.smtp import FakeSmtp, running_fake_smtp

DAYS = (dt.date(2020, 6, 17), dt.date(2020, 7, 2), dt.date(2020, 7, 18))
PUBLIC_URL = "http://127.0.0.1"
READERS = ("ann@example.com", "bo@example.com")
PREFERENCES_LINK = re.compile(r"http://127\.0\.0\.1/preferences/[A-Za-z0-9_-]{39}")


def _settings(url: str, smtp: FakeSmtp) -> Settings:
    return Settings(
        database_url=url,
        public_url=PUBLIC_URL,
        secret_key="preference-mail-test-secret-key",
        smtp_url=f"smtp://127.0.0.1:{smtp.port}",
        serve_worker="off",
        rate_limits=False,
        worker_poll_seconds=0.05,
        telegram_token="",
        wechat_appid="",
        wecom_api_url="",
        feishu_api_url="",
    )


async def _broadcast(settings: Settings, database: Database, day: dt.date) -> StartReport:
    report = await BroadcastControl(settings, database).send(SendRequest(day, ("email",)))
    assert isinstance(report, StartReport)
    async with open_worker(settings, database, name="test-worker") as parts:
        await asyncio.wait_for(parts.worker.run(asyncio.Event(), until_idle=True), 60)
    return report


def _links(smtp: FakeSmtp, address: str) -> tuple[str, str]:
    """The preference link in the HTML and the text part of the latest mail to `address`."""
    mail = [received for received in smtp.messages if address in received.message["To"]][-1]
    parts = []
    for subtype in ("html", "plain"):
        body = mail.message.get_body(preferencelist=(subtype,))
        assert body is not None
        parts.append(str(body.get_content()))
    html, text = parts
    (in_html,) = re.findall(rf'<a href="({PREFERENCES_LINK.pattern})"[^>]*>管理订阅/选择话题</a>', html)
    (in_text,) = re.findall(rf"^管理订阅/选择话题：({PREFERENCES_LINK.pattern})$", text, re.MULTILINE)
    return in_html, in_text


async def test_each_mail_links_its_readers_page_and_a_pause_there_skips_the_next_issue(
    tmp_path: Path,
) -> None:
    url = sqlite_url(tmp_path / "preferences.db")
    with running_fake_smtp() as smtp:
        settings = _settings(url, smtp)
        async with Database(url) as database:
            await database.migrate()
            await import_paths([DEMO_DIR / f"{day}.md" for day in DAYS], IssueStore(database))
            subscribers = SubscriberStore(database, keys=channel_registry().address_key)
            await subscribers.import_active([("email", address, ()) for address in READERS])

            await _broadcast(settings, database, DAYS[0])

            assert len(smtp.messages) == 2
            ann_html, ann_text = _links(smtp, "ann@example.com")
            bo_html, _ = _links(smtp, "bo@example.com")
            assert ann_html == ann_text
            assert ann_html != bo_html
            assert "JIANBAO-PREFERENCES" not in "".join(str(m.message) for m in smtp.messages)

            async with TestClient(TestServer(create_app(settings), host="127.0.0.1")) as client:
                path = ann_html.removeprefix(PUBLIC_URL)
                page = await client.get(path)
                assert page.status == 200
                html = await page.text()
                assert "a***@example.com 的订阅设置。" in html
                paused = await client.post(path, data={FIELD: csrf_field(html), "pause": "1"})
                assert paused.status == 200
                assert "已暂停：接下来的 1 期不发给你，之后自动恢复。" in await paused.text()

            second = await _broadcast(settings, database, DAYS[1])

            assert [m.message["To"] for m in smtp.messages[2:]] == ["bo@example.com"]
            deliveries = await DeliveryLedger(database).deliveries(second.broadcast.id)
            ann = await subscribers.get("email", "ann@example.com")
            assert ann is not None
            assert [
                (row["state"], row["last_error"]) for row in deliveries if row["subscriber_id"] == ann.id
            ] == [("skipped", PAUSED)]
            assert ann.paused_issues == 0

            await _broadcast(settings, database, DAYS[2])

            assert sorted(m.message["To"] for m in smtp.messages[3:]) == list(READERS)
