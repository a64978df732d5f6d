"""Watchers share counts: one count of a broadcast's progress per `fresh_seconds` in a process, however
many ask; stale counts are shown while the next one runs; failures and shutdown behave."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from bot.broadcast.control import BroadcastControl
from bot.broadcast.snapshots import AudienceSnapshots, ProgressSnapshots, Snapshots
from bot.importing import import_paths
from bot.settings import Settings
from channels.registry import channel_registry
from storage.broadcasts import BroadcastStore, DeliveryState
from storage.database import Database
from storage.deliveries import DeliveryLedger, Result
from storage.issues import IssueStore
from storage.subscribers import SubscriberStore
from tests.bot.helpers import DEMO_DIR

DAY = dt.date(2020, 7, 2)
FRESH = 2.0
STALE = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@contextmanager
def counts_of(db: Database, table: str) -> Iterator[list[str]]:
    """The counts over `table` the database runs meanwhile."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if f"FROM {table}" in statement and "count(*)" in statement:
            seen.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)


def delivery_counts(db: Database) -> AbstractContextManager[list[str]]:
    return counts_of(db, "delivery")


def subscriber_counts(db: Database) -> AbstractContextManager[list[str]]:
    return counts_of(db, "subscriber")


async def _until(condition: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "it never happened"
        await asyncio.sleep(0.01)


async def test_watchers_share_one_count_and_see_changes_when_it_is_due(db: Database) -> None:
    await SubscriberStore(db).import_active([("telegram", str(1000 + n), ()) for n in range(3)])
    broadcasts = BroadcastStore(db)
    broadcast = (await broadcasts.start(DAY, ["telegram"])).broadcast
    clock = Clock()
    board = ProgressSnapshots(broadcasts, fresh_seconds=FRESH, stale_seconds=STALE, clock=clock)
    ledger = DeliveryLedger(db)
    try:
        with delivery_counts(db) as counts:
            watched = await asyncio.gather(*(board.progress(broadcast.id) for _ in range(10)))
            assert len(counts) == 1
            assert all(progress.counts == {"telegram": {"pending": 3}} for progress in watched)

            (claim,) = await ledger.claim("w", ["telegram"], 1, 30.0)
            await ledger.record("w", [Result(claim.id, DeliveryState.SENT, parts_done=1)], 30.0)
            clock.now += FRESH / 2  # fresh: nobody counts
            assert (await board.progress(broadcast.id)).counts == {"telegram": {"pending": 3}}
            assert len(counts) == 1

            clock.now += FRESH  # stale: shown at once, and one count starts for the next callers
            stale = await asyncio.gather(*(board.progress(broadcast.id) for _ in range(5)))
            assert all(progress.counts == {"telegram": {"pending": 3}} for progress in stale)
            await _until(lambda: len(counts) == 2)
            expected = {"telegram": {"pending": 2, "sent": 1}}
            for _ in range(1000):
                if (await board.progress(broadcast.id)).counts == expected:
                    break
                await asyncio.sleep(0.01)
            assert (await board.progress(broadcast.id)).counts == expected
            assert len(counts) == 2

            clock.now += STALE  # too old to show: the caller waits for a new count
            (claim,) = await ledger.claim("w", ["telegram"], 1, 30.0)
            assert (await board.progress(broadcast.id)).counts == {
                "telegram": {"pending": 1, "sending": 1, "sent": 1}
            }
            assert len(counts) == 3

            await ledger.record("w", [Result(claim.id, DeliveryState.SENT, parts_done=1)], 30.0)
            board.forget(broadcast.id)  # the state changed: the next caller sees it at once
            assert (await board.progress(broadcast.id)).counts == {"telegram": {"pending": 1, "sent": 2}}
            assert len(counts) == 4
    finally:
        await board.close()


async def test_a_failed_count_reaches_its_waiters_and_the_next_caller_tries_again() -> None:
    snapshots: Snapshots[str, int] = Snapshots(fresh_seconds=FRESH, stale_seconds=STALE, clock=Clock())
    calls = 0

    async def failing() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise ConnectionError("the database went away")

    async def working() -> int:
        nonlocal calls
        calls += 1
        return 7

    results = await asyncio.gather(*(snapshots.get("k", failing) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(result, ConnectionError) for result in results)
    assert calls == 1
    assert await snapshots.get("k", working) == 7
    assert calls == 2
    await snapshots.close()


async def test_a_background_count_that_fails_keeps_the_last_one_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    snapshots: Snapshots[str, int] = Snapshots(fresh_seconds=FRESH, stale_seconds=STALE, clock=clock)

    async def one() -> int:
        return 1

    async def failing() -> int:
        raise ConnectionError("the database went away")

    assert await snapshots.get("k", one) == 1
    clock.now += FRESH
    assert await snapshots.get("k", failing) == 1  # stale, shown; its refresh fails in the background
    await _until(lambda: "a shared count failed" in caplog.text)
    assert await snapshots.get("k", one) == 1  # still the last good count; a new one is under way
    await snapshots.close()


async def test_a_caller_that_goes_away_does_not_cancel_the_count_of_the_others() -> None:
    snapshots: Snapshots[str, int] = Snapshots(fresh_seconds=FRESH, stale_seconds=STALE, clock=Clock())
    release = asyncio.Event()

    async def slow() -> int:
        await release.wait()
        return 5

    leaving = asyncio.create_task(snapshots.get("k", slow))
    staying = asyncio.create_task(snapshots.get("k", slow))
    await asyncio.sleep(0.01)
    leaving.cancel()
    release.set()
    assert await staying == 5
    assert leaving.cancelled()
    await snapshots.close()


async def test_close_cancels_counts_in_flight_and_keys_are_bounded() -> None:
    clock = Clock()
    snapshots: Snapshots[int, int] = Snapshots(fresh_seconds=FRESH, stale_seconds=STALE, keys=2, clock=clock)
    started = asyncio.Event()

    async def forever() -> int:
        started.set()
        await asyncio.Event().wait()
        return 0

    waiting = asyncio.create_task(snapshots.get(0, forever))
    await started.wait()
    await snapshots.close()
    with pytest.raises(asyncio.CancelledError):
        await waiting

    made = 0

    async def count() -> int:
        nonlocal made
        made += 1
        return made

    for key in (1, 2, 3):  # the third key pushes out the least recently counted one
        clock.now += 0.1
        await snapshots.get(key, count)
    assert await snapshots.get(3, count) == 3
    assert await snapshots.get(2, count) == 2
    assert await snapshots.get(1, count) == 4  # forgotten: counted again
    await snapshots.close()


def test_fresh_must_not_outlast_stale() -> None:
    with pytest.raises(ValueError, match="fresh_seconds <= stale_seconds"):
        Snapshots[str, int](fresh_seconds=10, stale_seconds=1)


async def test_editors_share_the_audience_of_a_form(db: Database) -> None:
    await import_paths([DEMO_DIR / f"{DAY}.md"], IssueStore(db))
    subscribers = SubscriberStore(db)
    await subscribers.import_active([("telegram", str(1000 + n), ()) for n in range(3)])
    control = BroadcastControl(Settings(), db, channel_registry())
    clock = Clock()
    audiences = AudienceSnapshots(fresh_seconds=FRESH, stale_seconds=STALE, clock=clock)
    try:
        with subscriber_counts(db) as counts:
            forms = await asyncio.gather(*(audiences.audience(control, DAY, ["telegram"]) for _ in range(5)))
            assert forms == [{"telegram": {"pending": 3}}] * 5
            assert len(counts) == 1
            # Other options are another audience.
            await audiences.audience(control, DAY, ["telegram", "wechat"], wechat_text=True)
            assert len(counts) == 2
            await subscribers.subscribe("telegram", "2000")
            clock.now += STALE  # too old to show: counted again
            assert await audiences.audience(control, DAY, ["telegram"]) == {"telegram": {"pending": 4}}
            assert len(counts) == 3
    finally:
        await audiences.close()
