"""A broadcast's figures: `jianbao broadcast stats` and GET /api/broadcasts/{id}/stats after a broadcast
through the fake Bot API and SMTP server where some chats are blocked and some mailboxes do not exist, on
SQLite and PostgreSQL; the tally kept once a broadcast is finished, and read instead of the deliveries
after that; unsubscribes attributed within ATTRIBUTION_DAYS of the start and not after."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from alembic import command
from sqlalchemy import select, text, update
from sqlalchemy.engine import Connection

from bot.app import create_app
from bot.settings import Settings
from storage.broadcast_stats import ATTRIBUTION, BroadcastStats, ChannelTally
from storage.broadcasts import BroadcastState, BroadcastStore, DeliveryState
from storage.database import Database
from storage.deliveries import DeliveryLedger, DeliveryOutcome, Result
from storage.issues import IssueStore
from storage.migrate import alembic_config
from storage.subscribers import SubscriberStatus, SubscriberStore
from storage.tables import BroadcastTallyRow, DeliveryRow, LinkRow, SubscriberRow, core_table
from tests.bot.broadcast.conftest import DAY, chat_ids, emails
from tests.bot.helpers import CliResult, run_cli
from tests.fakes.smtp import FakeSmtp, running_fake_smtp
from tests.fakes.telegram_api import TOKEN, FakeTelegram, running_fake_telegram

ADMIN = "an-admin-token-for-the-broadcast-stats-tests"
PUBLIC_URL = "https://jianbao.example.com"
ZERO = {"failed": 0, "blocked": 0, "bounced": 0, "skipped": 0, "uncertain": 0}


@dataclass
class Setup:
    url: str
    folder: Path
    telegram: FakeTelegram
    smtp: FakeSmtp

    async def __call__(self, *args: str) -> CliResult:
        # In a thread: the fakes answer from this test's event loop meanwhile.
        return await asyncio.to_thread(run_cli, *args, database_url=self.url, cwd=self.folder)


@pytest.fixture
async def setup(cli_database_url: str, tmp_path: Path) -> AsyncIterator[Setup]:
    with running_fake_smtp() as smtp:
        async with running_fake_telegram() as telegram:
            env = {
                "JIANBAO_TELEGRAM_TOKEN": TOKEN,
                "JIANBAO_TELEGRAM_API_URL": telegram.url,
                "JIANBAO_SMTP_URL": f"smtp://127.0.0.1:{smtp.port}",
                "JIANBAO_PUBLIC_URL": PUBLIC_URL,
                "JIANBAO_SECRET_KEY": "test-secret-key-for-broadcast-stats",
                "JIANBAO_TRACK_LINKS": "true",
                "JIANBAO_UTM": "true",
                "JIANBAO_BOUNCE_LIMIT": "1",
                "JIANBAO_RATE_LIMITS": "false",
                "JIANBAO_WORKER_POLL_SECONDS": "0.1",
            }
            (tmp_path / ".env").write_text("".join(f"{name}={value}\n" for name, value in env.items()))
            runner = Setup(cli_database_url, tmp_path, telegram, smtp)
            assert (await runner("import", "--demo")).code == 0
            rows = [f"telegram,{chat}," for chat in chat_ids(5)] + [f"email,{mail}," for mail in emails(4)]
            (tmp_path / "people.csv").write_text("channel,address,topics\n" + "\n".join(rows) + "\n")
            assert (await runner("subscribers", "import", "people.csv")).code == 0
            yield runner


async def _click(url: str, item_url: str, counts: dict[str, tuple[int, int, int]]) -> None:
    """Give the tracked links of `item_url` on each channel (clicks, unique, filtered), as the click
    store's counters hold them."""
    link = core_table(LinkRow)
    async with Database(url) as database, database.transaction("write") as connection:
        for channel, (clicks, unique, filtered) in counts.items():
            result = await connection.execute(
                update(link)
                .where(link.c.channel == channel, link.c.issue_date == DAY, link.c.url.like(f"{item_url}%"))
                .values(clicks=clicks, unique_clicks=unique, filtered_clicks=filtered)
            )
            assert result.rowcount == 1, (channel, item_url)


