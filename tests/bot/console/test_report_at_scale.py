"""An issue sent to 10,000 Telegram subscribers through the fake Bot API by `serve`'s own worker, then
what readers do after: clicks (double clicks and preview-bot fetches among them) and /unsubscribe through
the bot's webhook. The per-issue page and the API must show exactly what happened."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.app import create_app
from bot.click_buffer import CLICKS
from bot.console.passwords import hash_password
from bot.importing import import_paths
from bot.settings import Settings
from storage.database import Database
from storage.editors import EditorStore
from storage.issues import IssueStore
from storage.subscribers import SubscriberStore
from tests.bot.console.conftest import NAME, PASSWORD, SignedIn
from tests.bot.helpers import minimal_issue, sqlite_url
from tests.fakes.telegram_api import TOKEN, running_fake_telegram
from tests.fakes.telegram_updates import message_update
from tests.fakes.wechat_api import running_fake_wechat

DAY = "2026-12-01"
READERS = 10_000
BLOCKED = 150  # chats that blocked the bot: the sends to them fail as "blocked"
FIRST_CHAT = 500_000
CLICKERS = 400  # readers who click the first link once...
DOUBLE_CLICKERS = 100  # ...of whom these click it again within a minute (counted once)
SECOND_LINK_CLICKERS = 60  # readers who click the second link
PREVIEW_FETCHES = 80  # Telegram's link-preview bot fetching the first link
LEAVERS = 120  # readers who send /unsubscribe after the issue
ADMIN = "an-admin-token-for-the-report-at-scale-test"
SECRET = "a-telegram-webhook-secret"
PERSON = "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/126.0 Mobile Safari/537.36"
PREVIEW_BOT = "TelegramBot (like TwitterBot)"


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[SignedIn]:
    url = sqlite_url(tmp_path / "scale.db")
    issue = tmp_path / f"{DAY}.md"
    issue.write_text(minimal_issue(DAY), encoding="utf-8")
    chats = [FIRST_CHAT + n for n in range(READERS)]
    async with Database(url) as database:
        await database.migrate()
        await import_paths([issue], IssueStore(database))
        await SubscriberStore(database).import_active([("telegram", str(chat), ()) for chat in chats])
        await EditorStore(database).add(NAME, hash_password(PASSWORD))
    async with running_fake_telegram() as telegram, running_fake_wechat() as wechat:
        telegram.blocked.update(chats[-BLOCKED:])
        settings = Settings(
            database_url=url,
            public_url="http://127.0.0.1",
            secret_key="report-at-scale-secret-key",
            track_links=True,
            admin_token=ADMIN,
            trusted_proxies="127.0.0.1",  # the readers' addresses come in X-Forwarded-For
            telegram_token=TOKEN,
            telegram_secret=SECRET,
            telegram_api_url=telegram.url,
            serve_worker="on",
            rate_limits=False,
            worker_poll_seconds=0.05,
            worker_concurrency=64,
        )
        async with TestClient(TestServer(create_app(settings), host="127.0.0.1")) as client:
            console = SignedIn(client, telegram, wechat, url)
            await console.page("/console/sign-in")
            assert (
                await console.post("/console/sign-in", {"name": NAME, "password": PASSWORD})
            ).status == 303
            yield console


async def _click(console: SignedIn, token: str, reader: int, agent: str = PERSON) -> None:
    address = f"10.{reader // 65536}.{reader // 256 % 256}.{reader % 256}"
    response = await console.client.get(
        f"/r/{token}", headers={"User-Agent": agent, "X-Forwarded-For": address}, allow_redirects=False
    )
    assert response.status == 302


async def _all(calls: list[Any], at_once: int = 50) -> None:
    for start in range(0, len(calls), at_once):
        await asyncio.gather(*calls[start : start + at_once])


async def test_ten_thousand_readers_and_the_report_shows_exactly_what_they_did(console: SignedIn) -> None:
    await console.page(f"/console/issues/{DAY}/broadcast")
    started = await console.post(
        f"/console/issues/{DAY}/broadcast", [("channel", "telegram"), ("when", "now")]
    )
    assert started.status == 303
    page = started.headers["Location"]
    deadline = time.monotonic() + 240
    while "完成" not in await console.page(f"{page}/progress"):
        assert time.monotonic() < deadline, "the broadcast did not finish in 4 minutes"
        await asyncio.sleep(0.5)

    text = console.telegram.sent_to(FIRST_CHAT)[0]["text"]
    tokens = list(dict.fromkeys(re.findall(r'href="http://127\.0\.0\.1/r/([A-Za-z0-9_-]+)"', text)))
    assert len(tokens) == 2, text  # the issue's two items (the issue page's own link is not tracked)
    first, second = tokens
    clicks = [_click(console, first, reader) for reader in range(CLICKERS)]
    clicks += [_click(console, first, reader) for reader in range(DOUBLE_CLICKERS)]
    clicks += [_click(console, second, reader) for reader in range(SECOND_LINK_CLICKERS)]
    clicks += [_click(console, first, 60_000 + n, PREVIEW_BOT) for n in range(PREVIEW_FETCHES)]
    await _all(clicks)
    await console.client.app[CLICKS].flush()  # type: ignore[index]
    for reader in range(LEAVERS):
        update = json.dumps(message_update(FIRST_CHAT + reader, "/unsubscribe"), ensure_ascii=False)
        response = await console.client.post(
            "/telegram",
            data=update.encode(),
            headers={"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET},
        )
        assert response.status == 200

    broadcast_id = page.rsplit("/", 1)[1]
    api = await console.client.get(
        f"/api/broadcasts/{broadcast_id}/stats", headers={"Authorization": f"Bearer {ADMIN}"}
    )
    stats = await api.json()
    counted = CLICKERS + SECOND_LINK_CLICKERS
    assert stats["channels"]["telegram"] == {
        "sent": READERS - BLOCKED,
        "failed": 0,
        "blocked": BLOCKED,
        "bounced": 0,
        "skipped": 0,
        "uncertain": 0,
        "clicks": counted,
        "unique_clicks": counted,
    }
    assert stats["filtered_clicks"] == DOUBLE_CLICKERS + PREVIEW_FETCHES
    assert stats["unsubscribes"] == {"telegram": LEAVERS}
    assert [(link["clicks"], link["unique_clicks"]) for link in stats["links"][:2]] == [
        (CLICKERS, CLICKERS),
        (SECOND_LINK_CLICKERS, SECOND_LINK_CLICKERS),
    ]

    html = await console.page(f"{page}/stats")
    row = re.search(r'<tr><th scope="row">Telegram</th>(.*?)</tr>', html, re.S)
    assert row is not None
    cells = [
        re.sub(r"<[^>]+>", "", cell).split()
        for cell in re.findall(r'<td class="num">(.*?)</td>', row.group(1), re.S)
    ]
    assert cells[0] == [f"{READERS - BLOCKED:,}", f"{100 * (READERS - BLOCKED) / READERS:.1f}%"]
    assert cells[2] == [f"{BLOCKED:,}", f"{100 * BLOCKED / READERS:.1f}%"]
    assert cells[6] == [f"{counted:,}（{counted:,}）"]
    assert cells[7] == [f"{100 * counted / (READERS - BLOCKED):.1f}%"]
    assert cells[8] == [f"{LEAVERS:,}"]
    assert cells[10] == ["0"]  # nobody joined in the days after: the readers were imported before
    assert f"没有计入的点击 {DOUBLE_CLICKERS + PREVIEW_FETCHES} 次" in html
    for name in ("hourly", "daily"):  # each series adds up to the clicks counted
        table = html.split(f'id="timeline-{name}"', 1)[1].split("</table>", 1)[0]
        cells = re.findall(r'<td data-value="[^"]+">[^<]+</td><td class="num">(\d+)</td>', table)
        assert sum(int(clicks) for clicks in cells) == counted, name
