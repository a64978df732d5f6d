"""Crash test of the broadcast engine (the Done-when of the broadcast issue):

2,000 Telegram chats (3 messages each) and 600 addresses, and beside them 100 WeCom group robots and 100
Feishu custom bots (every other one signing its requests), 3 `jianbao worker` processes on PostgreSQL
(concurrency 16 each), one of them killed with SIGKILL at 5 random moments while work remains and a new
one started each time. Afterwards: no subscriber lacks any part of the issue, every delivery is sent, the
broadcast finished on its own, and every message that arrived twice belongs to a delivery that was in
flight (SENDING, owned by the killed worker) at a kill, at or after the part that delivery had recorded;
a delivery repeats at most one part per kill that caught it, and a kill at most `concurrency` messages
(a worker records each part before the next, and holds at most that many deliveries).

`JIANBAO_TEST_CRASH_SEED` picks other kill moments; scripts/crash_runs.sh runs it N times in a row.

The fake platforms run in this process (HTML not validated, nothing but counters recorded for Telegram
and email, so they are not the bottleneck); the workers reach them over loopback. The robot fakes keep
their real per-robot limits (20 messages a minute for WeCom; 5 a second and 100 a minute for Feishu),
which each worker process paces on its own: a robot gets 5 WeCom or 2 Feishu messages of this issue, and
a kill repeats at most one, so a delivery continued by another process stays within both limits; a rate
refusal would be retried (a minute later) and is counted, not failed. A claim gives each channel its share
(storage/deliveries.py), so the robots are all sent within the first eighth or so of the messages: the
kills that fall there (the first one, with the default seed) catch robot deliveries between two parts.
Figures of the run are printed (pytest -s).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.importing import import_paths
from bot.rendering import Renderer
from bot.settings import Settings
from channels.email.render import render_email
from channels.feishu.payload import FeishuPayload
from channels.registry import channel_registry
from channels.telegram import render_telegram
from channels.wecom.payload import WeComPayload
from storage.broadcasts import BroadcastState, BroadcastStore, DeliveryState
from storage.database import Database
from storage.deliveries import DeliveryLedger
from storage.issues import IssueStore
from storage.subscribers import SubscriberStatus
from storage.tables import DeliveryRow, SubscriberRow, core_table
from tests.bot.broadcast.conftest import (
    DAY,
    PUBLIC_URL,
    chat_ids,
    emails,
    feishu_secret,
    feishu_token,
    wecom_key,
)
from tests.bot.broadcast.processes import WorkerPool, worker_env
from tests.bot.helpers import DEMO_DIR, postgres_database
from tests.conftest import fresh_database
from tests.fakes import feishu_api, wecom_api
from tests.fakes.faults import FaultPlan
from tests.fakes.feishu_api import running_fake_feishu
from tests.fakes.robot_api import RobotFake
from tests.fakes.smtp import running_fake_smtp
from tests.fakes.telegram_api import TOKEN, running_fake_telegram
from tests.fakes.wecom_api import running_fake_wecom

pytestmark = pytest.mark.postgres

# The broadcast the issue about crash duplicates describes: 2,000 chats (3 messages each) and 600 addresses.
TELEGRAM_CHATS = 2_000
EMAIL_ADDRESSES = 600
WECOM_ROBOTS = 100
FEISHU_BOTS = 100
ROBOT_CHANNELS = ("wecom", "feishu")
# How late every robot request is answered (the fakes' "slow" fault on each one, played after the message is
# stored): a robot delivery then spans its parts long enough for kills to catch some between two parts,
# one part stored but not yet answered, which is the in-flight case this test is about. Far below the
# workers' send timeout (10 s), so it never makes a part "maybe delivered".
ROBOT_ANSWER_SECONDS = 0.1
# The refusals that mean "too fast" (code, msg): retried by the worker, so tolerated here and counted.
RATE_REFUSALS = {wecom_api.TOO_FAST, feishu_api.TOO_MANY, feishu_api.RATE_LIMITED}
WORKERS = 3
KILLS = 5
# Short, so that a killed worker's deliveries come back within seconds; long enough that a live worker's
# heartbeat (every third of it) never misses it on a busy 2-core machine, which would be a duplicate no
# kill explains.
LEASE_SECONDS = 5.0
# Deliveries each worker sends at once: enough to keep the fakes busy, few enough that a worker's event
# loop (and its heartbeat) is not starved and httpx's connection pool stays cheap. A kill repeats at most
# this many messages (one part per delivery in hand).
CONCURRENCY = 16
SECRET_KEY = "crash-test-secret-key"
# The kills fall within these fractions of all messages delivered (while work remains).
KILL_SPAN = (0.05, 0.85)
# From the first worker's start to the broadcast's end. The sending takes under a minute on a 2-core
# machine (CPU-bound: workers and fakes); past this the broadcast did not finish on its own.
DEADLINE_SECONDS = 300.0
CHANNELS = channel_registry()
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
            f"{len(self.in_flight)} in flight ({channels['telegram']} telegram, {channels['email']} email, "
            f"{channels['wecom']} wecom, {channels['feishu']} feishu)"
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


async def add_subscribers(
    database: Database,
    subscribers: Sequence[tuple[str, str]],
    secrets: Mapping[tuple[str, str], str] | None = None,
) -> None:
    """Active subscribers (channel, address), with the secret `secrets` gives some of them, in one
    statement: SubscriberStore.import_active checks and inserts them one by one, which takes longer than the
    broadcast itself."""
    now = dt.datetime.now(dt.UTC)
    rows: list[dict[str, object]] = [
        {
            "channel": channel,
            "address": address,
            "address_key": CHANNELS.address_key(channel, address),
            "secret": (secrets or {}).get((channel, address)),
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


# (channel, address, part) -> copies that arrived; part -1 for a message that is no part of the issue.
Arrivals = Counter[tuple[str, str, int]]


def arrivals(
    telegram: Counter[tuple[int, str]],
    texts: Sequence[str],
    mail: Counter[tuple[str, str]],
    robots: Mapping[str, tuple[Counter[tuple[str, str]], Sequence[str]]],
) -> Arrivals:
    """What every platform received, by subscriber and part: Telegram's texts and each robot channel's
    bodies (canonical JSON, as its fake counts them) are numbered by their place in the issue; a mail is
    part 0."""
    arrived: Arrivals = Counter()
    part_of = {text: index for index, text in enumerate(texts)}
    for (chat, text), count in telegram.items():
        arrived["telegram", str(chat), part_of.get(text, -1)] += count
    for (address, _), count in mail.items():
        arrived["email", address, 0] += count
    for channel, (received, bodies) in robots.items():
        body_part = {body: index for index, body in enumerate(bodies)}
        for (key, body), count in received.items():
            arrived[channel, key, body_part.get(body, -1)] += count
    return arrived


def repeats(arrived: Arrivals) -> dict[tuple[str, str], list[int]]:
    """(channel, address) -> each extra copy that arrived, as the number of its part."""
    extra: dict[tuple[str, str], list[int]] = {}
    for (channel, address, part), count in sorted(arrived.items()):
        if count > 1:
            extra.setdefault((channel, address), []).extend([part] * (count - 1))
    return extra


def unexplained_duplicates(arrived: Arrivals, kills: Sequence[Kill]) -> list[str]:
    """Deliveries that repeated more than the kills explain. A kill that caught a delivery in flight, with
    `parts_done` recorded, explains one extra copy of one part from `parts_done` on (the part in flight):
    not a second part, nor one recorded before."""
    problems = []
    for delivery, parts in repeats(arrived).items():
        caught = [kill.in_flight[delivery] for kill in kills if delivery in kill.in_flight]
        if len(parts) > len(caught) or (caught and min(parts) < min(caught)):
            channel, address = delivery
            problems.append(f"{channel} {address}: parts {parts} repeated, in flight at kills {caught}")
    return problems


def duplicates_per_kill(arrived: Arrivals, kills: Sequence[Kill]) -> list[int]:
    """The extra copies each kill accounts for: a repeated delivery's copies go to the kills that caught it
    in flight, the latest first (one each)."""
    counts = [0] * len(kills)
    for delivery, parts in repeats(arrived).items():
        catching = [n for n, kill in enumerate(kills) if delivery in kill.in_flight]
        for n in reversed(catching[-len(parts) :]):
            counts[n] += 1
    return counts


def canonical(body: Mapping[str, Any]) -> str:
    """A robot body as tests/fakes/robot_api.py's `delivered` counts it."""
    return json.dumps(body, sort_keys=True, ensure_ascii=False)