async def test_blocked_chats_and_bounced_mails_in_the_cli_and_the_api(setup: Setup) -> None:
    setup.telegram.blocked.update(chat_ids(5)[:2])
    setup.smtp.refuse(emails(4)[3])
    sent = await setup("broadcast", "send", str(DAY), "--channel", "telegram", "--channel", "email", "--json")
    assert sent.code == 0, sent.stderr
    broadcast_id = json.loads(sent.stdout)["id"]
    worked = await setup("worker", "--until-done")
    assert worked.code == 0, worked.stderr

    async with Database(setup.url) as database:
        issue = await IssueStore(database).get(DAY)
    assert issue is not None
    section = issue.sections[0]
    item = next(item for item in section.items if item.url)
    await _click(setup.url, item.url or "", {"telegram": (5, 3, 2), "email": (2, 2, 1)})

    result = await setup("broadcast", "stats", str(DAY), "--json")
    assert result.code == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["date"] == str(DAY)
    assert stats["channels"] == {
        "email": {"sent": 3, **ZERO, "bounced": 1, "clicks": 2, "unique_clicks": 2},
        "telegram": {"sent": 3, **ZERO, "blocked": 2, "clicks": 5, "unique_clicks": 3},
    }
    # One item's links on both channels are one URL (each channel's UTM parameters aside).
    assert stats["links"][0] == {
        "url": item.url,
        "section": section.name,
        "title": item.title,
        "clicks": 7,
        "unique_clicks": 5,
    }
    assert all(link["clicks"] == 0 for link in stats["links"][1:])
    assert all("utm_" not in link["url"] for link in stats["links"])
    assert (stats["unsubscribes"], stats["filtered_clicks"]) == ({}, 3)
    by_id = await setup("broadcast", "stats", str(broadcast_id), "--json")
    assert json.loads(by_id.stdout) == stats
    shown = await asyncio.to_thread(
        run_cli, "broadcast", "stats", str(DAY), database_url=setup.url, cwd=setup.folder, columns=200
    )
    assert shown.code == 0, shown.stderr
    assert "blocked" in shown.stdout
    assert "40.0%" in shown.stdout  # telegram: 2 of 5 blocked

    settings = Settings(database_url=setup.url, admin_token=ADMIN, serve_worker="off")
    async with TestClient(TestServer(create_app(settings))) as client:
        auth = {"Authorization": f"Bearer {ADMIN}"}
        response = await client.get(f"/api/broadcasts/{broadcast_id}/stats", headers=auth)
        assert response.status == 200, await response.text()
        assert await response.json() == stats
        missing = await client.get("/api/broadcasts/999999/stats", headers=auth)
        assert (missing.status, await missing.json()) == (404, {"error": "no broadcast with id 999999"})
        assert (await client.get(f"/api/broadcasts/{broadcast_id}/stats")).status == 401


def _tally_counts(stats: dict[str, ChannelTally]) -> dict[str, dict[str, int]]:
    return {channel: counts.to_dict() for channel, counts in stats.items()}


async def _work(
    db: Database,
    results: dict[int, tuple[DeliveryState, SubscriberStatus | None]],
    uncertain: frozenset[int] = frozenset(),
) -> None:
    """Claim every due delivery and record for each subscriber id what `results` says (SENT otherwise;
    SENT with `uncertain` for those in `uncertain`), as a worker's recorder does."""
    ledger = DeliveryLedger(db)
    recorded = []
    for claim in await ledger.claim("w", ["telegram", "email"], 100, 60.0):
        subscriber = claim.subscriber_id or 0
        state, effect = results.get(subscriber, (DeliveryState.SENT, None))
        recorded.append(
            Result(
                claim.id,
                state,
                1,
                uncertain=subscriber in uncertain,
                subscriber_id=claim.subscriber_id,
                subscriber=effect,
            )
        )
    await ledger.record("w", recorded, 60.0)


async def _subscriber_ids(db: Database) -> dict[str, int]:
    s = core_table(SubscriberRow)
    async with db.transaction() as connection:
        return {row.address: row.id for row in await connection.execute(select(s.c.id, s.c.address))}


