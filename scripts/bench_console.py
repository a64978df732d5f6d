"""The editors' console at 1,000,000 subscribers and a broadcast of them, on PostgreSQL: the audience
count, broadcast progress, the console pages, and the WeChat keyword replies while editors watch.

    .venv/bin/python scripts/bench_console.py [--keep] [--calls 20] [--requests 200] [--seconds 20]
                                              [--wechat-rate 200] [--no-serve]

The database `bench_console` on the server of --postgres (default JIANBAO_TEST_POSTGRES_URL or
postgresql://postgres@127.0.0.1:5432/test) gets the project's migrations (storage.database.Database),
the 32 demo issues, and in INSERT ... SELECT generate_series: 1,000,000 active subscribers (half on
Telegram, 35% by email, 15% on WeChat; four in ten with topics, from five topic sets; WeChat followers
last seen over the past four days or never) and 50,000 who left; then the broadcast of 2020-07-02 with
customer-service texts on WeChat: one MASS row and a delivery row per active subscriber, skipped as the
application's rule decides (topics against the real issue, WeChat's 48 h window), and of the rest 55%
sent over the last 20 minutes, 2% failed, 1% sending, the others pending, written as a worker writes them
(an UPDATE of the pending rows: dead tuples and a visibility map to match). Built in about 25 s.
With --keep the database is reused when it is complete, and kept at the end; otherwise it is built anew
and dropped.

Then, in this process, on the project's own code:
  1. the audience of the broadcast form (BroadcastControl.audience, one SQL aggregate): --calls calls
     in a row; then 10 editors each asking every second for --seconds through a shared `Snapshots`
     (bot/broadcast/snapshots.py), with how many counts that cost;
  2. progress (BroadcastStore.progress, one scan of the broadcast's rows): 1 watcher, --calls in a row;
     10 watchers at once, each counting; 10 watchers polling every 0.5 s through a shared `Snapshots`
     for --seconds, with how many counts that cost.
Then `jianbao serve` on the database (a process of its own, WeChat on in plain mode, channels configured
but no worker), an editor `bench` added with `JIANBAO_EDITOR_PASSWORD=... jianbao editors add bench`,
signed in through the sign-in form (GET it for the CSRF cookie and field, POST name and password):
  3. each of CONSOLE_PAGES, --requests GETs from --clients concurrent clients (a page answering 404 is
     skipped with a note: the console is being built);
  4. WeChat keyword replies (signed webhook messages, scripts/load_service.py), --wechat-rate a second
     sent on schedule, for --seconds in each of three conditions taken in turn KEYWORD_ROUNDS times:
     nobody watching; EDITORS_POLLING signed-in editors polling the progress panel every POLL_SECONDS;
     as many pollers in this process sharing one count through a `Snapshots` (what the database does
     once the panel asks a shared count, bot/broadcast/snapshots.py).
The server, PostgreSQL and this client share the machine's cores. It prints a table and exits 1 when a
figure with a floor (a console page's p95, the shared counts' p95) is over FLOOR_MS, or when the keyword
replies' p99 while watched is worse than with nobody watching: over KEYWORD_SLACK times it and over it
by KEYWORD_SLACK_MS (the noise of a shared machine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from load_service import KEYWORDS, TOKEN, free_port, signed_query, text_message
from sqlalchemy.engine import make_url

from bot.broadcast.audience import SKIP_TOPICS, audience
from bot.broadcast.control import BroadcastControl
from bot.broadcast.snapshots import (
    AUDIENCE_FRESH_SECONDS,
    AUDIENCE_STALE_SECONDS,
    PROGRESS_FRESH_SECONDS,
    PROGRESS_STALE_SECONDS,
    Snapshots,
)
from bot.importing import import_paths
from bot.settings import Settings
from channels.registry import channel_registry
from channels.wechat.channel import SKIP_WINDOW, WECHAT_WINDOW
from content.demo import demo_issue_dir
from content.parser import parse_issue
from content.source import read_issue_file
from storage.broadcasts import BroadcastStore, Progress
from storage.database import Database
from storage.issues import IssueStore

ROOT = Path(__file__).resolve().parent.parent
JIANBAO = ROOT / ".venv" / "bin" / "jianbao"
DEFAULT_POSTGRES = os.environ.get("JIANBAO_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test"
DATABASE = "bench_console"
ISSUE_DATE = dt.date(2020, 7, 2)
REGISTRY = channel_registry()
CHANNELS = ("telegram", "email", "wechat")
ACTIVE = 1_000_000
LEFT = 50_000
# Topic sets as stored (JSON text), one slot of ten each: six in ten subscribers have none.
TOPIC_SETS = ["[]"] * 6 + ['["量化"]', '["区块链"]', '["量化", "剪枝"]', '["NPU"]']

FLOOR_MS = 200.0
# The console's pages, {id} the broadcast's and {date} its issue's: extend here as the console grows.
CONSOLE_PAGES = (
    "/console",
    "/console/issues/new",
    "/console/issues/{date}",
    "/console/issues/{date}?digest=1",
    "/console/issues/{date}/frame/wechat",
    "/console/issues/{date}/frame/email",
    "/console/audit",
    "/console/broadcasts",
    "/console/broadcasts/{id}",
    "/console/broadcasts/{id}/progress",
    "/console/issues/{date}/broadcast",
)
PROGRESS_PAGE = "/console/broadcasts/{id}/progress"
EDITOR = "bench"
EDITOR_PASSWORD = "bench-console-password-1"
EDITORS_POLLING = 5
POLL_SECONDS = 2.0
SHARED_POLL_SECONDS = 0.5
FORM_SECONDS = 1.0  # how often each editor loads the broadcast form in the audience figure
# The keyword replies' p99 while editors watch may exceed the one without by this much (noise of a
# shared 2-core machine) before it counts as worse.
KEYWORD_SLACK = 1.25
KEYWORD_SLACK_MS = 5.0
KEYWORD_ROUNDS = 2


@dataclass
class Figure:
    name: str
    latencies: list[float]
    floor: float | None = None  # the p95 it must stay under, ms
    note: str = ""
    failures: int = 0

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]

    @property
    def ok(self) -> bool:
        return self.failures == 0 and (self.floor is None or self.percentile(0.95) < self.floor)


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failed: bool = False

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        self.failed |= not figure.ok
        print(_row(figure), flush=True)
        return figure


def _row(figure: Figure) -> str:
    floor = "-" if figure.floor is None else f"{figure.floor:.0f}"
    verdict = "" if figure.floor is None and not figure.failures else ("ok" if figure.ok else "FAIL")
    return (
        f"{figure.name:58s} {len(figure.latencies):6d} {figure.percentile(0.5):8.1f} "
        f"{figure.percentile(0.95):8.1f} {figure.percentile(0.99):8.1f} {floor:>6s} {figure.failures:5d} "
        f"{verdict:4s} {figure.note}"
    )


HEADER = f"{'figure':58s} {'n':>6s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s} {'floor':>6s} {'fail':>5s}"


# --- the database -------------------------------------------------------------------------------------


def _server(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _database_url(base: str) -> str:
    return make_url(_server(base)).set(database=DATABASE).render_as_string(hide_password=False)


async def _admin(base: str, statement: str) -> None:
    connection = await asyncpg.connect(_server(base), timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def _complete(url: str) -> bool:
    """Whether the database is there with its subscribers and its broadcast's rows."""
    try:
        connection = await asyncpg.connect(url, timeout=10)
    except asyncpg.InvalidCatalogNameError:
        return False
    try:
        rows = await connection.fetchval(
            "SELECT count(*) FROM delivery WHERE broadcast_id = "
            "(SELECT id FROM broadcast WHERE issue_date = $1::date)",
            ISSUE_DATE,
        )
    except asyncpg.UndefinedTableError:
        return False
    finally:
        await connection.close()
    return bool(rows and rows > ACTIVE)


