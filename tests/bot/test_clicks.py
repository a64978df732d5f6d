"""Clicks through the running app: /r/{token} answers at once, and once the buffer has written, the figures
count readers only (previews, scanners and repeats apart); the buffer on its own against a real database."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.batch_writer import buffering
from bot.click_buffer import CLICKS, ClickBuffer, Clickers
from channels.links import tracking_token
from storage.clicks import ClickStore
from storage.database import Database
from storage.links import LinkStore
from storage.tables import ClickRow, core_table
from tests.bot.helpers import postgres_database
from tests.bot.signup_helpers import DAY, SECRET_KEY, Service, running_signup
from tests.conftest import BACKENDS

ARTICLE = "https://arxiv.org/abs/2106.08295"
FIXED = "https://arxiv.org/abs/2106.08296"
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"


@pytest.fixture(params=BACKENDS)
async def service(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Service]:
    if request.param == "sqlite":
        async with running_signup(tmp_path) as service:
            yield service
    else:
        async with postgres_database() as url, running_signup(tmp_path, database_url=url) as service:
            yield service


async def remember(service: Service, url: str = ARTICLE) -> str:
    token = tracking_token(SECRET_KEY.encode(), "telegram", DAY, url)
    await service.services.links.remember("telegram", DAY, [(token, url)])
    return token


async def click(service: Service, token: str, agent: str) -> str:
    response = await service.client.get(f"/r/{token}", allow_redirects=False, headers={"User-Agent": agent})
    assert response.status == 302
    return response.headers["Location"]


async def test_readers_count_and_previews_scanners_and_repeats_are_filtered(service: Service) -> None:
    token = await remember(service)
    buffer = service.client.app[CLICKS]

    for agent in ("TelegramBot (like TwitterBot)", "Barracuda Sentinel (EE)", CHROME, CHROME, FIREFOX):
        assert await click(service, token, agent) == ARTICLE
    assert (await service.client.head(f"/r/{token}", allow_redirects=False)).status == 302  # never noted
    await buffer.flush()

    (stats,) = await buffer.store.link_stats(DAY)
    assert (stats.clicks, stats.unique_clicks, stats.filtered_clicks) == (2, 2, 3)
    hours = await buffer.store.timeline(DAY, dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    assert {hour.channel for hour in hours} == {"telegram"}
    assert (sum(hour.clicks for hour in hours), sum(hour.unique_clicks for hour in hours)) == (2, 2)
    table = core_table(ClickRow)
    async with service.services.storage.database.transaction() as connection:
        rows = (
            await connection.execute(select(table.c.clicker, table.c.filtered).order_by(table.c.id))
        ).all()
    assert [row.filtered for row in rows] == ["preview", "scanner", None, "repeat", None]
    assert all("127.0.0.1" not in row.clicker and len(row.clicker) == 32 for row in rows)
    assert len({row.clicker for row in rows}) == 4  # one address, four user agents


async def test_a_fixed_link_sends_later_clicks_to_its_new_url(service: Service) -> None:
    token = await remember(service)
    assert await click(service, token, CHROME) == ARTICLE  # the link is now in the redirect's cache

    await service.client.app[CLICKS].store.set_url(token, FIXED)

    assert await click(service, token, FIREFOX) == FIXED
    await service.client.app[CLICKS].flush()
    assert await service.services.links.clicks(token) == 2


# --- the buffer on its own


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 12, 4, 8, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


async def _link(db: Database) -> tuple[ClickStore, str]:
    token = tracking_token(SECRET_KEY.encode(), "email", DAY, ARTICLE)
    await LinkStore(db).remember("email", DAY, [(token, ARTICLE)])
    return ClickStore(db), token


async def test_a_full_buffer_is_written_before_its_time(db: Database) -> None:
    store, token = await _link(db)
    buffer = ClickBuffer(store, SECRET_KEY, flush_seconds=3600, max_waiting=3)
    async with buffering(buffer):
        buffer.note(token, "192.0.2.1", CHROME)
        buffer.note(token, "192.0.2.2", CHROME)
        assert buffer.waiting == 2
        buffer.note(token, "192.0.2.3", CHROME)
        for _ in range(100):
            if await LinkStore(db).clicks(token) == 3:
                break
            await asyncio.sleep(0.02)
        assert await LinkStore(db).clicks(token) == 3
        buffer.note(token, "192.0.2.4", CHROME)  # written on leaving
    assert await LinkStore(db).clicks(token) == 4


async def test_beyond_what_it_holds_the_oldest_clicks_are_dropped_and_logged(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    store, token = await _link(db)
    clock = Clock()
    buffer = ClickBuffer(store, SECRET_KEY, max_waiting=100, max_held=3, clock=clock)
    for n in range(5):
        clock.now += dt.timedelta(minutes=1)
        buffer.note(token, f"192.0.2.{n}", CHROME)

    with caplog.at_level(logging.WARNING, logger="bot.click_buffer"):
        assert await buffer.flush()

    assert "2 clicks dropped" in caplog.text
    table = core_table(ClickRow)
    async with db.transaction() as connection:
        times = (await connection.execute(select(table.c.at).order_by(table.c.at))).scalars().all()
    assert [at.replace(tzinfo=dt.UTC).minute for at in times] == [3, 4, 5]


def test_a_clicker_is_another_one_the_next_day() -> None:
    clickers = Clickers(SECRET_KEY)
    monday = dt.datetime(2026, 12, 7, 23, 59, tzinfo=dt.UTC)

    same = clickers.name("192.0.2.1", CHROME, monday)
    assert clickers.name("192.0.2.1", CHROME, monday.replace(hour=0)) == same
    assert clickers.name("192.0.2.1", CHROME, monday + dt.timedelta(minutes=2)) != same
    assert clickers.name("192.0.2.1", FIREFOX, monday) != same
    assert clickers.name("192.0.2.2", CHROME, monday) != same
    assert Clickers("another key").name("192.0.2.1", CHROME, monday) != same
