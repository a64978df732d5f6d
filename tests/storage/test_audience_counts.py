"""Counting an audience in SQL (BroadcastStore.count_audience, preview) gives exactly the rows that `start`
then writes, subscriber by subscriber: topics, a channel's last-seen window at its very edges, inactive
subscribers, topics stored in another JSON spelling, on both backends."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import text, update

from channels.channel import Window
from channels.registry import channel_registry
from storage.broadcasts import Audience, AudienceCount, BroadcastStore, DeliveryKind, DeliveryState
from storage.database import Database
from storage.deliveries import DeliveryLedger
from storage.subscribers import SubscriberStatus, SubscriberStore
from storage.tables import SubscriberRow, core_table

T0 = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
DAY = dt.date(2020, 7, 2)
CHANNELS = ("telegram", "email", "wechat")
WINDOW = Window(since=T0 - dt.timedelta(hours=48), reason="outside the window")
OFF_TOPIC = "not about their topics"
MICROSECOND = dt.timedelta(microseconds=1)
REGISTRY = channel_registry()


def channel_kinds(channel: str, options: Mapping[str, Any]) -> tuple[bool, bool]:
    plan = REGISTRY.get(channel).plan(options)
    return plan.direct, plan.mass


def about_quantisation(topics: tuple[str, ...]) -> str | None:
    return None if not topics or "量化" in topics else OFF_TOPIC


def openid(n: int) -> str:
    return f"oAudienceCountsOpenid{n:07d}"


# wechat followers: (topics, last seen)
FOLLOWERS: list[tuple[tuple[str, ...], dt.datetime | None]] = [
    ((), None),  # never wrote: outside
    ((), WINDOW.since),  # exactly at the cutoff: inside
    ((), WINDOW.since - MICROSECOND),  # just before it: outside
    ((), WINDOW.since + MICROSECOND),
    ((), T0 - dt.timedelta(hours=1)),
    ((), T0 - dt.timedelta(days=30)),
    (("区块链",), T0 - dt.timedelta(hours=1)),  # inside, but off topic
    (("区块链",), None),  # outside: the window's reason comes first
    (("量化",), T0 - dt.timedelta(hours=2)),
]


async def _population(db: Database) -> SubscriberStore:
    store = SubscriberStore(db, clock=lambda: T0)
    rows: list[tuple[str, str, tuple[str, ...]]] = []
    rows += [("telegram", str(1000 + n), ()) for n in range(6)]
    rows += [("telegram", str(2000 + n), ("量化",)) for n in range(4)]
    rows += [("telegram", str(3000 + n), ("区块链",)) for n in range(3)]
    rows += [("telegram", str(4000 + n), ("区块链", "量化")) for n in range(2)]
    rows += [("email", f"reader{n}@example.com", ()) for n in range(3)]
    rows += [("email", f"chain{n}@example.com", ("区块链",)) for n in range(2)]
    rows += [("wechat", openid(n), topics) for n, (topics, _seen) in enumerate(FOLLOWERS)]
    await store.import_active(rows)
    # Not active: nobody counts them, nobody writes a row for them.
    await store.unsubscribe("telegram", "1000")
    await store.set_status("telegram", "2000", SubscriberStatus.BLOCKED)
    await store.set_status("email", "chain0@example.com", SubscriberStatus.BOUNCED)
    await store.subscribe("email", "waiting@example.com", confirmed=False)  # until confirmed
    s = core_table(SubscriberRow)
    async with db.transaction("write") as connection:
        for n, (_topics, seen) in enumerate(FOLLOWERS):
            await connection.execute(update(s).where(s.c.address == openid(n)).values(last_seen_at=seen))
        # The same topics in another JSON spelling (as another tool might have written them): a group of
        # its own in SQL, the same decision.
        await connection.execute(
            text("UPDATE subscriber SET topics = :topics WHERE address = '4000'"),
            {"topics": '[ "\\u533a\\u5757\\u94fe" ,"量化"]'},
        )
    return store


def _tally(rows: list[dict[str, Any]]) -> dict[str, AudienceCount]:
    """What `start` wrote, counted as count_audience counts."""
    counts: dict[str, AudienceCount] = {}
    for row in rows:
        count = counts.setdefault(row["channel"], AudienceCount())
        if row["kind"] == DeliveryKind.MASS.value:
            count.mass = True
        elif row["state"] == DeliveryState.PENDING.value:
            count.add(None, 1)
        else:
            assert row["state"] == DeliveryState.SKIPPED.value
            count.add(row["last_error"], 1)
    return counts


async def test_the_counts_are_what_start_writes(db: Database) -> None:
    await _population(db)
    rule = Audience(windows={"wechat": WINDOW}, topics=about_quantisation)
    broadcasts = BroadcastStore(db, clock=lambda: T0)
    options = {"wechat_text": True}
    counts = await broadcasts.count_audience(CHANNELS, audience=rule, kinds=channel_kinds, options=options)
    preview = await broadcasts.preview(CHANNELS, audience=rule, kinds=channel_kinds, options=options)
    report = await broadcasts.start(DAY, CHANNELS, audience=rule, kinds=channel_kinds, options=options)
    written = _tally(await DeliveryLedger(db).deliveries(report.broadcast.id))
    assert counts == written
    assert counts == {
        # 1000 left, 2000 blocked; 3000-3002 off topic; 4000-4001 have 量化 among theirs.
        "telegram": AudienceCount(pending=5 + 3 + 2, skipped={OFF_TOPIC: 3}),
        "email": AudienceCount(pending=3, skipped={OFF_TOPIC: 1}),
        # Inside and on topic: at the cutoff, a microsecond after, 1 h ago, and the one about 量化.
        "wechat": AudienceCount(mass=True, pending=4, skipped={WINDOW.reason: 4, OFF_TOPIC: 1}),
    }
    assert preview == {
        "telegram": {"pending": 10, "skipped": 3},
        "email": {"pending": 3, "skipped": 1},
        "wechat": {"mass": 1, "pending": 4, "skipped": 5},
    }
    assert (report.pending, report.skipped) == (10 + 3 + 4 + 1, 3 + 1 + 5)  # the MASS row is pending


async def test_without_topics_or_windows_everyone_active_counts(db: Database) -> None:
    await _population(db)
    broadcasts = BroadcastStore(db, clock=lambda: T0)
    preview = await broadcasts.preview(CHANNELS, kinds=channel_kinds)
    # WeChat without texts is its one mass send: no follower is counted, none gets a row.
    assert preview == {"telegram": {"pending": 13}, "email": {"pending": 4}, "wechat": {"mass": 1}}
    report = await broadcasts.start(DAY, CHANNELS, kinds=channel_kinds)
    assert _tally(await DeliveryLedger(db).deliveries(report.broadcast.id)) == {
        "telegram": AudienceCount(pending=13),
        "email": AudienceCount(pending=4),
        "wechat": AudienceCount(mass=True),
    }


async def test_a_cutoff_in_another_zone_is_the_same_moment(db: Database) -> None:
    # SQLite keeps times as UTC text: a cutoff given at +08:00 must be compared as the UTC moment it is.
    await _population(db)
    beijing = dt.timezone(dt.timedelta(hours=8))
    window = Window(since=WINDOW.since.astimezone(beijing), reason=WINDOW.reason)
    broadcasts = BroadcastStore(db, clock=lambda: T0)
    counts = await broadcasts.count_audience(
        ["wechat"], audience=Audience(windows={"wechat": window}), kinds=lambda _c, _o: (True, False)
    )
    assert counts == {"wechat": AudienceCount(pending=5, skipped={WINDOW.reason: 4})}


async def test_a_channel_without_subscribers_is_left_out_of_the_preview(db: Database) -> None:
    broadcasts = BroadcastStore(db, clock=lambda: T0)
    preview = await broadcasts.preview(["telegram", "wechat"], kinds=channel_kinds)
    assert preview == {"wechat": {"mass": 1}}
    counts = await broadcasts.count_audience(["telegram"])
    assert counts == {"telegram": AudienceCount()}