async def build(base: str) -> float:
    """The database anew (see the module's docstring); the seconds it took."""
    started = time.perf_counter()
    await _admin(base, f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    await _admin(base, f"CREATE DATABASE {DATABASE}")
    url = _database_url(base)
    async with Database(url) as database:
        await database.migrate()
        report = await import_paths([demo_issue_dir()], IssueStore(database))
        if report.failed:
            raise SystemExit(f"cannot import the demo issues: {report.failed}")
    # The rule the application applies (bot/broadcast/audience.py) decides which topic sets are skipped.
    now = dt.datetime.now(dt.UTC)
    issue = parse_issue(read_issue_file(demo_issue_dir() / f"{ISSUE_DATE}.md"))
    rule = audience(issue, now, REGISTRY)
    off_topic = sorted({text for text in TOPIC_SETS if rule.topics(tuple(json.loads(text))) is not None})
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            """
            INSERT INTO subscriber (channel, address, address_key, status, topics, created_at,
                                    confirmed_at, bounces, last_seen_at)
            SELECT channel, address, address, status, topics::json, now() - interval '400 days',
                   now() - interval '400 days', 0, seen
            FROM (
              SELECT
                CASE WHEN g % 20 < 10 THEN 'telegram' WHEN g % 20 < 17 THEN 'email' ELSE 'wechat' END
                  AS channel,
                CASE WHEN g % 20 < 10 THEN (100000 + g)::text
                     WHEN g % 20 < 17 THEN 'reader' || g || '@example.com'
                     ELSE 'oBenchConsole' || lpad(g::text, 15, '0') END AS address,
                CASE WHEN g <= $1 THEN 'active' WHEN g % 2 = 0 THEN 'unsubscribed' ELSE 'blocked' END
                  AS status,
                ($3::text[])[1 + (g * 7) % 10] AS topics,
                CASE WHEN g % 20 < 10 THEN NULL
                     WHEN g % 20 < 17 THEN now() - make_interval(days => (g % 365)::int)
                     WHEN g % 3 = 0 THEN NULL
                     ELSE now() - make_interval(secs => (g * 7919) % (96 * 3600)) END AS seen
              FROM generate_series(1::bigint, $1::bigint + $2::bigint) AS g
            ) AS people
            """,
            ACTIVE,
            LEFT,
            TOPIC_SETS,
        )
        broadcast = await connection.fetchval(
            """
            INSERT INTO broadcast (issue_date, channels, state, options, start_at, created_at, updated_at)
            VALUES ($1, $2::json, 'running', '{"wechat_text": true}', now() - interval '20 minutes',
                    now() - interval '20 minutes', now())
            RETURNING id
            """,
            ISSUE_DATE,
            json.dumps(list(CHANNELS)),
        )
        await connection.execute(
            """
            INSERT INTO delivery (broadcast_id, subscriber_id, channel, kind, state, parts_done, attempts,
                                  uncertain, next_attempt_at, last_error, sent_at, message_id)
            VALUES ($1, NULL, 'wechat', 'mass', 'sent', 2, 1, false, now(), NULL, now(), 'media-1 1')
            """,
            broadcast,
        )
        await connection.execute(
            """
            INSERT INTO delivery (broadcast_id, subscriber_id, channel, kind, state, parts_done, attempts,
                                  uncertain, next_attempt_at, last_error)
            SELECT $1, id, channel, 'direct', CASE WHEN reason IS NULL THEN 'pending' ELSE 'skipped' END,
                   0, 0, false, now() - interval '20 minutes', reason
            FROM (
              SELECT id, channel,
                CASE WHEN channel = 'wechat' AND (last_seen_at IS NULL OR last_seen_at < $2) THEN $3
                     WHEN topics::text = ANY($4::text[]) THEN $5 END AS reason
              FROM subscriber WHERE status = 'active'
            ) AS decided
            """,
            broadcast,
            now - WECHAT_WINDOW,
            SKIP_WINDOW,
            off_topic,
            SKIP_TOPICS,
        )
        # What workers have done so far, written as they write it: an UPDATE of pending rows.
        await connection.execute(
            """
            UPDATE delivery SET
              state = CASE WHEN id % 100 < 55 THEN 'sent' WHEN id % 100 < 57 THEN 'failed' ELSE 'sending' END,
              attempts = 1,
              parts_done = CASE WHEN id % 100 < 55 THEN 1 ELSE 0 END,
              sent_at = CASE WHEN id % 100 < 55 THEN now() - make_interval(secs => (id * 13) % 1200) END,
              uncertain = (id % 100 < 55 AND id % 997 = 0),
              last_error = CASE WHEN id % 100 BETWEEN 55 AND 56 THEN 'bench: refused' END,
              worker = CASE WHEN id % 100 = 57 THEN 'bench:1:0' END,
              lease_until = CASE WHEN id % 100 = 57 THEN now() + interval '1 hour' END
            WHERE broadcast_id = $1 AND state = 'pending' AND id % 100 < 58
            """,
            broadcast,
        )
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    return time.perf_counter() - started


