"""The broadcast ledger on both backends: starting, claiming, recording, leases, pause/cancel, rates."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Mapping
from typing import Any

import pytest

from channels.registry import channel_registry
from content.errors import BadInput, Conflict, NotFound
from storage.broadcasts import Audience, BroadcastState, BroadcastStore, DeliveryKind, DeliveryState
from storage.database import Database
from storage.deliveries import DeliveryLedger, Result
from storage.ratelimit import LocalRate, SharedRate
from storage.subscribers import SubscriberStatus, SubscriberStore

T0 = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
DAY = dt.date(2020, 7, 2)
# Which rows a channel gets is the application's rule, from the channels (WeChat: one MASS row, and a
# row per follower with wechat_text): storage only writes them.
REGISTRY = channel_registry()


def channel_kinds(channel: str, options: Mapping[str, Any]) -> tuple[bool, bool]:
    plan = REGISTRY.get(channel).plan(options)
    return plan.direct, plan.mass


OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
LEASE = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def _people(db: Database, clock: Clock, telegram: int = 3, email: int = 2) -> SubscriberStore:
    store = SubscriberStore(db, clock=clock)
    rows = [("telegram", str(1000 + n), ()) for n in range(telegram)]
    rows += [("email", f"reader{n}@example.com", ("量化",) if n % 2 else ()) for n in range(email)]
    rows.append(("wechat", OPENID, ()))
    await store.import_active(rows)
    return store


async def test_start_creates_one_row_per_active_subscriber_and_is_idempotent(
    db: Database, clock: Clock
) -> None:
    store = await _people(db, clock)
    await store.unsubscribe("telegram", "1002")
    broadcasts = BroadcastStore(db, clock=clock)
    report = await broadcasts.start(DAY, ["telegram", "email", "wechat"], kinds=channel_kinds)
    assert report.created
    assert report.pending == 2 + 2 + 1
    assert report.skipped == 0
    assert report.broadcast.state == BroadcastState.RUNNING
    assert report.broadcast.start_at == T0
    rows = await DeliveryLedger(db, clock=clock).deliveries(report.broadcast.id)
    kinds = sorted((row["channel"], row["kind"]) for row in rows)
    assert kinds == [
        ("email", "direct"),
        ("email", "direct"),
        ("telegram", "direct"),
        ("telegram", "direct"),
        ("wechat", "mass"),
    ]
    again = await broadcasts.start(DAY, ["telegram", "email", "wechat"], kinds=channel_kinds)
    assert not again.created
    assert again.pending == 0
    assert again.broadcast.id == report.broadcast.id
    assert len(await DeliveryLedger(db, clock=clock).deliveries(report.broadcast.id)) == 5
    await store.subscribe("telegram", "2000")
    later = await broadcasts.start(DAY, ["telegram"])
    assert later.pending == 1
    assert later.broadcast.channels == ("telegram", "email", "wechat")


async def test_audience_rule_skips_with_its_reason_and_wechat_text_adds_followers(
    db: Database, clock: Clock
) -> None:
    await _people(db, clock)

    only_without_topics = Audience(topics=lambda topics: "topics do not match" if topics else None)

    broadcasts = BroadcastStore(db, clock=clock)
    preview = await broadcasts.preview(
        ["email", "wechat"], audience=only_without_topics, kinds=channel_kinds, options={"wechat_text": True}
    )
    assert preview == {"email": {"pending": 1, "skipped": 1}, "wechat": {"mass": 1, "pending": 1}}
    report = await broadcasts.start(
        DAY,
        ["email", "wechat"],
        audience=only_without_topics,
        kinds=channel_kinds,
        options={"wechat_text": True},
    )
    assert (report.pending, report.skipped) == (3, 1)
    rows = await DeliveryLedger(db, clock=clock).deliveries(report.broadcast.id)
    skipped = [row for row in rows if row["state"] == "skipped"]
    assert [(row["channel"], row["last_error"]) for row in skipped] == [("email", "topics do not match")]
    assert sum(row["kind"] == "mass" for row in rows) == 1


async def test_bad_channels_are_refused(db: Database) -> None:
    broadcasts = BroadcastStore(db)
    with pytest.raises(BadInput, match="not a channel name: 'no such name'"):
        await broadcasts.start(DAY, ["no such name"])
    with pytest.raises(BadInput, match="at least one channel"):
        await broadcasts.start(DAY, [])
    with pytest.raises(NotFound):
        await broadcasts.for_issue(DAY)


async def test_claim_record_and_subscriber_effects(db: Database, clock: Clock) -> None:
    store = await _people(db, clock, telegram=3, email=2)
    broadcasts = BroadcastStore(db, clock=clock)
    broadcast = (await broadcasts.start(DAY, ["telegram", "email"])).broadcast
    ledger = DeliveryLedger(db, clock=clock, bounce_limit=2)
    claims = await ledger.claim("w1", ["telegram"], 10, LEASE)
    assert [claim.address for claim in claims] == ["1000", "1001", "1002"]
    assert all(claim.issue_date == DAY and claim.attempts == 1 for claim in claims)
    assert await ledger.claim("w2", ["telegram"], 10, LEASE) == []
    first, second, third = claims
    await ledger.record(
        "w1",
        [
            Result(first.id, DeliveryState.SENDING, parts_done=1, message_id="7"),
            Result(first.id, DeliveryState.SENT, parts_done=2, message_id="7,8"),
            Result(
                second.id,
                DeliveryState.FAILED,
                parts_done=0,
                error="blocked",
                subscriber_id=second.subscriber_id,
                subscriber=SubscriberStatus.BLOCKED,
            ),
            Result(third.id, DeliveryState.PENDING, parts_done=1, retry_at=T0 + dt.timedelta(seconds=5)),
        ],
        LEASE,
    )
    blocked = await store.get("telegram", "1001")
    assert blocked is not None
    assert blocked.status == SubscriberStatus.BLOCKED
    assert await ledger.claim("w1", ["telegram"], 10, LEASE) == []  # the retry is not due yet
    clock.advance(seconds=5)
    (retry,) = await ledger.claim("w2", ["telegram"], 10, LEASE)
    assert (retry.id, retry.parts_done, retry.attempts) == (third.id, 1, 2)
    # A stale worker cannot overwrite the new owner's row.
    await ledger.record("w1", [Result(third.id, DeliveryState.FAILED, parts_done=0, error="stale")], LEASE)
    rows = {row["id"]: row for row in await ledger.deliveries(broadcast.id)}
    assert rows[third.id]["state"] == "sending"
    assert rows[third.id]["worker"] == "w2"
    assert rows[first.id]["state"] == "sent"
    assert rows[first.id]["message_id"] == "7,8"
    assert rows[first.id]["sent_at"] == T0

    # Bounces: counted, and BOUNCED at the limit (2).
    emails = await ledger.claim("w1", ["email"], 10, LEASE)
    bounce = [
        Result(
            c.id,
            DeliveryState.FAILED,
            0,
            error="550",
            subscriber_id=c.subscriber_id,
            subscriber=SubscriberStatus.BOUNCED,
        )
        for c in emails
    ]
    await ledger.record("w1", bounce, LEASE)
    once = await store.get("email", "reader0@example.com")
    assert once is not None
    assert once.status == SubscriberStatus.ACTIVE
    other = (await broadcasts.start(dt.date(2020, 7, 18), ["email"])).broadcast
    emails = await ledger.claim("w1", ["email"], 10, LEASE)
    assert {claim.broadcast_id for claim in emails} == {other.id}
    bounce = [
        Result(
            c.id,
            DeliveryState.FAILED,
            0,
            error="550",
            subscriber_id=c.subscriber_id,
            subscriber=SubscriberStatus.BOUNCED,
        )
        for c in emails
    ]
    await ledger.record("w1", bounce, LEASE)
    twice = await store.get("email", "reader0@example.com")
    assert twice is not None
    assert twice.status == SubscriberStatus.BOUNCED


async def test_expired_leases_are_reclaimed_and_resume_from_their_part(db: Database, clock: Clock) -> None:
    await _people(db, clock, telegram=2, email=0)
    broadcast = (await BroadcastStore(db, clock=clock).start(DAY, ["telegram"])).broadcast
    ledger = DeliveryLedger(db, clock=clock)
    claims = await ledger.claim("dead", ["telegram"], 10, LEASE)
    await ledger.record(
        "dead", [Result(claims[0].id, DeliveryState.SENDING, parts_done=2, message_id="1,2")], LEASE
    )
    clock.advance(seconds=LEASE - 1)
    assert await ledger.reclaim_expired() == 0
    await ledger.renew("dead", [claims[1].id], LEASE)
    clock.advance(seconds=2)
    assert await ledger.reclaim_expired() == 1  # the first: its lease was renewed by the progress only
    (taken,) = await ledger.claim("alive", ["telegram"], 10, LEASE)
    assert (taken.id, taken.parts_done, taken.message_id, taken.attempts) == (claims[0].id, 2, "1,2", 2)
    await ledger.release("alive", [taken.id])
    rows = {row["id"]: row for row in await ledger.deliveries(broadcast.id)}
    assert rows[taken.id]["state"] == "pending"
    assert rows[taken.id]["attempts"] == 1


async def test_pause_resume_cancel_and_finish(db: Database, clock: Clock) -> None:
    await _people(db, clock, telegram=3, email=0)
    broadcasts = BroadcastStore(db, clock=clock)
    broadcast = (await broadcasts.start(DAY, ["telegram"])).broadcast
    ledger = DeliveryLedger(db, clock=clock)
    (claim,) = await ledger.claim("w", ["telegram"], 1, LEASE)
    assert (await broadcasts.pause(broadcast.id)).state == BroadcastState.PAUSED
    assert await ledger.claim("w", ["telegram"], 10, LEASE) == []
    assert (await broadcasts.resume(broadcast.id)).state == BroadcastState.RUNNING
    assert (await broadcasts.resume(broadcast.id)).state == BroadcastState.RUNNING  # again: a no-op
    assert (await broadcasts.cancel(broadcast.id)).state == BroadcastState.CANCELLED
    await ledger.record("w", [Result(claim.id, DeliveryState.SENT, parts_done=1)], LEASE)
    progress = await broadcasts.progress(broadcast.id)
    assert progress.counts == {"telegram": {"sent": 1, "skipped": 2}}
    assert progress.unfinished == 0
    assert progress.sent_last_minute == 1
    with pytest.raises(Conflict, match="cancelled"):
        await broadcasts.start(DAY, ["telegram"])
    with pytest.raises(Conflict, match="is cancelled; it cannot be running"):
        await broadcasts.resume(broadcast.id)


async def test_a_broadcast_finishes_when_nothing_is_left_and_future_ones_wait(
    db: Database, clock: Clock
) -> None:
    await _people(db, clock, telegram=1, email=0)
    broadcasts = BroadcastStore(db, clock=clock)
    later = T0 + dt.timedelta(hours=2)
    broadcast = (await broadcasts.start(DAY, ["telegram"], start_at=later)).broadcast
    ledger = DeliveryLedger(db, clock=clock)
    assert await ledger.claim("w", ["telegram"], 10, LEASE) == []
    assert not await broadcasts.finish_if_done(broadcast.id)
    clock.advance(hours=2)
    (claim,) = await ledger.claim("w", ["telegram"], 10, LEASE)
    assert not await broadcasts.finish_if_done(broadcast.id)
    await ledger.record("w", [Result(claim.id, DeliveryState.SENT, parts_done=1, uncertain=True)], LEASE)
    assert await broadcasts.finish_if_done(broadcast.id)
    done = await broadcasts.get(broadcast.id)
    assert done.state == BroadcastState.DONE
    assert done.finished_at == clock.now
    assert (await broadcasts.progress(broadcast.id)).uncertain == 1


@pytest.mark.postgres
async def test_concurrent_claims_on_postgres_are_disjoint(tmp_path: object) -> None:
    from tests.conftest import fresh_database

    async with fresh_database("postgres", tmp_path) as db:  # type: ignore[arg-type]
        await db.migrate()
        store = SubscriberStore(db)
        await store.import_active([("telegram", str(10_000 + n), ()) for n in range(600)])
        await BroadcastStore(db).start(DAY, ["telegram"])
        ledgers = [DeliveryLedger(db) for _ in range(4)]

        async def drain(name: str, ledger: DeliveryLedger) -> list[int]:
            taken: list[int] = []
            while claims := await ledger.claim(name, ["telegram"], 25, LEASE):
                taken += [claim.id for claim in claims]
            return taken

        results = await asyncio.gather(*(drain(f"w{n}", ledger) for n, ledger in enumerate(ledgers)))
        every = [delivery for taken in results for delivery in taken]
        assert len(every) == 600
        assert len(set(every)) == 600
        assert sum(bool(taken) for taken in results) >= 2


@pytest.mark.postgres
async def test_shared_rate_spaces_sends_across_limiters(tmp_path: object) -> None:
    from tests.conftest import fresh_database

    async with fresh_database("postgres", tmp_path) as db:  # type: ignore[arg-type]
        await db.migrate()
        rates = [SharedRate(db, "test", per_second=100) for _ in range(3)]
        times: list[float] = []

        async def send(rate: SharedRate, count: int) -> None:
            for _ in range(count):
                await rate.acquire()
                times.append(time.monotonic())

        start = time.monotonic()
        await asyncio.gather(*(send(rate, 20) for rate in rates))
        # 60 evenly spaced slots at 100/s: the last one is 0.59 s after the first.
        assert time.monotonic() - start >= 0.58
        times.sort()
        assert all(times[n + 10] - times[n] >= 0.09 for n in range(len(times) - 10))
        await rates[0].hold(0.3)
        before = time.monotonic()
        await rates[1].acquire()
        assert time.monotonic() - before >= 0.25


def test_shared_rate_refuses_sqlite(tmp_path: object) -> None:
    with pytest.raises(ValueError, match="PostgreSQL"):
        SharedRate(Database("sqlite:///x.db"), "x", 1)


async def test_local_rate_spaces_and_holds() -> None:
    rate = LocalRate(per_second=200)
    start = time.monotonic()
    for _ in range(21):
        await rate.acquire()
    assert time.monotonic() - start >= 0.095
    await rate.hold(0.2)
    before = time.monotonic()
    await rate.acquire()
    assert time.monotonic() - before >= 0.19


def test_kinds_are_stable_values() -> None:
    # Stored in the database: renaming one would orphan existing rows.
    assert [kind.value for kind in DeliveryKind] == ["direct", "mass"]
    assert [state.value for state in DeliveryState] == ["pending", "sending", "sent", "failed", "skipped"]


async def test_progress_counts_states_uncertain_rows_and_the_last_minute_in_one_scan(
    db: Database, clock: Clock
) -> None:
    await _people(db, clock, telegram=4, email=0)
    broadcasts = BroadcastStore(db, clock=clock)
    broadcast = (await broadcasts.start(DAY, ["telegram", "wechat"], kinds=channel_kinds)).broadcast
    ledger = DeliveryLedger(db, clock=clock)
    first, second, third, _still_sending = await ledger.claim("w", ["telegram"], 10, LEASE)
    old = [Result(first.id, DeliveryState.SENT, parts_done=1, uncertain=True)]
    await ledger.record("w", old, LEASE)
    clock.advance(seconds=61)  # that send is out of the rate's minute now; the uncertainty stays
    await ledger.record(
        "w",
        [
            Result(second.id, DeliveryState.SENT, parts_done=1),
            Result(third.id, DeliveryState.FAILED, parts_done=0, error="refused", uncertain=True),
        ],
        LEASE,
    )
    progress = await broadcasts.progress(broadcast.id)
    assert progress.counts == {
        "telegram": {"sent": 2, "failed": 1, "sending": 1},
        "wechat": {"pending": 1},
    }
    assert (progress.uncertain, progress.sent_last_minute) == (2, 1)
