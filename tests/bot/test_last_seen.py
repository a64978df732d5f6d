"""The last-seen buffer on a real database: notes are written in batches, by time or by count, never
moving a time back, and what is left is written on close."""

from __future__ import annotations

import asyncio
import datetime as dt

from sqlalchemy import select

from bot.batch_writer import buffering
from bot.last_seen import LastSeenBuffer
from channels.registry import channel_registry
from storage.database import Database
from storage.subscribers import SubscriberStore
from storage.tables import SubscriberRow, core_table

READERS = [f"oJianbaoLastSeen{n:012d}" for n in range(6)]
T0 = dt.datetime(2026, 12, 4, 8, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


async def _store(db: Database) -> SubscriberStore:
    store = SubscriberStore(db, keys=channel_registry().address_key)
    for reader in READERS:
        await store.subscribe("wechat", reader)
    return store


async def _seen(db: Database) -> dict[str, dt.datetime | None]:
    s = core_table(SubscriberRow)
    async with db.transaction() as connection:
        rows = (await connection.execute(select(s.c.address, s.c.last_seen_at))).all()
    return {row.address: row.last_seen_at and row.last_seen_at.replace(tzinfo=dt.UTC) for row in rows}


async def test_notes_are_written_when_the_batch_is_full_not_before(db: Database) -> None:
    store = await _store(db)
    clock = Clock()
    buffer = LastSeenBuffer(store, "wechat", flush_seconds=3600, max_waiting=3, clock=clock)
    async with buffering(buffer):
        buffer.note(READERS[0])
        buffer.note(READERS[1])
        await asyncio.sleep(0.2)
        assert set((await _seen(db)).values()) == {None}  # two of three: waiting
        buffer.note(READERS[2])
        for _ in range(50):
            if buffer.waiting == 0:
                break
            await asyncio.sleep(0.05)
        seen = await _seen(db)
        assert [seen[reader] for reader in READERS[:3]] == [T0, T0, T0]
        clock.now = T0 + dt.timedelta(minutes=5)
        buffer.note(READERS[3])  # one more, written at close
    seen = await _seen(db)
    assert seen[READERS[3]] == T0 + dt.timedelta(minutes=5)
    assert seen[READERS[4]] is None


async def test_notes_are_written_within_the_flush_interval(db: Database) -> None:
    store = await _store(db)
    buffer = LastSeenBuffer(store, "wechat", flush_seconds=0.2, max_waiting=1000, clock=Clock())
    async with buffering(buffer):
        buffer.note(READERS[0])
        await asyncio.sleep(1.0)
        assert (await _seen(db))[READERS[0]] == T0
        assert buffer.waiting == 0


async def test_a_time_never_moves_back(db: Database) -> None:
    store = await _store(db)
    later = T0 + dt.timedelta(hours=1)
    await store.seen_many("wechat", {READERS[0]: later, READERS[1]: T0})
    await store.seen_many("wechat", {READERS[0]: T0, READERS[1]: later})  # a late, older batch
    seen = await _seen(db)
    assert (seen[READERS[0]], seen[READERS[1]]) == (later, later)