async def describe(url: str) -> tuple[int, list[str]]:
    """The broadcast's id and a few lines on what the database holds."""
    connection = await asyncpg.connect(url)
    try:
        broadcast = await connection.fetchval("SELECT id FROM broadcast WHERE issue_date = $1", ISSUE_DATE)
        states = await connection.fetch(
            "SELECT state, count(*) AS rows FROM delivery WHERE broadcast_id = $1 "
            "GROUP BY state ORDER BY 2 DESC",
            broadcast,
        )
        people = await connection.fetch(
            "SELECT channel, count(*) AS rows FROM subscriber WHERE status = 'active' "
            "GROUP BY 1 ORDER BY 2 DESC"
        )
        tables = await connection.fetch(
            "SELECT c.relname, c.relpages, c.relallvisible, s.n_dead_tup FROM pg_class c "
            "JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.relname IN ('delivery', 'subscriber')"
        )
    finally:
        await connection.close()
    lines = [
        "active subscribers: " + ", ".join(f"{row['channel']} {row['rows']:,}" for row in people),
        f"broadcast {broadcast}: " + ", ".join(f"{row['state']} {row['rows']:,}" for row in states),
    ]
    lines += [
        f"{row['relname']}: {row['relpages']:,} pages, {row['relallvisible']:,} all-visible, "
        f"{row['n_dead_tup']:,} dead tuples"
        for row in tables
    ]
    return int(broadcast), lines


