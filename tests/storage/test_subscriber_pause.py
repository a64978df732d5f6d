"""A reader's pause (subscriber.paused_issues, the email preference page): each broadcast that starts
skips them with PAUSED and counts their pause down in the same transaction, whatever their topics or
window; the preview counts them the same way without counting down; the bounds of a pause; and migration
0010 on both backends."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import pytest
from alembic import command
from sqlalchemy import select, text, update
from sqlalchemy.engine import Connection

from channels.channel import Window
from content.errors import BadInput
from storage.broadcasts import PAUSED, Audience, AudienceCount, BroadcastStore, DeliveryKind, DeliveryState
from storage.database import Database
from storage.deliveries import DeliveryLedger
from storage.migrate import alembic_config
from storage.subscribers import MAX_PAUSED_ISSUES, MAX_TOPICS, SubscriberStore
from storage.tables import SubscriberRow, core_table

T0 = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
DAYS = (dt.date(2020, 7, 2), dt.date(2020, 7, 16), dt.date(2020, 7, 30))
WINDOW = Window(since=T0 - dt.timedelta(hours=48), reason="outside the window")
OFF_TOPIC = "not about their topics"
# address -> (topics, paused issues)
EMAIL = {
    "two@example.com": (("量化",), 2),
    "one@example.com": (("区块链",), 1),  # off topic too: the pause is said first, and still counts
    "none@example.com": ((), 0),
    "chain@example.com": (("区块链",), 0),
}
# chat -> (paused issues, last seen): a window decides too, after the pause
WECHAT = {
    "oPauseTestOpenid0000001": (1, None),  # outside the window, paused: paused first
    "oPauseTestOpenid0000002": (0, None),
    "oPauseTestOpenid0000003": (0, T0),
    "oPauseTestOpenid0000004": (3, T0),
}
CHANNELS = ("email", "wechat")


def about_quantisation(topics: tuple[str, ...]) -> str | None:
    return None if not topics or "量化" in topics else OFF_TOPIC


RULE = Audience(windows={"wechat": WINDOW}, topics=about_quantisation)


def per_subscriber(_channel: str, _options: Mapping[str, Any]) -> tuple[bool, bool]:
    return True, False


async def _population(db: Database) -> SubscriberStore:
    store = SubscriberStore(db, clock=lambda: T0)
    rows: list[tuple[str, str, tuple[str, ...]]] = [
        ("email", address, topics) for address, (topics, _) in EMAIL.items()
    ]
    rows += [("wechat", openid, ()) for openid in WECHAT]
    await store.import_active(rows)
    for address, (topics, paused) in EMAIL.items():
        await store.set_preferences("email", address, topics=topics, paused_issues=paused)
    s = core_table(SubscriberRow)
    async with db.transaction("write") as connection:
        for openid, (paused, seen) in WECHAT.items():
            await connection.execute(
                update(s).where(s.c.address == openid).values(paused_issues=paused, last_seen_at=seen)
            )
    return store


async def _pauses(db: Database) -> dict[str, int]:
    s = core_table(SubscriberRow)
    async with db.transaction() as connection:
        rows = (await connection.execute(select(s.c.address, s.c.paused_issues))).all()
    return {row.address: row.paused_issues for row in rows}


def _tally(rows: list[dict[str, Any]]) -> dict[str, AudienceCount]:
    counts: dict[str, AudienceCount] = {}
    for row in rows:
        count = counts.setdefault(row["channel"], AudienceCount())
        assert row["kind"] == DeliveryKind.DIRECT.value
        if row["state"] == DeliveryState.PENDING.value:
            count.add(None, 1)
        else:
            assert row["state"] == DeliveryState.SKIPPED.value
            count.add(row["last_error"], 1)
    return counts


async def _broadcast(db: Database, day: dt.date) -> tuple[dict[str, AudienceCount], dict[str, AudienceCount]]:
    """(what the preview counted, what start wrote) for one issue."""
    broadcasts = BroadcastStore(db, clock=lambda: T0)
    counted = await broadcasts.count_audience(CHANNELS, audience=RULE, kinds=per_subscriber)
    report = await broadcasts.start(day, CHANNELS, audience=RULE, kinds=per_subscriber)
    return counted, _tally(await DeliveryLedger(db).deliveries(report.broadcast.id))


async def test_a_pause_skips_the_next_issues_and_counts_down(db: Database) -> None:
    await _population(db)

    first = await _broadcast(db, DAYS[0])
    assert (
        first[0]
        == first[1]
        == {
            "email": AudienceCount(pending=1, skipped={PAUSED: 2, OFF_TOPIC: 1}),
            "wechat": AudienceCount(pending=1, skipped={PAUSED: 2, WINDOW.reason: 1}),
        }
    )
    after_first = await _pauses(db)
    assert after_first == {
        "two@example.com": 1,
        "one@example.com": 0,
        "none@example.com": 0,
        "chain@example.com": 0,
        "oPauseTestOpenid0000001": 0,
        "oPauseTestOpenid0000002": 0,
        "oPauseTestOpenid0000003": 0,
        "oPauseTestOpenid0000004": 2,
    }

    second = await _broadcast(db, DAYS[1])
    assert (
        second[0]
        == second[1]
        == {
            # one@ is back, and now off topic like chain@.
            "email": AudienceCount(pending=1, skipped={PAUSED: 1, OFF_TOPIC: 2}),
            "wechat": AudienceCount(pending=1, skipped={PAUSED: 1, WINDOW.reason: 2}),
        }
    )
    assert (await _pauses(db))["two@example.com"] == 0
    assert (await _pauses(db))["oPauseTestOpenid0000004"] == 1

    third = await _broadcast(db, DAYS[2])
    assert third[1]["email"] == AudienceCount(pending=2, skipped={OFF_TOPIC: 2})


async def test_counting_and_starting_again_do_not_count_down(db: Database) -> None:
    await _population(db)
    broadcasts = BroadcastStore(db, clock=lambda: T0)
    before = await _pauses(db)

    await broadcasts.preview(CHANNELS, audience=RULE, kinds=per_subscriber)
    await broadcasts.count_audience(CHANNELS, audience=RULE, kinds=per_subscriber)
    assert await _pauses(db) == before

    await broadcasts.start(DAYS[0], ["email"], audience=RULE, kinds=per_subscriber)
    once = await _pauses(db)
    assert once["two@example.com"] == 1
    # The same issue again (here with a channel added): those who have their row are not counted again.
    again = await broadcasts.start(DAYS[0], CHANNELS, audience=RULE, kinds=per_subscriber)
    assert (again.pending, again.skipped) == (1, 3)  # only WeChat's rows are new
    after = await _pauses(db)
    assert after["two@example.com"] == 1
    assert after["oPauseTestOpenid0000004"] == 2


async def test_a_reader_who_resumes_gets_the_next_issue(db: Database) -> None:
    store = await _population(db)

    resumed = await store.set_preferences("email", "two@example.com", topics=("量化",), paused_issues=0)

    assert resumed is not None
    assert resumed.paused_issues == 0
    counted, written = await _broadcast(db, DAYS[0])
    assert counted == written
    assert written["email"] == AudienceCount(pending=2, skipped={PAUSED: 1, OFF_TOPIC: 1})


@pytest.mark.parametrize("pause", [-1, MAX_PAUSED_ISSUES + 1, 10**9, True])
async def test_a_pause_out_of_bounds_stores_nothing(db: Database, pause: int) -> None:
    store = await _population(db)

    with pytest.raises(BadInput, match=f"a pause is 0 to {MAX_PAUSED_ISSUES} issues"):
        await store.set_preferences("email", "none@example.com", topics=("剪枝",), paused_issues=pause)

    row = await store.get("email", "none@example.com")
    assert row is not None
    assert (row.topics, row.paused_issues) == ((), 0)


async def test_topics_over_the_cap_store_no_pause_either(db: Database) -> None:
    store = await _population(db)
    topics = [f"t{n}" for n in range(MAX_TOPICS + 1)]

    with pytest.raises(BadInput, match=f"at most {MAX_TOPICS} topics"):
        await store.set_preferences("email", "none@example.com", topics=topics, paused_issues=3)

    row = await store.get("email", "none@example.com")
    assert row is not None
    assert (row.topics, row.paused_issues) == ((), 0)
    assert await store.set_preferences("email", "nobody@example.com", topics=()) is None


async def test_migration_0010_adds_the_pause_to_existing_subscribers(db: Database) -> None:
    def to_0009(connection: Connection) -> None:
        command.downgrade(alembic_config(connection), "0009")

    async with db.engine.connect() as connection:
        await connection.run_sync(to_0009)
    async with db.engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO subscriber (channel, address, address_key, status, topics, created_at, bounces) "
                "VALUES ('email', 'old@example.com', 'old@example.com', 'active', '[]', :at, 0)"
            ),
            {"at": T0},
        )

    await db.migrate()

    row = await SubscriberStore(db).get("email", "old@example.com")
    assert row is not None
    assert row.paused_issues == 0