def robot_bodies(renderer: Renderer, issue: Any) -> dict[str, list[str]]:
    """channel -> the issue's request bodies for each robot channel, in order (Feishu's unsigned)."""
    wecom, feishu = renderer.render(issue, "wecom").payload, renderer.render(issue, "feishu").payload
    assert isinstance(wecom, WeComPayload)
    assert isinstance(feishu, FeishuPayload)
    return {
        "wecom": [canonical(body) for body in wecom.messages],
        "feishu": [canonical(body) for body in feishu.messages],
    }


def accepted_count(fake: RobotFake[Any]) -> int:
    return sum(len(bodies) for bodies in fake.accepted.values())


@dataclass
class Run:
    kills: list[Kill]
    finished: bool  # every worker exited on its own (--until-done) before the deadline
    seconds: float  # from the first worker's start to the last one's exit
    started: float  # time.monotonic() at the first worker's start


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
    return Run(kills, finished, time.monotonic() - started, started)


async def test_workers_killed_five_times_lose_nobody_and_repeat_only_what_was_in_flight(
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    rng = random.Random(SEED)
    chats = chat_ids(TELEGRAM_CHATS)
    addresses = emails(EMAIL_ADDRESSES)
    # Robots' addresses through the channels' rules, as any subscriber's (a bare key or token stays itself).
    keys = [CHANNELS.check_address("wecom", wecom_key(n)) for n in range(WECOM_ROBOTS)]
    tokens = [CHANNELS.check_address("feishu", feishu_token(n)) for n in range(FEISHU_BOTS)]
    signing = {token: feishu_secret(n) for n, token in enumerate(tokens) if n % 2 == 0}
    secrets = {
        ("feishu", token): CHANNELS.get("feishu").check_secret(secret) or ""
        for token, secret in signing.items()
    }
    subscribers = [("telegram", str(chat)) for chat in chats] + [("email", a) for a in addresses]
    subscribers += [("wecom", key) for key in keys] + [("feishu", token) for token in tokens]
    # Shuffled, so that the workers (which claim in id order) send on every channel all along.
    rng.shuffle(subscribers)
    with running_fake_smtp(record=False) as smtp:
        async with (
            running_fake_telegram(validate_html=False, record=False) as telegram,
            running_fake_wecom(*keys) as wecom,
            running_fake_feishu() as feishu,
            postgres_database() as url,
            Database(url) as database,
        ):
            for token in tokens:
                feishu.add_robot(token, signing.get(token))
            for fake in (wecom, feishu):
                fake.faults(FaultPlan(seed=SEED, rates={"slow": 1.0}, slow_seconds=ROBOT_ANSWER_SECONDS))
            await database.migrate()
            await import_paths([DEMO_DIR / f"{DAY}.md"], IssueStore(database))
            await add_subscribers(database, subscribers, secrets)
            issue = await IssueStore(database).get(DAY)
            assert issue is not None
            renderer = Renderer(renderer_settings(smtp.url))
            texts = [
                message.text for message in render_telegram(renderer.document(issue, "telegram")).messages
            ]
            template = render_email(
                renderer.document(issue, "email"), mail_from=renderer_settings(smtp.url).mail_from
            )
            bodies = robot_bodies(renderer, issue)
            started = await BroadcastStore(database).start(DAY, ("telegram", "email", *ROBOT_CHANNELS))
            assert started.pending == len(subscribers)
            broadcast_id = started.broadcast.id
            total = (
                TELEGRAM_CHATS * len(texts)
                + EMAIL_ADDRESSES
                + WECOM_ROBOTS * len(bodies["wecom"])
                + FEISHU_BOTS * len(bodies["feishu"])
            )
            setup_seconds = time.monotonic() - began

            env = worker_env(
                database_url=url,
                telegram_api_url=telegram.url,
                telegram_token=TOKEN,
                smtp_url=smtp.url,
                wecom_api_url=wecom.url,
                feishu_api_url=feishu.url,
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
                    lambda: (
                        telegram.accepted_count
                        + smtp.handler.accepted_count
                        + accepted_count(wecom)
                        + accepted_count(feishu)
                    ),
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
    robot_counts = {"wecom": wecom.delivered(), "feishu": feishu.delivered()}
    arrived = arrivals(
        telegram_counts,
        texts,
        mail_counts,
        {channel: (robot_counts[channel], bodies[channel]) for channel in ROBOT_CHANNELS},
    )

    # The figures of the run.
    duplicated: Counter[str] = Counter()
    for (channel, _, _), count in arrived.items():
        duplicated[channel] += count - 1
    repeated = {(channel, address) for (channel, address, _), count in arrived.items() if count > 1}
    in_flight_rows = set().union(*(kill.in_flight for kill in run.kills))
    robots_in_flight = Counter(channel for channel, _ in in_flight_rows if channel in ROBOT_CHANNELS)
    messages = sum(arrived.values())
    # The robot fakes time their arrivals with time.monotonic(), as the run does.
    robots_done = max(max(times) for fake in (wecom, feishu) for times in fake.accepted_at.values())
    # What the workers' heartbeats took back from dead workers (at most what was in flight, unless a live
    # worker lost a lease).
    taken_back = sum(int(n) for n in re.findall(r"took back (\d+) deliveries", pool.logs()))
    per_kill = duplicates_per_kill(arrived, run.kills)
    summary = (
        f"crash run (seed {SEED}): {len(run.kills)} kills, in flight per kill "
        f"{[len(kill.in_flight) for kill in run.kills]}, duplicates per kill {per_kill} (robots: {robots_in_flight['wecom']} wecom, "
        f"{robots_in_flight['feishu']} feishu); {sum(duplicated.values())} duplicated messages "
        f"(telegram {duplicated['telegram']}, email {duplicated['email']}, wecom {duplicated['wecom']}, "
        f"feishu {duplicated['feishu']}) to {len(repeated)} of the {len(in_flight_rows)} deliveries in "
        f"flight ({taken_back} taken back); rate refusals: wecom {wecom.throttled}, feishu "
        f"{feishu.throttled}; {messages:,} messages for {total:,} due to {len(subscribers):,} subscribers "
        f"({WECOM_ROBOTS} wecom robots x {len(bodies['wecom'])}, {FEISHU_BOTS} feishu bots x "
        f"{len(bodies['feishu'])}, all sent by {robots_done - run.started:.0f} s); sending {run.seconds:.1f} s, setup {setup_seconds:.1f} s, test "
        f"{time.monotonic() - began:.1f} s"
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
    for channel, robot_keys in (("wecom", keys), ("feishu", tokens)):
        expected = {(key, body) for key in robot_keys for body in bodies[channel]}
        lacking = expected - set(robot_counts[channel])
        assert not lacking, f"{len(lacking)} {channel} messages never arrived; {summary}"
        assert set(robot_counts[channel]) == expected, summary
    # The robots refused nothing but, perhaps, a message over their rate (which the worker retries): no
    # signature, no content, no key.
    for channel, fake in (("wecom", wecom), ("feishu", feishu)):
        other = [(code, msg) for _, code, msg in fake.errors if (code, msg) not in RATE_REFUSALS]
        assert not other, f"{channel} refused {other[:5]}; {summary}"

    # Duplicates only where a kill caught the delivery in flight.
    assert len(run.kills) == KILLS, summary
    assert in_flight_rows, f"no kill caught a delivery in flight: {summary}"
    problems = unexplained_duplicates(arrived, run.kills)
    assert not problems, f"duplicates no kill explains: {problems[:10]}; {summary}"
    # A worker holds at most `concurrency` deliveries, each with at most one part unrecorded.
    assert all(len(kill.in_flight) <= CONCURRENCY for kill in run.kills), summary
    assert all(count <= CONCURRENCY for count in per_kill), summary
    assert sum(per_kill) == sum(duplicated.values()), summary


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
