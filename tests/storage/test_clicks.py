"""Clicks on a real database: which count, the aggregates they grow, and fixing a link after sending."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import func, select

from channels.links import tracking_token
from content.errors import BadInput, NotFound
from storage.clicks import ClickEvent, ClickStore, HourClicks, LinkStats
from storage.database import Database
from storage.links import LinkStore
from storage.tables import ClickRow, core_table

DAY = dt.date(2021, 7, 18)
SECRET = b"test secret key"
URL = "https://arxiv.org/abs/2106.08295"
OTHER_URL = "https://github.com/jianbao/fixed"
T0 = dt.datetime(2021, 7, 18, 9, 10, tzinfo=dt.UTC)
ANNA, BO = "a" * 32, "b" * 32


def token_of(url: str, channel: str = "telegram") -> str:
    return tracking_token(SECRET, channel, DAY, url)


TOKEN = token_of(URL)


@pytest.fixture
async def clicks(db: Database) -> ClickStore:
    await LinkStore(db).remember("telegram", DAY, [(TOKEN, URL)])
    return ClickStore(db)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


async def stats(clicks: ClickStore) -> tuple[int, int, int]:
    (found,) = await clicks.link_stats(DAY)
    return found.clicks, found.unique_clicks, found.filtered_clicks


async def test_a_repeat_within_five_minutes_counts_once_and_after_them_again(clicks: ClickStore) -> None:
    await clicks.record([ClickEvent(TOKEN, at(0), ANNA), ClickEvent(TOKEN, at(1), ANNA)])  # same batch
    assert await stats(clicks) == (1, 1, 1)
    await clicks.record([ClickEvent(TOKEN, at(4.9), ANNA)])  # against the database
    assert await stats(clicks) == (1, 1, 2)
    await clicks.record([ClickEvent(TOKEN, at(5), ANNA)])  # 5 minutes after the counted one
    assert await stats(clicks) == (2, 1, 2)


async def test_each_clicker_is_unique_once(clicks: ClickStore) -> None:
    await clicks.record([ClickEvent(TOKEN, at(0), ANNA), ClickEvent(TOKEN, at(0.5), BO)])
    await clicks.record([ClickEvent(TOKEN, at(30), ANNA), ClickEvent(TOKEN, at(31), BO)])

    assert await stats(clicks) == (4, 2, 0)


async def test_previews_and_scanners_are_counted_apart(clicks: ClickStore) -> None:
    await clicks.record(
        [
            ClickEvent(TOKEN, at(0), BO, "preview"),
            ClickEvent(TOKEN, at(0.1), BO, "scanner"),
            ClickEvent(TOKEN, at(0.2), ANNA),
        ]
    )

    assert await stats(clicks) == (1, 1, 2)
    # A filtered fetch is no counted click of its clicker: BO's own click is still unique.
    await clicks.record([ClickEvent(TOKEN, at(1), BO)])
    assert await stats(clicks) == (2, 2, 2)


async def test_the_hours_grow_with_the_counted_clicks(clicks: ClickStore, db: Database) -> None:
    email = token_of(URL, "email")
    await LinkStore(db).remember("email", DAY, [(email, URL)])
    await clicks.record(
        [
            ClickEvent(TOKEN, at(0), ANNA),
            ClickEvent(TOKEN, at(2), ANNA),  # a repeat: not in the hours
            ClickEvent(TOKEN, at(10), BO, "preview"),
            ClickEvent(email, at(20), BO),
        ]
    )
    await clicks.record([ClickEvent(TOKEN, at(55), ANNA), ClickEvent(TOKEN, at(70), BO)])

    nine, ten = T0.replace(minute=0), T0.replace(hour=10, minute=0)
    assert await clicks.timeline(DAY, T0 - dt.timedelta(days=1)) == [
        HourClicks(nine, "email", 1, 1),
        HourClicks(nine, "telegram", 1, 1),
        HourClicks(ten, "telegram", 2, 1),  # ANNA again (not unique), BO's first counted click
    ]
    assert await clicks.timeline(DAY, at(60)) == [HourClicks(ten, "telegram", 2, 1)]
    assert await clicks.timeline(DAY + dt.timedelta(days=1), T0) == []


async def test_every_click_is_kept_with_its_verdict(clicks: ClickStore, db: Database) -> None:
    await clicks.record(
        [
            ClickEvent(TOKEN, at(0), ANNA),
            ClickEvent(TOKEN, at(1), ANNA),
            ClickEvent(TOKEN, at(2), BO, "scanner"),
        ]
    )
    table = core_table(ClickRow)
    async with db.transaction() as connection:
        rows = (
            await connection.execute(
                select(table.c.clicker, table.c.counted, table.c.filtered).order_by(table.c.at)
            )
        ).all()

    assert [tuple(row) for row in rows] == [
        (ANNA, True, None),
        (ANNA, False, "repeat"),
        (BO, False, "scanner"),
    ]


async def test_clicks_on_unknown_tokens_are_dropped(clicks: ClickStore, db: Database) -> None:
    await clicks.record([ClickEvent(token_of("https://never.example/"), at(0), ANNA)])
    await clicks.record([])

    table = core_table(ClickRow)
    async with db.transaction() as connection:
        assert (await connection.execute(select(func.count()).select_from(table))).scalar_one() == 0
    assert await stats(clicks) == (0, 0, 0)


async def test_racing_batches_lose_no_count(clicks: ClickStore, db: Database) -> None:
    other = ClickStore(db)  # as another process would
    batches = [
        [ClickEvent(TOKEN, at(n), f"{n:032d}"), ClickEvent(TOKEN, at(n + 0.5), f"{n:032d}")]
        for n in range(20)
    ]
    # The same 20 new clickers' clicks in two racing batches: whichever wins, the other's are repeats.
    again = [ClickEvent(TOKEN, at(30), f"{100 + n:032d}") for n in range(20)]

    await asyncio.gather(
        *((clicks if n % 2 else other).record(batch) for n, batch in enumerate(batches)),
        clicks.record(again),
        other.record(again),
    )

    assert await stats(clicks) == (40, 40, 40)
    assert await clicks.timeline(DAY, T0) == [HourClicks(T0.replace(minute=0), "telegram", 40, 40)]


async def test_link_stats_of_an_issue(clicks: ClickStore, db: Database) -> None:
    email = token_of(OTHER_URL, "email")
    await LinkStore(db).remember("email", DAY, [(email, OTHER_URL)])
    await clicks.record([ClickEvent(email, at(0), ANNA)])

    assert await clicks.link_stats(DAY) == [
        LinkStats(email, "email", OTHER_URL, 1, 1, 0),
        LinkStats(TOKEN, "telegram", URL, 0, 0, 0),
    ]
    assert await clicks.link_stats(DAY + dt.timedelta(days=1)) == []


async def test_set_url_sends_later_clicks_elsewhere(clicks: ClickStore, db: Database) -> None:
    link = await clicks.link(TOKEN)
    assert link is not None
    assert link.url == URL

    await clicks.set_url(TOKEN, OTHER_URL)

    fixed = await clicks.link(TOKEN)
    assert fixed is not None
    assert fixed.url == OTHER_URL
    assert (await LinkStore(db).find(TOKEN)) == fixed
    assert [s.url for s in await clicks.link_stats(DAY)] == [OTHER_URL]


@pytest.mark.parametrize("url", ["javascript:alert(1)", "ftp://x.example/", "/relative", "https://", ""])
async def test_set_url_takes_only_http_urls(clicks: ClickStore, url: str) -> None:
    with pytest.raises(BadInput):
        await clicks.set_url(TOKEN, url)

    link = await clicks.link(TOKEN)
    assert link is not None
    assert link.url == URL


async def test_set_url_of_an_unknown_token(clicks: ClickStore) -> None:
    with pytest.raises(NotFound):
        await clicks.set_url(token_of("https://never.example/"), OTHER_URL)
