"""Mail scanners by timing (storage/clicks.py): a reader's click soon after their mail was sent, and one
clicker's burst over several links of an issue, whose clicks already counted are taken back; readers'
clicks with their subscriber id, and what an erasure leaves of them (nothing)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import insert, select

from channels.links import tracking_token
from channels.registry import channel_registry
from storage.clicks import SCANNER_BURST_SECONDS, SCANNER_SECONDS, ClickEvent, ClickStore
from storage.database import Database
from storage.links import LinkStore
from storage.subscribers import SubscriberStore
from storage.tables import BroadcastRow, ClickHourRow, ClickRow, DeliveryRow, core_table
from tests.storage.test_subscribers_erase import _dump

DAY = dt.date(2020, 7, 2)
SECRET = b"scanner-test-secret"
URLS = [f"https://arxiv.org/abs/2106.0{n}" for n in range(4)]
TOKENS = [tracking_token(SECRET, "email", DAY, url) for url in URLS]
SENT = dt.datetime(2026, 12, 4, 8, 0, tzinfo=dt.UTC)
HASH = "c" * 32
ADDRESS = "reader@example.com"


async def _setup(db: Database) -> tuple[ClickStore, int]:
    """The issue's links, and a reader whose mail of it went out at SENT."""
    await LinkStore(db).remember("email", DAY, list(zip(TOKENS, URLS, strict=True)))
    reader, _ = await SubscriberStore(db, keys=channel_registry().address_key).subscribe("email", ADDRESS)
    b, d = core_table(BroadcastRow), core_table(DeliveryRow)
    async with db.transaction("write") as connection:
        result = await connection.execute(
            insert(b).values(
                issue_date=DAY,
                channels=["email"],
                state="done",
                options={},
                start_at=SENT,
                created_at=SENT,
                updated_at=SENT,
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        await connection.execute(
            insert(d).values(
                broadcast_id=int(key[0]),
                subscriber_id=reader.id,
                channel="email",
                kind="direct",
                state="sent",
                next_attempt_at=SENT,
                sent_at=SENT,
            )
        )
    return ClickStore(db), reader.id


async def _figures(store: ClickStore) -> dict[str, tuple[int, int, int]]:
    return {
        found.token: (found.clicks, found.unique_clicks, found.filtered_clicks)
        for found in await store.link_stats(DAY)
    }


async def _rows(db: Database) -> list[tuple[str, str | None, int | None]]:
    c = core_table(ClickRow)
    async with db.transaction() as connection:
        found = await connection.execute(select(c.c.token, c.c.filtered, c.c.subscriber_id).order_by(c.c.id))
        return [(token, filtered, subscriber) for token, filtered, subscriber in found]


async def _hours(db: Database) -> tuple[int, int]:
    h = core_table(ClickHourRow)
    async with db.transaction() as connection:
        rows = (await connection.execute(select(h.c.clicks, h.c.unique_clicks))).all()
    return sum(row.clicks for row in rows), sum(row.unique_clicks for row in rows)


async def test_a_readers_click_right_after_their_mail_went_out_is_a_scanner(db: Database) -> None:
    store, reader = await _setup(db)
    soon = SENT + SCANNER_SECONDS - dt.timedelta(seconds=1)
    later = SENT + SCANNER_SECONDS + dt.timedelta(seconds=1)

    await store.record([ClickEvent(TOKENS[0], soon, HASH, subscriber_id=reader)])
    await store.record([ClickEvent(TOKENS[1], later, HASH, subscriber_id=reader)])
    # The same moment without a reader id: nothing says whose mail it was, so it counts.
    await store.record([ClickEvent(TOKENS[2], soon, HASH)])

    figures = await _figures(store)
    assert figures[TOKENS[0]] == (0, 0, 1)
    assert figures[TOKENS[1]] == (1, 1, 0)
    assert figures[TOKENS[2]] == (1, 1, 0)
    assert await _rows(db) == [
        (TOKENS[0], "scanner", reader),
        (TOKENS[1], None, reader),
        (TOKENS[2], None, None),
    ]
    c = core_table(ClickRow)
    async with db.transaction() as connection:
        clickers = (await connection.execute(select(c.c.clicker).order_by(c.c.id))).scalars().all()
    assert clickers == [f"s:{reader}", f"s:{reader}", HASH]


async def test_a_reader_id_without_a_mail_of_the_issue_is_not_theirs(db: Database) -> None:
    store, reader = await _setup(db)
    later = SENT + dt.timedelta(hours=1)

    await store.record([ClickEvent(TOKENS[0], later, HASH, subscriber_id=reader + 1)])

    assert await _rows(db) == [(TOKENS[0], None, None)]


async def test_a_burst_over_three_links_is_a_scanner_and_its_counted_clicks_are_taken_back(
    db: Database,
) -> None:
    store, _ = await _setup(db)
    t = SENT + dt.timedelta(hours=1)
    step = SCANNER_BURST_SECONDS / 3
    # One batch: two links, both counted (a reader may open two links quickly).
    await store.record([ClickEvent(TOKENS[0], t, HASH), ClickEvent(TOKENS[1], t + step, HASH)])
    assert await _figures(store) == {
        TOKENS[0]: (1, 1, 0),
        TOKENS[1]: (1, 1, 0),
        TOKENS[2]: (0, 0, 0),
        TOKENS[3]: (0, 0, 0),
    }
    assert await _hours(db) == (2, 2)

    # The next batch: a third link within the window, and another clicker's ordinary click.
    await store.record(
        [ClickEvent(TOKENS[2], t + 2 * step, HASH), ClickEvent(TOKENS[0], t + 2 * step, "d" * 32)]
    )

    assert await _figures(store) == {
        TOKENS[0]: (1, 1, 1),
        TOKENS[1]: (0, 0, 1),
        TOKENS[2]: (0, 0, 1),
        TOKENS[3]: (0, 0, 0),
    }
    assert await _hours(db) == (1, 1)
    assert [filtered for _, filtered, _ in await _rows(db)] == ["scanner", "scanner", "scanner", None]

    # Later, the same clicker on a fourth link, outside the window: a reader's click again, and unique.
    await store.record([ClickEvent(TOKENS[3], t + dt.timedelta(minutes=1), HASH)])
    assert (await _figures(store))[TOKENS[3]] == (1, 1, 0)


async def test_clicks_spread_out_over_three_links_all_count(db: Database) -> None:
    store, _ = await _setup(db)
    t = SENT + dt.timedelta(hours=1)
    spaced = SCANNER_BURST_SECONDS + dt.timedelta(milliseconds=100)

    await store.record([ClickEvent(TOKENS[n], t + n * spaced, HASH) for n in range(3)])

    assert [filtered for _, filtered, _ in await _rows(db)] == [None, None, None]
    assert sum(clicks for clicks, _, _ in (await _figures(store)).values()) == 3


async def test_an_erased_reader_leaves_no_click_and_the_counts_stay(db: Database) -> None:
    store, reader = await _setup(db)
    later = SENT + dt.timedelta(hours=1)
    await store.record([ClickEvent(TOKENS[0], later, HASH, subscriber_id=reader)])
    await store.record([ClickEvent(TOKENS[1], later, HASH)])
    assert f"s:{reader}" in await _dump(db)

    assert await SubscriberStore(db, keys=channel_registry().address_key).erase_id(reader, actor="li")

    after = await _dump(db)
    assert f"s:{reader}" not in after
    assert ADDRESS not in after
    assert await _rows(db) == [(TOKENS[1], None, None)]
    assert (await _figures(store))[TOKENS[0]] == (1, 1, 0)  # the aggregates name nobody