# --- in process -----------------------------------------------------------------------------------------


async def _timed(call: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1000


async def in_sequence(call: Callable[[], Awaitable[object]], calls: int) -> list[float]:
    return [await _timed(call) for _ in range(calls)]


async def concurrently(call: Callable[[], Awaitable[object]], clients: int, rounds: int) -> list[float]:
    async def client() -> list[float]:
        return [await _timed(call) for _ in range(rounds)]

    return [value for values in await asyncio.gather(*(client() for _ in range(clients))) for value in values]


async def polling(
    call: Callable[[], Awaitable[object]], clients: int, every: float, seconds: float
) -> list[float]:
    """`clients` pollers, each calling every `every` seconds (from a start spread over the first
    interval, as editors' pages are), for `seconds`."""
    deadline = time.monotonic() + seconds

    async def client(offset: float) -> list[float]:
        await asyncio.sleep(offset)
        values = []
        while time.monotonic() < deadline:
            values.append(await _timed(call))
            await asyncio.sleep(every)
        return values

    pollers = (client(every * n / clients) for n in range(clients))
    return [value for values in await asyncio.gather(*pollers) for value in values]


def kinds(name: str, options: Mapping[str, Any]) -> tuple[bool, bool]:
    plan = REGISTRY.get(name).plan(options)
    return plan.direct, plan.mass


async def in_process(url: str, broadcast_id: int, args: argparse.Namespace, report: Report) -> None:
    settings = Settings(database_url=url)
    date = ISSUE_DATE
    async with Database(url) as database:
        control = BroadcastControl(settings, database, REGISTRY)
        store = BroadcastStore(database)
        issue = await IssueStore(database).get(date)
        if issue is None:
            raise SystemExit(f"the issue of {date} is not in the database")
        counts = await store.count_audience(
            CHANNELS,
            audience=audience(issue, dt.datetime.now(dt.UTC), REGISTRY),
            kinds=kinds,
            options={"wechat_text": True},
        )
        for channel, count in counts.items():
            reasons = "; ".join(f"{reason}: {rows:,}" for reason, rows in count.skipped.items())
            report.notes.append(
                f"audience {channel}: {count.pending:,} pending{', mass' if count.mass else ''}; skipped: "
                f"{reasons or 'none'}"
            )

        async def one_audience() -> object:
            return await control.audience(date, CHANNELS, wechat_text=True)

        report.add(
            Figure("audience: a count per call, in a row", await in_sequence(one_audience, args.calls))
        )
        made = 0

        async def counted_audience() -> dict[str, dict[str, int]]:
            nonlocal made
            made += 1
            return await control.audience(date, CHANNELS, wechat_text=True)

        shared_audience: Snapshots[str, dict[str, dict[str, int]]] = Snapshots(
            fresh_seconds=AUDIENCE_FRESH_SECONDS, stale_seconds=AUDIENCE_STALE_SECONDS
        )
        latencies = await polling(
            lambda: shared_audience.get("form", counted_audience), 10, FORM_SECONDS, args.seconds
        )
        report.add(
            Figure(
                f"audience: 10 editors every {FORM_SECONDS:.0f} s, shared",
                latencies,
                FLOOR_MS,
                f"{made} counts in {args.seconds:.0f} s",
            )
        )
        await shared_audience.close()

        async def one_progress() -> Progress:
            return await store.progress(broadcast_id)

        report.add(
            Figure("progress: 1 watcher, a count per call", await in_sequence(one_progress, args.calls))
        )
        report.add(
            Figure("progress: 10 watchers at once, a count each", await concurrently(one_progress, 10, 3))
        )
        made = 0

        async def counted_progress() -> Progress:
            nonlocal made
            made += 1
            return await store.progress(broadcast_id)

        shared: Snapshots[int, Progress] = Snapshots(
            fresh_seconds=PROGRESS_FRESH_SECONDS, stale_seconds=PROGRESS_STALE_SECONDS
        )
        latencies = await polling(
            lambda: shared.get(broadcast_id, counted_progress), 10, SHARED_POLL_SECONDS, args.seconds
        )
        report.add(
            Figure(
                f"progress: 10 watchers every {SHARED_POLL_SECONDS} s, shared",
                latencies,
                FLOOR_MS,
                f"{made} counts in {args.seconds:.0f} s",
            )
        )
        await shared.close()


# --- over HTTP ------------------------------------------------------------------------------------------


def serve_env(url: str, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "JIANBAO_DATABASE_URL": url,
        "JIANBAO_WECHAT_TOKEN": TOKEN,
        "JIANBAO_SECRET_KEY": "bench-console-secret-key-0123456789abcdef",
        "JIANBAO_PUBLIC_URL": f"http://127.0.0.1:{port}",
        # Channels able to send (the broadcast form counts their audiences); no worker runs, and the
        # robots, whose default API roots are the real platforms', stay off.
        "JIANBAO_TELEGRAM_TOKEN": "123456:bench-console",
        "JIANBAO_SMTP_URL": "smtp://127.0.0.1:9",
        "JIANBAO_WECHAT_APPID": "wxbenchconsole",
        "JIANBAO_WECHAT_SECRET": "bench-console-secret",
        "JIANBAO_WECOM_API_URL": "",
        "JIANBAO_FEISHU_API_URL": "",
        "JIANBAO_SERVE_WORKER": "off",
    }


async def add_editor(url: str, env: dict[str, str], folder: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("DELETE FROM editor WHERE name = $1", EDITOR)  # from an earlier --keep run
    finally:
        await connection.close()
    adding = await asyncio.create_subprocess_exec(
        str(JIANBAO),
        "editors",
        "add",
        EDITOR,
        env=env | {"JIANBAO_EDITOR_PASSWORD": EDITOR_PASSWORD},
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(adding.communicate(), 120)
    if adding.returncode:
        raise SystemExit(f"jianbao editors add failed: {output.decode().strip()}")


async def sign_in(session: aiohttp.ClientSession, base: str) -> None:
    async with session.get(f"{base}/console/sign-in") as response:
        page = await response.text()
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    if found is None:
        raise SystemExit("the sign-in page has no csrf_token field")
    form = {"csrf_token": found.group(1), "name": EDITOR, "password": EDITOR_PASSWORD}
    async with session.post(f"{base}/console/sign-in", data=form, allow_redirects=False) as response:
        if response.status != 303:
            raise SystemExit(f"signing in failed: {response.status} {(await response.text())[:200]}")


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, float]:
    started = time.perf_counter()
    async with session.get(url, allow_redirects=False) as response:
        await response.read()
        return response.status, (time.perf_counter() - started) * 1000


async def pages(base: str, broadcast_id: int, args: argparse.Namespace, report: Report) -> None:
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
    connector = aiohttp.TCPConnector(limit=args.clients)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(cookie_jar=jar, connector=connector, timeout=timeout) as session:
        await sign_in(session, base)
        for page in CONSOLE_PAGES:
            path = page.format(id=broadcast_id, date=ISSUE_DATE)
            status, first = await _get(session, base + path)  # the first look, counted in the figure
            if status == 404:
                report.notes.append(f"skipped {path}: 404 (not built yet)")
                print(f"{'GET ' + path:58s} skipped: 404 (not built yet)", flush=True)
                continue
            if status != 200:
                raise SystemExit(f"GET {path} answered {status} (signed in as {EDITOR})")
            latencies, failures = await load(session, base + path, args.requests, args.clients)
            latencies.append(first)
            report.add(Figure(f"GET {path}, {args.clients} clients", latencies, FLOOR_MS, failures=failures))


async def load(
    session: aiohttp.ClientSession, url: str, requests: int, clients: int
) -> tuple[list[float], int]:
    """`requests` GETs of `url` from `clients` clients at once: latencies, and answers other than 200."""
    left = requests
    latencies: list[float] = []
    failures = 0

    async def client() -> None:
        nonlocal left, failures
        while left > 0:
            left -= 1
            status, took = await _get(session, url)
            latencies.append(took)
            failures += status != 200

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, failures


async def keyword_replies(base: str, seconds: float, rate: float, first: int) -> tuple[list[float], int]:
    """Signed WeChat keyword messages at `rate` a second for `seconds`, each sent at its time whether or
    not the earlier ones were answered (readers do not wait for each other): latencies and failures.
    Message numbers (MsgId, nonce) start at `first`."""
    latencies: list[float] = []
    failures = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def message(number: int) -> None:
            nonlocal failures
            body = text_message(number, KEYWORDS[number % len(KEYWORDS)]).encode()
            url = f"{base}/wechat?{signed_query(f'c{number}')}"
            started = time.perf_counter()
            async with session.post(url, data=body) as response:
                await response.read()
                failures += response.status != 200
            latencies.append((time.perf_counter() - started) * 1000)

        began = time.monotonic()
        sending = []
        for n in range(round(seconds * rate)):
            await asyncio.sleep(max(0.0, began + n / rate - time.monotonic()))
            sending.append(asyncio.create_task(message(first + n)))
        await asyncio.gather(*sending)
    return latencies, failures


async def watchers(polls: Sequence[Callable[[], Awaitable[object]]], stop: asyncio.Event) -> list[float]:
    """One watcher per poll function, each calling it every POLL_SECONDS (their starts spread over the
    first interval, as editors' pages are) until `stop`: the latency of every poll."""
    latencies: list[float] = []

    async def watcher(poll: Callable[[], Awaitable[object]], offset: float) -> None:
        await asyncio.sleep(offset)
        while not stop.is_set():
            latencies.append(await _timed(poll))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_SECONDS)

    await asyncio.gather(*(watcher(poll, POLL_SECONDS * n / len(polls)) for n, poll in enumerate(polls)))
    return latencies


async def wechat_while_watched(
    base: str, url: str, broadcast_id: int, args: argparse.Namespace, report: Report
) -> None:
    """Keyword replies at --wechat-rate with nobody watching, with EDITORS_POLLING editors polling the
    console's progress panel, and with as many pollers sharing one count (a `Snapshots` in this
    process: the database's side of what the panel costs once it asks a shared count); the three in
    turn, KEYWORD_ROUNDS times, so that a drift of the machine's load evens out."""
    path = PROGRESS_PAGE.format(id=broadcast_id)
    editors = []
    for _ in range(EDITORS_POLLING):
        session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        editors.append(session)
        await sign_in(session, base)
    made = 0
    async with Database(url) as database:
        store = BroadcastStore(database)

        async def counted() -> Progress:
            nonlocal made
            made += 1
            return await store.progress(broadcast_id)

        shared: Snapshots[int, Progress] = Snapshots(
            fresh_seconds=PROGRESS_FRESH_SECONDS, stale_seconds=PROGRESS_STALE_SECONDS
        )

        def page(session: aiohttp.ClientSession) -> Callable[[], Awaitable[object]]:
            return lambda: _get(session, base + path)

        conditions: dict[str, list[Callable[[], Awaitable[object]]]] = {
            "nobody watching": [],
            f"{EDITORS_POLLING} editors polling {PROGRESS_PAGE}": [page(session) for session in editors],
            f"{EDITORS_POLLING} pollers sharing one count (in this process)": [
                lambda: shared.get(broadcast_id, counted)
            ]
            * EDITORS_POLLING,
        }
        if (await _get(editors[0], base + path))[0] == 404:
            report.notes.append(f"no editors polled: {path} answers 404 (not built yet)")
            del conditions[f"{EDITORS_POLLING} editors polling {PROGRESS_PAGE}"]
        replies: dict[str, list[float]] = {name: [] for name in conditions}
        failures = dict.fromkeys(conditions, 0)
        polls: dict[str, list[float]] = {name: [] for name in conditions}
        number = 0
        try:
            for _round in range(KEYWORD_ROUNDS):
                for name, pollers in conditions.items():
                    stop = asyncio.Event()
                    watching = asyncio.create_task(watchers(pollers, stop))
                    await asyncio.sleep(POLL_SECONDS if pollers else 0)  # every watcher polling
                    seconds = args.seconds / KEYWORD_ROUNDS
                    latencies, failed = await keyword_replies(base, seconds, args.wechat_rate, number)
                    number += 10**7
                    stop.set()
                    polls[name] += await watching
                    replies[name] += latencies
                    failures[name] += failed
        finally:
            await shared.close()
            for session in editors:
                await session.close()
    quiet = Figure(
        f"POST /wechat keyword at {args.wechat_rate:.0f}/s, nobody watching", replies.pop("nobody watching")
    )
    report.add(quiet)
    bound = max(quiet.percentile(0.99) * KEYWORD_SLACK, quiet.percentile(0.99) + KEYWORD_SLACK_MS)
    for name, latencies in replies.items():
        note = f"polls p95 {Figure('', polls[name]).percentile(0.95):.0f} ms" if polls[name] else ""
        if "sharing" in name:
            note += f", {made} counts"
        figure = report.add(Figure(f"  ... {name}", latencies, failures=failures[name], note=note))
        worse = figure.percentile(0.99) > bound
        report.failed |= worse
        report.notes.append(
            f"keyword p99 with {name}: {figure.percentile(0.99):.1f} ms vs {quiet.percentile(0.99):.1f} ms "
            f"with nobody watching (bound {bound:.1f} ms): {'WORSE' if worse else 'ok'}"
        )


def start_server(url: str, port: int, folder: str) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [str(JIANBAO), "serve", "--port", str(port)],
        cwd=folder,
        env=serve_env(url, port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(
                f"jianbao serve exited: {server.stderr.read().decode()[-2000:] if server.stderr else ''}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("jianbao serve did not start within 120 s")


async def over_http(url: str, broadcast_id: int, args: argparse.Namespace, report: Report) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as folder:
        env = serve_env(url, port)
        await add_editor(url, env, folder)
        server = start_server(url, port, folder)
        try:
            await asyncio.sleep(1.0)
            await pages(base, broadcast_id, args, report)
            await wechat_while_watched(base, url, broadcast_id, args, report)
        finally:
            server.terminate()
            server.wait(timeout=60)  # serve drains requests in flight for up to 30 s


async def main_async(args: argparse.Namespace) -> int:
    url = _database_url(args.postgres)
    if args.keep and await _complete(url):
        print(f"reusing the database {DATABASE} (--keep)")
    else:
        print(
            f"building the database {DATABASE}: {ACTIVE:,} active subscribers and their broadcast ...",
            flush=True,
        )
        print(f"built in {await build(args.postgres):.1f} s")
    try:
        broadcast_id, lines = await describe(url)
        for line in lines:
            print(line)
        report = Report()
        print()
        print(HEADER)
        await in_process(url, broadcast_id, args, report)
        if not args.no_serve:
            await over_http(url, broadcast_id, args, report)
        print()
        for note in report.notes:
            print(note)
        pages = [figure for figure in report.figures if figure.name.startswith("GET /console")]
        if pages:
            worst = max(pages, key=lambda figure: figure.percentile(0.95))
            print(f"console pages: worst p95 {worst.percentile(0.95):.1f} ms ({worst.name})")
        verdict = "FAIL" if report.failed else "ok"
        print(f"floor: p95 < {FLOOR_MS:.0f} ms for every figure with a floor: {verdict}")
        return 1 if report.failed else 0
    finally:
        if args.keep:
            print(f"kept the database {DATABASE}")
        else:
            await _admin(args.postgres, f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="a URL of the server to use")
    parser.add_argument("--keep", action="store_true", help="reuse the database when complete; keep it")
    parser.add_argument("--calls", type=int, default=20, help="calls in a row of each in-process figure")
    parser.add_argument("--requests", type=int, default=200, help="GETs of each console page")
    parser.add_argument("--clients", type=int, default=10, help="concurrent clients of the console pages")
    parser.add_argument("--wechat-rate", type=float, default=200.0, help="WeChat messages a second")
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="of shared polling, and of WeChat replies per condition"
    )
    parser.add_argument("--no-serve", action="store_true", help="only the in-process figures")
    args = parser.parse_args()
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
