"""Per-reader clicks end to end (JIANBAO_TRACK_SUBSCRIBERS): an email broadcast through the fake SMTP
server, then the readers' links clicked through the real app's redirect and their clicks looked up on the
console's subscriber page. With the setting on a mail's tracked links carry the reader's `s` and a click is
theirs; a forged `s` counts per link only; with the setting off mails carry no `s` and no click names
anybody."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select, update

from bot.app import create_app
from bot.broadcast.control import BroadcastControl, SendRequest
from bot.broadcast.runtime import open_worker
from bot.click_buffer import CLICKS
from bot.console.passwords import hash_password
from bot.importing import import_paths
from bot.settings import Settings
from bot.tokens import ReaderIds
from channels.registry import channel_registry
from storage.broadcasts import StartReport
from storage.database import Database
from storage.editors import EditorStore
from storage.issues import IssueStore
from storage.subscribers import SubscriberStore
from storage.tables import ClickRow, DeliveryRow, core_table
from tests.bot.helpers import DEMO_DIR, sqlite_url
from tests.bot.signup_helpers import csrf_field
from tests.fakes.smtp import FakeSmtp, running_fake_smtp

DAY = dt.date(2020, 7, 2)
PUBLIC_URL = "http://127.0.0.1"
SECRET = "reader-clicks-test-secret-key"
NAME, PASSWORD = "editor-li", "correct horse battery staple"
READERS = ("ann@example.com", "bo@example.com")
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
TRACKED = re.compile(r'href="http://127\.0\.0\.1/r/([a-z2-7]{16})(\?s=[^"]*)?"')


@dataclass
class Sent:
    client: TestClient[web.Request, web.Application]
    smtp: FakeSmtp
    database: Database
    ids: dict[str, int]  # address -> subscriber id

    def links(self, address: str) -> list[tuple[str, str | None]]:
        """(token, s or None) of each tracked link in the HTML part of `address`'s mail."""
        (mail,) = [received for received in self.smtp.messages if address in received.message["To"]]
        body = mail.message.get_body(preferencelist=("html",))
        assert body is not None
        found = TRACKED.findall(str(body.get_content()))
        assert found, "the mail has no tracked link"
        return [(token, query[len("?s=") :] if query else None) for token, query in found]

    async def click(self, token: str, reader: str | None) -> None:
        query = {"s": reader} if reader is not None else {}
        response = await self.client.get(
            f"/r/{token}", params=query, allow_redirects=False, headers={"User-Agent": CHROME}
        )
        assert response.status == 302
        assert "s=" not in response.headers["Location"]  # the reader's id stays with us

    async def clicks(self) -> list[tuple[str, str, int | None, bool]]:
        await self.client.app[CLICKS].flush()
        c = core_table(ClickRow)
        async with self.database.transaction() as connection:
            rows = await connection.execute(
                select(c.c.token, c.c.clicker, c.c.subscriber_id, c.c.counted).order_by(c.c.id)
            )
            return [(token, clicker, subscriber, counted) for token, clicker, subscriber, counted in rows]

    async def page(self, path: str) -> str:
        response = await self.client.get(path, allow_redirects=False)
        assert response.status == 200
        return await response.text()