async def test_the_tally_is_kept_when_done_and_read_after(db: Database) -> None:
    await SubscriberStore(db).import_active(
        [("telegram", str(chat), ()) for chat in chat_ids(4)] + [("email", mail, ()) for mail in emails(3)]
    )
    ids = await _subscriber_ids(db)
    broadcasts = BroadcastStore(db)
    report = await broadcasts.start(DAY, ["telegram", "email"])
    broadcast = report.broadcast
    chats, mails = chat_ids(4), emails(3)
    await _work(
        db,
        {
            ids[str(chats[0])]: (DeliveryState.FAILED, SubscriberStatus.BLOCKED),
            ids[str(chats[1])]: (DeliveryState.FAILED, None),
            ids[mails[0]]: (DeliveryState.FAILED, SubscriberStatus.BOUNCED),
            ids[mails[1]]: (DeliveryState.SKIPPED, None),
        },
        uncertain=frozenset({ids[str(chats[2])]}),
    )
    rows = await DeliveryLedger(db).deliveries(broadcast.id)
    outcomes = {row["subscriber_id"]: row["outcome"] for row in rows}
    assert outcomes[ids[str(chats[0])]] == DeliveryOutcome.BLOCKED.value
    assert outcomes[ids[mails[0]]] == DeliveryOutcome.BOUNCED.value
    assert [outcome for outcome in outcomes.values() if outcome is not None] == ["blocked", "bounced"]

    stats = BroadcastStats(db)
    running = await stats.tally(broadcast.id)
    assert not running.kept
    assert await _kept_rows(db) == 0  # still running: nothing kept
    assert await broadcasts.finish_if_done(broadcast.id)

    expected = {
        "email": {"sent": 1, "failed": 0, "blocked": 0, "bounced": 1, "skipped": 1, "uncertain": 0},
        "telegram": {"sent": 2, "failed": 1, "blocked": 1, "bounced": 0, "skipped": 0, "uncertain": 1},
    }
    first = await stats.tally(broadcast.id)
    assert (first.kept, _tally_counts(first.channels)) == (False, expected)
    assert await _kept_rows(db) == 2
    # The deliveries change behind its back: a later look reads the kept rows, not the deliveries.
    d = core_table(DeliveryRow)
    async with db.transaction("write") as connection:
        await connection.execute(
            update(d).where(d.c.broadcast_id == broadcast.id).values(state=DeliveryState.SKIPPED.value)
        )
    later = await stats.tally(broadcast.id)
    assert (later.kept, _tally_counts(later.channels)) == (True, expected)
    assert (await stats.count(broadcast.id)).channels["telegram"].skipped == 4

    # Sent again to someone who joined since: it runs again, and is counted afresh until done again.
    await SubscriberStore(db).import_active([("telegram", str(chat_ids(1, start=900)[0]), ())])
    again = await broadcasts.start(DAY, ["telegram", "email"])
    assert again.broadcast.state == BroadcastState.RUNNING
    fresh = await stats.tally(broadcast.id)
    assert (fresh.kept, fresh.unfinished, fresh.channels["telegram"].skipped) == (False, 1, 4)
    await _work(db, {})
    assert await broadcasts.finish_if_done(broadcast.id)
    done = await stats.tally(broadcast.id)
    assert (done.kept, done.channels["telegram"].sent, done.channels["telegram"].skipped) == (False, 1, 4)
    assert (await stats.tally(broadcast.id)).kept


async def test_a_cancelled_broadcast_is_kept_once_nothing_is_in_flight(db: Database) -> None:
    await SubscriberStore(db).import_active([("telegram", str(chat), ()) for chat in chat_ids(3)])
    broadcasts = BroadcastStore(db)
    broadcast = (await broadcasts.start(DAY, ["telegram"])).broadcast
    ledger = DeliveryLedger(db)
    [claim] = await ledger.claim("w", ["telegram"], 1, 60.0)
    await broadcasts.cancel(broadcast.id)
    stats = BroadcastStats(db)
    in_flight = await stats.tally(broadcast.id)
    assert (in_flight.kept, in_flight.unfinished, in_flight.channels["telegram"].skipped) == (False, 1, 2)
    assert await _kept_rows(db) == 0
    await ledger.record("w", [Result(claim.id, DeliveryState.SENT, 1)], 60.0)
    await stats.tally(broadcast.id)
    kept = await stats.tally(broadcast.id)
    assert kept.kept
    assert kept.channels == {"telegram": ChannelTally(sent=1, skipped=2)}


