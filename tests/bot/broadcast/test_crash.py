"""Crash test of the broadcast engine (the Done-when of the broadcast issue):

10,000 subscribers across Telegram and email, 3 `jianbao worker` processes on PostgreSQL, one of them
killed with SIGKILL at 5 random moments while work remains and a new one started each time. Afterwards:
no subscriber lacks any part of the issue, every delivery is sent, the broadcast finished on its own, and
every message that arrived twice belongs to a delivery that was in flight (SENDING, owned by the killed
worker) at a kill, at or after the part that delivery had recorded; one kill accounts for at most one
extra copy.

The fake platforms run in this process (HTML not validated, nothing but counters recorded, so they are
not the bottleneck); the workers reach them over loopback. Figures of the run are printed (pytest -s).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.importing import import_paths
from bot.rendering import Renderer
from bot.settings import Settings
from storage.broadcasts import BroadcastState, BroadcastStore, DeliveryState
from storage.database import Database
from storage.deliveries import DeliveryLedger
from storage.issues import IssueStore
from storage.subscribers import SubscriberStatus, address_key
from storage.tables import DeliveryRow, SubscriberRow, core_table
from tests.bot.broadcast.conftest import DAY, PUBLIC_URL, chat_ids, emails
from tests.bot.broadcast.processes import WorkerPool, worker_env
from tests.bot.helpers import DEMO_DIR, postgres_database
from tests.conftest import fresh_database
from tests.fakes.smtp import running_fake_smtp
from tests.fakes.telegram_api import TOKEN, running_fake_telegram

pytestmark = pytest.mark.postgres

TELEGRAM_CHATS = 7_000
EMAIL_ADDRESSES = 3_000
WORKERS = 3
KILLS = 5
# Short, so that a killed worker's deliveries come back within seconds; long enough that a live worker's
# heartbeat (every third of it) never misses it on a busy 2-core machine, which would be a duplicate no
# kill explains.
LEASE_SECONDS = 5.0
# Deliveries each worker sends at once: enough to keep the fakes busy, few enough that a worker's event
# loop (and its heartbeat) is not starved and httpx's connection pool stays cheap.
CONCURRENCY = 8
SECRET_KEY = "crash-test-secret-key"
# The kills fall within these fractions of all messages delivered (while work remains).
KILL_SPAN = (0.05, 0.85)
# From the first worker's start to the broadcast's end. The sending takes 1.5-3 minutes on a 2-core machine
# (CPU-bound: about 150 CPU-seconds of workers and fakes); past this the broadcast did not finish on its own.
DEADLINE_SECONDS = 420.0
SEED = int(os.environ.get("JIANBAO_TEST_CRASH_SEED", "20200702"))


@dataclass
class Kill:
    number: int
    pid: int
    at: float  # seconds since the workers started
    delivered: int  # messages the fakes had accepted then
    # (channel, address) -> parts_done of each delivery the killed worker held in SENDING
    in_flight: dict[tuple[str, str], int] = field(default_factory=dict)

    def describe(self) -> str:
        channels = Counter(channel for channel, _ in self.in_flight)
        return (
            f"kill {self.number}: pid {self.pid} at {self.at:.1f} s ({self.delivered:,} messages in), "
            f"{len(self.in_flight)} in flight ({channels['telegram']} telegram, {channels['email']} email)"
        )


def renderer_settings(smtp_url: str) -> Settings:
    """The settings the workers render with (no tracking, no utm), for the expected messages."""
    return Settings(
        _env_file=None,
        public_url=PUBLIC_URL,
        secret_key=SECRET_KEY,
        telegram_token=TOKEN,
        smtp_url=smtp_url,
        track_links=False,
        utm=False,
    )


async def add_subscribers(database: Database, subscribers: Sequence[tuple[str, str]]) -> None:
    """Active subscribers (channel, address) in one statement: SubscriberStore.import_active checks and
    inserts them one by one, which takes longer than the broadcast itself."""
    now = dt.datetime.now(dt.UTC)
    rows = [
        {
            "channel": channel,
            "address": address,
            "address_key": address_key(channel, address),
            "status": SubscriberStatus.ACTIVE.value,
            "topics": [],
            "created_at": now,
            "confirmed_at": now,
            "bounces": 0,
        }
        for channel, address in subscribers
    ]
    async with database.transaction("write") as connection:
        await connection.execute(core_table(SubscriberRow).insert(), rows)


async def in_flight(database: Database, pid: int) -> dict[tuple[str, str], int]:
    """The deliveries in SENDING of the worker with this pid, by (channel, address): their parts_done."""
    d, s = core_table(DeliveryRow), core_table(SubscriberRow)
    query = (
        select(d.c.channel, s.c.address, d.c.parts_done)
        .join(s, s.c.id == d.c.subscriber_id)
        .where(d.c.state == DeliveryState.SENDING.value, d.c.worker.like(f"%:{pid}:%"))
    )
    async with database.transaction() as connection:
        rows = (await connection.execute(query)).all()
    return {(row.channel, row.address): row.parts_done for row in rows}


def kill_marks(rng: random.Random, total: int) -> list[int]:
    """KILLS message counts spread over KILL_SPAN of `total`: one drawn at random in each of KILLS equal
    slots, away from the slot's edges so that two kills are never back to back."""
    low, high = KILL_SPAN
    width = (high - low) / KILLS
    return [int(total * (low + width * (n + rng.uniform(0.1, 0.9)))) for n in range(KILLS)]


