"""The subscriber desk's storage: search by address, channel, status and topic in keyset pages, a
subscriber's history, and erasure, checked against a dump of the whole database (SQLite's iterdump,
PostgreSQL's pg_dump of the test schema): the erased address is nowhere, another subscriber's still is."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3

import pytest
from sqlalchemy import insert, text

from channels.registry import channel_registry
from content.errors import BadInput
from storage.audit import AuditTrail, subscriber_subject
from storage.database import Database
from storage.subscribers import ERASED, SubscriberStatus, SubscriberStore
from storage.tables import BroadcastRow, DeliveryRow, core_table
from tests.conftest import postgres_url

T0 = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
GONE = "Erase.Me@Example.com"
GONE_KEY = "erase.me@example.com"
KEPT = "keep.me@example.com"
CHAT = "424242"


@pytest.fixture
def subscribers(db: Database) -> SubscriberStore:
    return SubscriberStore(db, keys=channel_registry().address_key, clock=lambda: T0)


async def _dump(db: Database) -> str:
    """Every row of every table as the backend's own dump tool writes it."""
    if db.backend == "sqlite":
        path = db.engine.url.database
        assert path
        dumper = sqlite3.connect(path)
        try:
            return "\n".join(dumper.iterdump())
        finally:
            dumper.close()
    async with db.transaction() as connection:
        schema = (await connection.execute(text("SELECT current_schema()"))).scalar_one()
    process = await asyncio.create_subprocess_exec(
        "pg_dump", "--data-only", f"--schema={schema}", postgres_url(), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    assert process.returncode == 0
    dumped = out.decode()
    assert "COPY" in dumped  # the dump holds rows: an empty one would prove nothing
    return dumped


async def _broadcast(db: Database, deliveries: list[tuple[int | None, str, str | None]]) -> int:
    """A broadcast with (subscriber id, kind, last_error) deliveries, as a worker leaves them."""
    b, d = core_table(BroadcastRow), core_table(DeliveryRow)
    async with db.transaction("write") as connection:
        result = await connection.execute(
            insert(b).values(
                issue_date=dt.date(2020, 7, 2),
                channels=["email"],
                state="done",
                options={},
                start_at=T0,
                created_at=T0,
                updated_at=T0,
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        broadcast_id = int(key[0])
        for subscriber_id, kind, error in deliveries:
            await connection.execute(
                insert(d).values(
                    broadcast_id=broadcast_id,
                    subscriber_id=subscriber_id,
                    channel="email",
                    kind=kind,
                    state="failed" if error else "sent",
                    next_attempt_at=T0,
                    last_error=error,
                    sent_at=None if error else T0,
                )
            )
    return broadcast_id


async def test_erasing_leaves_no_trace_of_the_address_in_any_table(
    db: Database, subscribers: SubscriberStore
) -> None:
    gone, _ = await subscribers.subscribe("email", GONE, topics=["量化"])
    kept, _ = await subscribers.subscribe("email", KEPT)
    chat, _ = await subscribers.subscribe("telegram", CHAT)
    await _broadcast(
        db,
        [
            (gone.id, "direct", f"550 5.1.1 <{GONE}>: user unknown"),
            (kept.id, "direct", f"550 5.1.1 <{KEPT}>: mailbox full"),
            (None, "mass", f"the relay refused {GONE_KEY.upper()}"),
        ],
    )
    trail = AuditTrail(db)
    await trail.record("li", "test_send", "issue 2020-07-02", f"email → {GONE_KEY}")
    await trail.record("li", "test_send", "issue 2020-07-02", f"email → {KEPT}")
    await trail.record("li", "test_send", "issue 2020-07-02", f"telegram → {CHAT}")
    await trail.record("li", "note", "broadcast 14242420", f"id 14242420, not {CHAT}0")
    before = await _dump(db)
    assert GONE_KEY in before.lower()
    assert CHAT in before

    assert await subscribers.erase("email", "ERASE.me@example.com", actor="cli")
    assert await subscribers.erase_id(chat.id, actor="li")

    after = await _dump(db)
    assert GONE_KEY not in after.lower()
    assert f"→ {CHAT}" not in after
    assert "user unknown" not in after
    assert "mailbox full" in after
    assert KEPT in after
    assert "14242420" in after
    assert f"not {CHAT}0" in after
    assert ERASED in after
    assert await subscribers.get("email", GONE) is None
    assert await subscribers.get_by_id(kept.id) is not None
    entries = await trail.recent()
    assert [(e.actor, e.action, e.subject, e.detail) for e in entries[:2]] == [
        ("li", "erase", subscriber_subject(chat.id), "telegram"),
        ("cli", "erase", subscriber_subject(gone.id), "email"),
    ]
    # The deliveries went with the row (the foreign key cascades); the others stay.
    history = await subscribers.history(kept.id)
    assert history is not None
    assert len(history.deliveries) == 1
    async with db.transaction() as connection:
        count = (await connection.execute(text("SELECT count(*) FROM delivery"))).scalar_one()
    assert count == 2


async def test_erasing_nobody_changes_nothing(db: Database, subscribers: SubscriberStore) -> None:
    await subscribers.subscribe("email", KEPT)
    assert not await subscribers.erase("email", GONE, actor="cli")
    assert not await subscribers.erase_id(999, actor="cli")
    assert await AuditTrail(db).recent() == []
    with pytest.raises(BadInput):
        await subscribers.erase("email", "", actor="cli")


async def test_history_lists_deliveries_newest_first(db: Database, subscribers: SubscriberStore) -> None:
    row, _ = await subscribers.subscribe("email", GONE)
    first = await _broadcast(db, [(row.id, "direct", None)])
    b = core_table(BroadcastRow)
    async with db.transaction("write") as connection:  # a second issue's broadcast
        await connection.execute(b.update().where(b.c.id == first).values(issue_date=dt.date(2020, 6, 17)))
    second = await _broadcast(db, [(row.id, "direct", "timeout")])

    history = await subscribers.history(row.id)

    assert history is not None
    assert history.subscriber.address == GONE
    assert history.bounces == 0
    assert [(d.broadcast_id, d.issue_date, d.state, d.last_error) for d in history.deliveries] == [
        (second, dt.date(2020, 7, 2), "failed", "timeout"),
        (first, dt.date(2020, 6, 17), "sent", None),
    ]
    assert history.deliveries[1].sent_at == T0
    assert len((await subscribers.history(row.id, limit=1) or history).deliveries) == 1
    assert await subscribers.history(row.id + 100) is None


async def test_search_filters_and_pages_by_id(subscribers: SubscriberStore) -> None:
    for number in range(5):
        await subscribers.subscribe(
            "email", f"Reader{number}@example.com", topics=["量化"] if number % 2 else []
        )
    await subscribers.subscribe("email", "other@example.org", topics=["量化", "NPU"])
    await subscribers.subscribe("telegram", "100001")
    await subscribers.set_status("email", "reader4@example.com", SubscriberStatus.UNSUBSCRIBED)

    first = await subscribers.search("READER", limit=2)
    assert [row.address for row in first.subscribers] == ["Reader0@example.com", "Reader1@example.com"]
    assert first.next_after_id == first.subscribers[-1].id
    rest = await subscribers.search("reader", after_id=first.next_after_id, limit=3)
    assert [row.address for row in rest.subscribers][-1] == "Reader4@example.com"
    assert rest.next_after_id is None

    assert (await subscribers.search("example.com")).subscribers == ()  # a prefix, not anywhere
    assert len((await subscribers.search("example.com", contains=True)).subscribers) == 5
    assert len((await subscribers.search("", channel="telegram")).subscribers) == 1
    topical = await subscribers.search("", topic="量化")
    assert [row.address for row in topical.subscribers] == [
        "Reader1@example.com",
        "Reader3@example.com",
        "other@example.org",
    ]
    left = await subscribers.search("r", status=SubscriberStatus.UNSUBSCRIBED)
    assert [row.address for row in left.subscribers] == ["Reader4@example.com"]
    assert (await subscribers.search("100%")).subscribers == ()  # % is a character, not a wildcard
    with pytest.raises(BadInput):
        await subscribers.search("", limit=0)