async def _kept_rows(db: Database) -> int:
    t = core_table(BroadcastTallyRow)
    async with db.transaction() as connection:
        return len((await connection.execute(select(t.c.channel))).all())


async def test_unsubscribes_within_the_attribution_days_and_not_after(db: Database) -> None:
    chats = [str(chat) for chat in chat_ids(7)]
    await SubscriberStore(db).import_active(
        [("telegram", chat, ()) for chat in chats] + [("email", "a@b.cn", ())]
    )
    broadcast = (await BroadcastStore(db).start(DAY, ["telegram", "email"])).broadcast
    start = broadcast.start_at
    day = dt.timedelta(days=1)
    moves: dict[str, tuple[SubscriberStatus, dt.datetime, dt.datetime]] = {
        # address: (status now, left_at, created_at)
        chats[0]: (SubscriberStatus.UNSUBSCRIBED, start + day, start - 30 * day),
        chats[1]: (SubscriberStatus.UNSUBSCRIBED, start + ATTRIBUTION - dt.timedelta(seconds=1), start),
        chats[2]: (SubscriberStatus.UNSUBSCRIBED, start + ATTRIBUTION, start - 30 * day),  # too late
        chats[3]: (SubscriberStatus.UNSUBSCRIBED, start - day, start - 30 * day),  # before the broadcast
        chats[4]: (SubscriberStatus.BLOCKED, start + day, start + 2 * day),  # left, but did not unsubscribe
        chats[5]: (SubscriberStatus.ACTIVE, start - 30 * day, start + 8 * day),  # joined too late
        "a@b.cn": (SubscriberStatus.UNSUBSCRIBED, start + 2 * day, start + 3 * day),
    }
    s = core_table(SubscriberRow)
    async with db.transaction("write") as connection:
        for address, (status, left_at, created_at) in moves.items():
            await connection.execute(
                update(s)
                .where(s.c.address == address)
                .values(status=status.value, left_at=left_at, created_at=created_at)
            )
        await connection.execute(update(s).where(s.c.address == chats[6]).values(created_at=start - day))
    stats = BroadcastStats(db)
    assert await stats.unsubscribes(broadcast) == {"email": 1, "telegram": 2}
    assert await stats.new_subscribers(broadcast) == {"email": 1, "telegram": 2}
    report: dict[str, Any] = await stats.report(broadcast)
    assert report["unsubscribes"] == {"email": 1, "telegram": 2}


async def test_migration_0008_reads_older_failures_outcome_from_their_error(db: Database) -> None:
    def to_0007(connection: Connection) -> None:
        command.downgrade(alembic_config(connection), "0007")

    async with db.engine.connect() as connection:
        await connection.run_sync(to_0007)
    now = dt.datetime.now(dt.UTC)
    async with db.transaction("write") as connection:
        await connection.execute(
            text(
                "INSERT INTO broadcast (id, issue_date, channels, state, options, start_at, created_at, "
                "updated_at) VALUES (1, :day, '[]', 'done', '{}', :now, :now, :now)"
            ),
            {"day": DAY, "now": now},
        )
        errors = ["blocked: Forbidden: bot was blocked by the user", "bounced", "failed: too long", None]
        for n, error in enumerate(errors, start=1):
            await connection.execute(
                text(
                    "INSERT INTO delivery (id, broadcast_id, channel, kind, state, parts_done, attempts, "
                    "uncertain, next_attempt_at, last_error) "
                    "VALUES (:id, 1, 'telegram', 'mass', :state, 0, 1, false, :now, :error)"
                ),
                {"id": n, "state": "sent" if error is None else "failed", "now": now, "error": error},
            )
    await db.migrate()
    rows = await DeliveryLedger(db).deliveries(1)
    assert [row["outcome"] for row in rows] == ["blocked", "bounced", None, None]