def unexplained_duplicates(
    telegram: Counter[tuple[int, str]],
    mail: Counter[tuple[str, str]],
    texts: Sequence[str],
    kills: Sequence[Kill],
) -> list[str]:
    """Messages that arrived more often than the kills during their delivery explain: a copy more for
    each kill that found the delivery in flight at or before that part (its parts_done then)."""
    part_of = {text: index for index, text in enumerate(texts)}
    problems = []
    for (chat, text), count in telegram.items():
        if count > 1:
            part = part_of.get(text, -1)
            explained = sum(
                1 for kill in kills if kill.in_flight.get(("telegram", str(chat)), part + 1) <= part
            )
            if count - 1 > explained:
                problems.append(f"telegram {chat} part {part}: {count} copies, {explained} kill(s) explain")
    for (address, _), count in mail.items():
        if count > 1:
            explained = sum(1 for kill in kills if ("email", address) in kill.in_flight)
            if count - 1 > explained:
                problems.append(f"email {address}: {count} copies, {explained} kill(s) explain")
    return problems


@dataclass
class Run:
    kills: list[Kill]
    finished: bool  # every worker exited on its own (--until-done) before the deadline
    seconds: float  # from the first worker's start to the last one's exit


async def send_with_kills(
    pool: WorkerPool, database: Database, rng: random.Random, total: int, delivered: Callable[[], int]
) -> Run:
    """WORKERS workers; at each of the kill marks (messages delivered) one of them, chosen at random, is
    killed with SIGKILL, the deliveries it held in SENDING are read, and a new worker is started. Then
    until every worker has exited, i.e. the broadcast is done."""
    kills: list[Kill] = []
    started = time.monotonic()
    for _ in range(WORKERS):
        pool.start()
    for number, mark in enumerate(kill_marks(rng, total), 1):
        while delivered() < mark:
            elapsed = time.monotonic() - started
            assert elapsed < DEADLINE_SECONDS, f"{delivered():,} of {total:,} messages after {elapsed:.0f} s"
            assert pool.alive, "every worker exited with work left:\n" + "\n".join(pool.failures())
            await asyncio.sleep(0.02)
        # One that is sending (it printed its name: it is past its start-up) if there is one.
        candidates = [worker for worker in pool.alive if worker.name is not None] or pool.alive
        victim = rng.choice(sorted(candidates, key=lambda worker: worker.pid))
        victim.kill()
        kill = Kill(number, victim.pid, time.monotonic() - started, delivered())
        kill.in_flight = await in_flight(database, victim.pid)
        kills.append(kill)
        pool.start()
    finished = await pool.wait_all(DEADLINE_SECONDS - (time.monotonic() - started))
    return Run(kills, finished, time.monotonic() - started)