async def _send(tmp_path: Path, *, track_subscribers: bool) -> AsyncIterator[Sent]:
    url = sqlite_url(tmp_path / "clicks.db")
    with running_fake_smtp() as smtp:
        settings = Settings(
            database_url=url,
            public_url=PUBLIC_URL,
            secret_key=SECRET,
            track_links=True,
            track_subscribers=track_subscribers,
            smtp_url=f"smtp://127.0.0.1:{smtp.port}",
            serve_worker="off",
            rate_limits=False,
            worker_poll_seconds=0.05,
            telegram_token="",
            wechat_appid="",
            wecom_api_url="",
            feishu_api_url="",
        )
        async with Database(url) as database:
            await database.migrate()
            await import_paths([DEMO_DIR / f"{DAY}.md"], IssueStore(database))
            subscribers = SubscriberStore(database, keys=channel_registry().address_key)
            await subscribers.import_active([("email", address, ()) for address in READERS])
            await EditorStore(database).add(NAME, hash_password(PASSWORD))
            report = await BroadcastControl(settings, database).send(SendRequest(DAY, ("email",)))
            assert isinstance(report, StartReport)
            async with open_worker(settings, database, name="test-worker") as parts:
                await asyncio.wait_for(parts.worker.run(asyncio.Event(), until_idle=True), 60)
            assert len(smtp.messages) == len(READERS)
            # The mails went out a minute ago: a click now is a reader's, not a scanner's on delivery.
            d = core_table(DeliveryRow)
            async with database.transaction("write") as connection:
                await connection.execute(
                    update(d).values(sent_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
                )
            ids = {}
            for address in READERS:
                row = await subscribers.get("email", address)
                assert row is not None
                ids[address] = row.id
            async with TestClient(TestServer(create_app(settings), host="127.0.0.1")) as client:
                sign_in = await client.get("/console/sign-in")
                signed = await client.post(
                    "/console/sign-in",
                    data={"csrf_token": csrf_field(await sign_in.text()), "name": NAME, "password": PASSWORD},
                    allow_redirects=False,
                )
                assert signed.status == 303
                yield Sent(client, smtp, database, ids)


@pytest.fixture
async def tracking(tmp_path: Path) -> AsyncIterator[Sent]:
    async for sent in _send(tmp_path, track_subscribers=True):
        yield sent


@pytest.fixture
async def not_tracking(tmp_path: Path) -> AsyncIterator[Sent]:
    async for sent in _send(tmp_path, track_subscribers=False):
        yield sent


async def test_a_readers_mail_carries_their_id_and_their_click_is_theirs(tracking: Sent) -> None:
    ann, bo = READERS
    links = tracking.links(ann)
    readers = {reader for _, reader in links}
    assert readers == {ReaderIds(SECRET).make(tracking.ids[ann])}  # every tracked link, the same id
    assert {reader for _, reader in tracking.links(bo)} == {ReaderIds(SECRET).make(tracking.ids[bo])}
    assert "JIANBAO-READER" not in tracking.smtp.messages[0].message.as_string()
    token, reader = links[0]

    await tracking.click(token, reader)
    await tracking.click(token, reader)  # a repeat of the same reader

    assert await tracking.clicks() == [
        (token, f"s:{tracking.ids[ann]}", tracking.ids[ann], True),
        (token, f"s:{tracking.ids[ann]}", tracking.ids[ann], False),
    ]
    page = await tracking.page(f"/console/subscribers/{tracking.ids[ann]}")
    assert "<h2>点击</h2>" in page
    assert page.count("<td>2020-07-02</td><td>http") == 2
    assert "未计（repeat）" in page
    assert "<td>计入</td>" in page
    assert "点击记录未开启" not in page
    other = await tracking.page(f"/console/subscribers/{tracking.ids[bo]}")
    assert "还没有点击记录。" in other


async def test_a_forged_or_missing_reader_id_counts_per_link_only(tracking: Sent) -> None:
    ann, bo = READERS
    token, reader = tracking.links(ann)[0]
    assert reader is not None
    forged = ReaderIds("another-secret").make(tracking.ids[bo])

    for fake in (forged, reader[:-1] + ("A" if reader[-1] != "A" else "B"), "garbage", None):
        await tracking.click(token, fake)

    rows = await tracking.clicks()
    assert [subscriber for _, _, subscriber, _ in rows] == [None] * 4
    assert all(not clicker.startswith("s:") for _, clicker, _, _ in rows)
    assert [counted for *_, counted in rows] == [True, False, False, False]  # one browser: repeats
    assert "还没有点击记录。" in await tracking.page(f"/console/subscribers/{tracking.ids[bo]}")


async def test_with_the_setting_off_mails_carry_no_id_and_clicks_name_nobody(not_tracking: Sent) -> None:
    ann, _ = READERS
    links = not_tracking.links(ann)
    assert {reader for _, reader in links} == {None}
    assert "?s=" not in not_tracking.smtp.messages[0].message.as_string()
    token, _ = links[0]
    # A link of a mail sent while the setting was on: its id is ignored now.
    await not_tracking.click(token, ReaderIds(SECRET).make(not_tracking.ids[ann]))

    ((_, clicker, subscriber, counted),) = await not_tracking.clicks()
    assert (subscriber, counted) == (None, True)
    assert not clicker.startswith("s:")
    page = await not_tracking.page(f"/console/subscribers/{not_tracking.ids[ann]}")
    assert "点击记录未开启 (JIANBAO_TRACK_SUBSCRIBERS)" in page
    assert "<h2>点击</h2>" in page
    assert "<td>计入</td>" not in page