async def test_workers_killed_five_times_lose_nobody_and_repeat_only_what_was_in_flight(
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    rng = random.Random(SEED)
    chats = chat_ids(TELEGRAM_CHATS)
    addresses = emails(EMAIL_ADDRESSES)
    subscribers = [("telegram", str(chat)) for chat in chats] + [("email", a) for a in addresses]
    # Shuffled, so that the workers (which claim in id order) send on both channels all along.
    rng.shuffle(subscribers)
    with running_fake_smtp(record=False) as smtp:
        async with (
            running_fake_telegram(validate_html=False, record=False) as telegram,
            postgres_database() as url,
            Database(url) as database,
        ):
            await database.migrate()
            await import_paths([DEMO_DIR / f"{DAY}.md"], IssueStore(database))
            await add_subscribers(database, subscribers)
            issue = await IssueStore(database).get(DAY)
            assert issue is not None
            renderer = Renderer(renderer_settings(smtp.url))
            texts = [message.text for message in renderer.telegram(issue).messages]
            template = renderer.email(issue)
            started = await BroadcastStore(database).start(DAY, ("telegram", "email"))
            assert started.pending == TELEGRAM_CHATS + EMAIL_ADDRESSES
            broadcast_id = started.broadcast.id
            total = TELEGRAM_CHATS * len(texts) + EMAIL_ADDRESSES
            setup_seconds = time.monotonic() - began

            env = worker_env(
                database_url=url,
                telegram_api_url=telegram.url,
                telegram_token=TOKEN,
                smtp_url=smtp.url,
                public_url=PUBLIC_URL,
                secret_key=SECRET_KEY,
                lease_seconds=LEASE_SECONDS,
                concurrency=CONCURRENCY,
                poll_seconds=0.2,
                retry_seconds=0.2,
            )
            pool = WorkerPool(env, tmp_path, until_done=True)
            try:
                run = await send_with_kills(
                    pool,
                    database,
                    rng,
                    total,
                    lambda: telegram.accepted_count + smtp.handler.accepted_count,
                )
            finally:
                await pool.stop_all()
            broadcasts = BroadcastStore(database)
            progress = await broadcasts.progress(broadcast_id)
            assert run.finished, f"no end after {run.seconds:.0f} s: {progress.to_dict()}"
            assert not pool.failures(), "\n".join(pool.failures())
            broadcast = await broadcasts.get(broadcast_id)
            deliveries = await DeliveryLedger(database).deliveries(broadcast_id)
        telegram_counts = telegram.delivered()
        mail_counts = smtp.delivered()

    # The figures of the run.
    duplicated = {
        "telegram": sum(count - 1 for count in telegram_counts.values()),
        "email": sum(count - 1 for count in mail_counts.values()),
    }
    repeated = _repeated(telegram_counts, mail_counts)
    in_flight_rows = set().union(*(kill.in_flight for kill in run.kills))
    messages = sum(telegram_counts.values()) + sum(mail_counts.values())
    # What the workers' heartbeats took back from dead workers (at most what was in flight, unless a live
    # worker lost a lease).
    taken_back = sum(int(n) for n in re.findall(r"took back (\d+) deliveries", pool.logs()))
    summary = (
        f"crash run (seed {SEED}): {len(run.kills)} kills, in flight per kill "
        f"{[len(kill.in_flight) for kill in run.kills]}; {sum(duplicated.values())} duplicated messages "
        f"(telegram {duplicated['telegram']}, email {duplicated['email']}) to {len(repeated)} of the "
        f"{len(in_flight_rows)} deliveries in flight ({taken_back} taken back); {messages:,} messages "
        f"for {total:,} due to {len(subscribers):,} subscribers; sending {run.seconds:.1f} s, "
        f"setup {setup_seconds:.1f} s, test {time.monotonic() - began:.1f} s"
    )
    print()
    for kill in run.kills:
        print(kill.describe())
    print(summary)

    # The broadcast finished on its own, and everyone got everything.
    assert broadcast.state == BroadcastState.DONE, summary
    assert Counter(row["state"] for row in deliveries) == {"sent": len(subscribers)}, summary
    missing = [
        (chat, part) for chat in chats for part, text in enumerate(texts) if not telegram_counts[(chat, text)]
    ]
    assert not missing, f"{len(missing)} telegram messages never arrived, e.g. {missing[:5]}; {summary}"
    assert set(telegram_counts) == {(chat, text) for chat in chats for text in texts}, summary
    assert set(mail_counts) == {(address, template.message_id(address)) for address in addresses}, summary

    # Duplicates only where a kill caught the delivery in flight.
    assert len(run.kills) == KILLS, summary
    assert in_flight_rows, f"no kill caught a delivery in flight: {summary}"
    problems = unexplained_duplicates(telegram_counts, mail_counts, texts, run.kills)
    assert not problems, f"duplicates no kill explains: {problems[:10]}; {summary}"


def _repeated(telegram: Counter[tuple[int, str]], mail: Counter[tuple[str, str]]) -> set[tuple[str, str]]:
    """(channel, address) of every subscriber who got a message more than once."""
    found = {("telegram", str(chat)) for (chat, _), count in telegram.items() if count > 1}
    return found | {("email", address) for (address, _), count in mail.items() if count > 1}


async def test_heartbeat_skips_rows_being_written_instead_of_waiting(tmp_path: Path) -> None:
    """Renewing leases and taking back expired ones never wait for a row that another transaction holds
    (a recorder writing its batch). Waiting let a worker's heartbeat and a recorder lock the same rows in
    opposite orders: PostgreSQL broke the deadlock after a second by failing one of them, a failed
    renewal let the lease run out, and a live worker's deliveries were sent twice."""
    async with fresh_database("postgres", tmp_path) as database:
        await database.migrate()
        await add_subscribers(database, [("telegram", str(chat)) for chat in chat_ids(3)])
        await BroadcastStore(database).start(DAY, ["telegram"])
        ledger = DeliveryLedger(database)
        claims = await ledger.claim("w1", ["telegram"], 10, 60.0)
        assert len(claims) == 3
        later = DeliveryLedger(database, clock=lambda: dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5))
        d = core_table(DeliveryRow)
        async with database.transaction() as recorder:
            await recorder.execute(select(d.c.id).where(d.c.id == claims[1].id).with_for_update())
            await asyncio.wait_for(ledger.renew("w1", [claim.id for claim in claims], 60.0), 5)
            assert await asyncio.wait_for(later.reclaim_expired(), 5) == 2
        assert await later.reclaim_expired() == 1
