"""After the send, at scale: the analytics pages of the editors' console at 1,000,000 subscribers,
1,000,000 deliveries and 2,000,000 clicks on PostgreSQL, and the redirect /r/{token} while they are viewed.

    .venv/bin/python scripts/bench_analytics.py [--keep] [--requests 200] [--clients 10] [--rate 200]
                                                [--seconds 20] [--editors 5]

The database `bench_analytics` on the server of --postgres (default JIANBAO_TEST_POSTGRES_URL or
postgresql://postgres@127.0.0.1:5432/test) gets the project's migrations (storage.database.Database), the
demo issues, and the broadcast of ISSUE_DATE as a worker leaves it, finished BROADCAST_AGE ago:
  - its tracked links remembered as the worker remembers them (bot/broadcast/payloads.py PayloadCache:
    the issue rendered per channel with JIANBAO_TRACK_LINKS on, tokens from channels/links.py);
  - in INSERT ... SELECT generate_series: SUBSCRIBERS subscribers (half on Telegram, 35% by email, 15% on
    WeChat, topic sets as scripts/bench_console.py's) and a delivery each: 88% sent (one in 997 of them
    uncertain), 2.5% failed as blocked (bounced by email, the subscriber then BLOCKED or BOUNCED), 1%
    failed otherwise, the rest skipped; 1.5% of the subscribers left within the attribution days after the
    start (storage/broadcast_stats.py), 0.5% later;
  - CLICKS clicks over the CLICK_DAYS after the start, most in the first hours (a cube of a uniform), on
    the links with a skew (a few links take most), two per (link, reader) pair: the second a repeat
    within 5 minutes for four pairs in ten, hours later for the others; 2% of the pairs scanners, 3%
    previews; the clicker a 32-hex hash of (reader, UTC day) as bot/click_buffer.py names them
    (and nobody behind it: JIANBAO_TRACK_SUBSCRIBERS is off, the default). Each click
    is decided by SQL as storage/clicks.py decides it (a repeat: within REPEAT_WINDOW of the same clicker's
    previous counted click on the link; approximated by its previous unfiltered click, which differs only
    for chains of three within minutes), and the aggregates (link.clicks, unique_clicks, filtered_clicks,
    click_hour) are computed from the click rows, as if recorded one batch at a time.
Built in about a minute. With --keep the database is reused when complete, and kept at the end.

Then `jianbao serve` on it (JIANBAO_TRACK_LINKS on, a PUBLIC_URL, 127.0.0.1 a trusted proxy so that readers
are told apart by X-Forwarded-For, no worker), an editor signed in as scripts/bench_console.py does:
  1. each of ANALYTICS_PAGES, --requests GETs from --clients concurrent clients (the first GET, which
     counts and keeps the finished broadcast's tally, counted in the figure); floor: p95 < FLOOR_MS;
  2. /r/{token} on every tracked link, --rate a second sent on schedule (readers do not wait for each
     other) with readers' user agents and addresses, for --seconds in each of two conditions taken in
     turn ROUNDS times: nobody viewing; --editors editors each reloading the stats page every second.
     Floor: p99 < REDIRECT_P99_MS while viewed. After the server has stopped (which writes the clicks
     still buffered) the links' counters must have grown by the clicks sent.
The server, PostgreSQL and this client share the machine's cores. It prints a table like
bench_console's and exits 1 when a floor is missed or a click went uncounted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import asyncpg  # type: ignore[import-untyped]  # no stubs; a script, outside mypy's packages
from bench_console import (
    HEADER,
    TOPIC_SETS,
    Figure,
    Report,
    _admin,
    _get,
    _server,
    add_editor,
    load,
    serve_env,
    sign_in,
)
from load_service import free_port
from sqlalchemy.engine import make_url

from bot.broadcast.audience import SKIP_TOPICS
from bot.broadcast.payloads import PayloadCache
from bot.importing import import_paths
from bot.rendering import Renderer
from bot.settings import Settings
from channels.wechat.channel import SKIP_WINDOW
from content.demo import demo_issue_dir
from storage.broadcast_stats import ATTRIBUTION_DAYS
from storage.clicks import REPEAT_WINDOW
from storage.database import Database
from storage.issues import IssueStore
from storage.links import LinkStore

ROOT = Path(__file__).resolve().parent.parent
JIANBAO = ROOT / ".venv" / "bin" / "jianbao"
DEFAULT_POSTGRES = os.environ.get("JIANBAO_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test"
DATABASE = "bench_analytics"
ISSUE_DATE = dt.date(2020, 7, 2)
CHANNELS = ("telegram", "email", "wechat")
SUBSCRIBERS = 1_000_000
CLICKS = 2_000_000  # an even number: two clicks per (link, reader) pair
CLICK_DAYS = 10
READERS = 600_000  # distinct people behind the clicks; a reader clicks about two links
# The broadcast started this long ago and took BROADCAST_HOURS; its clicks fill the days since.
BROADCAST_AGE = dt.timedelta(days=CLICK_DAYS, hours=1)
BROADCAST_HOURS = 2
# Seeds of PostgreSQL's hashint8extended: a subscriber's delivery outcome and whether they left are two
# independent pseudo-random draws from their id (a multiplicative hash mod 1000 would tie both, and the
# channel, to id % 1000).
OUTCOME_HASH = 1
LEAVING_HASH = 2

# The issue "After the send": every analytics page under 300 ms at p95, /r/ under 5 ms at p99 while viewed.
FLOOR_MS = 300.0
REDIRECT_P99_MS = 5.0
# The pages, {id} the broadcast's and {subscriber} a subscriber's id.
ANALYTICS_PAGES = (
    "/console/broadcasts/{id}/stats",
    "/console/broadcasts/{id}/stats.csv?part=links",
    "/console/broadcasts/{id}/stats.csv?part=channels",
    "/console/compare?n=10",
    "/console/subscribers?q=reader12",
    "/console/subscribers?channel=wechat&status=unsubscribed",
    "/console/subscribers?topic=剪枝",
    "/console/subscribers/{subscriber}",
    "/console/growth",
    "/console/growth?days=30",
    "/console/subscribers/import",
)
STATS_PAGE = "/console/broadcasts/{id}/stats"
SUBSCRIBER_ID = 500_012  # an email subscriber (id % 20 in 10..16)
EDITOR_RELOAD_SECONDS = 1.0
ROUNDS = 2
# Readers' browsers: in-app ones of the channels, phones, desktops; and Telegram's link preview robot,
# which the redirect follows but does not count as a reader (bot/click_filter.py).
USER_AGENTS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148 MicroMessenger/8.0.49(0x18003137) NetType/WIFI Language/zh_CN",
    "Mozilla/5.0 (Linux; Android 14; 23127PN0CC Build/UKQ1.230804.001; wv) AppleWebKit/537.36 (KHTML, "
    "like Gecko) Version/4.0 Chrome/118.0.0.0 Mobile Safari/537.36 XWEB/1180061 MMWEBSDK/20240301 "
    "MicroMessenger/8.0.48.2580(0x28003036) WeChat/arm64 Weixin NetType/WIFI Language/zh_CN ABI/arm64",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.6367.82 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4_1) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Thunderbird/115.10.1",
    "TelegramBot (like TwitterBot)",
)


# --- the database -------------------------------------------------------------------------------------


def _database_url(base: str) -> str:
    return make_url(_server(base)).set(database=DATABASE).render_as_string(hide_password=False)


async def _complete(url: str) -> bool:
    """Whether the database is there with its deliveries and its clicks."""
    try:
        connection = await asyncpg.connect(url, timeout=10)
    except asyncpg.InvalidCatalogNameError:
        return False
    try:
        deliveries = await connection.fetchval("SELECT count(*) FROM delivery")
        clicks = await connection.fetchval("SELECT count(*) FROM click")
    except asyncpg.UndefinedTableError:
        return False
    finally:
        await connection.close()
    return bool(deliveries >= SUBSCRIBERS and clicks >= CLICKS)


def settings(public_url: str, secret_key: str) -> Settings:
    """The service's settings as far as rendering goes: tracking on, the server's key and URL."""
    return Settings(
        secret_key=secret_key,
        public_url=public_url,
        track_links=True,
        _env_file=None,  # not the working directory's .env: these are the bench's settings
    )


async def build(base: str, secret_key: str) -> float:
    """The database anew (see the module's docstring); the seconds it took."""
    started = time.perf_counter()
    await _admin(base, f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    await _admin(base, f"CREATE DATABASE {DATABASE}")
    url = _database_url(base)
    async with Database(url) as database:
        await database.migrate()
        issues = IssueStore(database)
        report = await import_paths([demo_issue_dir()], issues)
        if report.failed:
            raise SystemExit(f"cannot import the demo issues: {report.failed}")
        # The links as a worker remembers them before the first send; the public URL is not in a token.
        payloads = PayloadCache(issues, LinkStore(database), Renderer(settings("http://bench", secret_key)))
        for channel in CHANNELS:
            await payloads.get(ISSUE_DATE, channel)
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("SET TIME ZONE 'UTC'")  # click_hour's hours are UTC hours
        start = await connection.fetchval("SELECT date_trunc('second', now()) - $1::interval", BROADCAST_AGE)
        await _subscribers(connection, start)
        broadcast = await connection.fetchval(
            """
            INSERT INTO broadcast (issue_date, channels, state, options, start_at, created_at, updated_at,
                                   finished_at)
            VALUES ($1, $2::json, 'done', '{"wechat_text": true}', $3::timestamptz, $3, $3 + $4::interval,
                    $3 + $4::interval)
            RETURNING id
            """,
            ISSUE_DATE,
            json.dumps(list(CHANNELS)),
            start,
            dt.timedelta(hours=BROADCAST_HOURS),
        )
        await _deliveries(connection, broadcast, start)
        await _clicks(connection, start)
    finally:
        await connection.close()
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("VACUUM ANALYZE")  # as autovacuum leaves tables written long ago
    finally:
        await connection.close()
    return time.perf_counter() - started


async def _subscribers(connection: asyncpg.Connection, start: dt.datetime) -> None:
    """SUBSCRIBERS subscribers, ids 1.. in order; their status follows their delivery (`_deliveries`
    hashes the id the same way, OUTCOME_HASH: below 880 of 1000 sent, below 905 refused). Whether they
    left is another hash of the id (LEAVING_HASH), independent of the first and of the channel."""
    await connection.execute(
        """
        INSERT INTO subscriber (channel, address, address_key, status, topics, created_at, confirmed_at,
                                left_at, bounces, last_seen_at)
        SELECT channel, address, address, status, topics::json, created, created,
               CASE WHEN status <> 'unsubscribed' THEN NULL
                    WHEN leaving < 15
                      THEN $2::timestamptz + make_interval(secs => (g * 31) % ($3::int * 86400))
                    ELSE $2::timestamptz + make_interval(days => $3::int, secs => (g * 31) % 172800) END,
               CASE WHEN status = 'bounced' THEN 2 ELSE 0 END,
               CASE WHEN channel = 'wechat' AND g % 3 <> 0
                    THEN $2::timestamptz - make_interval(secs => (g * 7919) % (96 * 3600)) END
        FROM (
          SELECT g, leaving,
            CASE WHEN g % 20 < 10 THEN 'telegram' WHEN g % 20 < 17 THEN 'email' ELSE 'wechat' END AS channel,
            CASE WHEN g % 20 < 10 THEN (100000 + g)::text
                 WHEN g % 20 < 17 THEN 'reader' || g || '@example.com'
                 ELSE 'oBenchAnalytics' || lpad(g::text, 14, '0') END AS address,
            CASE WHEN outcome BETWEEN 880 AND 904 THEN (CASE WHEN g % 20 BETWEEN 10 AND 16
                                                             THEN 'bounced' ELSE 'blocked' END)
                 WHEN outcome < 880 AND leaving < 20 THEN 'unsubscribed'
                 ELSE 'active' END AS status,
            ($4::text[])[1 + (g * 7) % 10] AS topics,
            $2::timestamptz - make_interval(days => 1 + (g % 700)::int) AS created
          FROM (
            SELECT g, abs(hashint8extended(g, $5)) % 1000 AS outcome,
                   abs(hashint8extended(g, $6)) % 1000 AS leaving
            FROM generate_series(1::bigint, $1::bigint) AS g
          ) AS hashed
        ) AS people
        ORDER BY g
        """,
        SUBSCRIBERS,
        start,
        ATTRIBUTION_DAYS,
        TOPIC_SETS,
        OUTCOME_HASH,
        LEAVING_HASH,
    )


async def _deliveries(connection: asyncpg.Connection, broadcast: int, start: dt.datetime) -> None:
    """A delivery per subscriber, finished: see `_subscribers` for the hash shared with it."""
    await connection.execute(
        """
        INSERT INTO delivery (broadcast_id, subscriber_id, channel, kind, state, parts_done, attempts,
                              uncertain, next_attempt_at, last_error, sent_at, outcome)
        SELECT $1, id, channel, 'direct',
               CASE WHEN h < 880 THEN 'sent' WHEN h < 915 THEN 'failed' ELSE 'skipped' END,
               CASE WHEN h < 880 THEN 1 ELSE 0 END,
               CASE WHEN h < 905 THEN 1 WHEN h < 915 THEN 8 ELSE 0 END,
               h < 880 AND id % 997 = 0,
               $2::timestamptz,
               CASE WHEN h < 880 THEN NULL
                    WHEN h < 905 AND channel = 'email' THEN 'bounced: 550 5.1.1 user unknown'
                    WHEN h < 905 THEN 'blocked: Forbidden: bot was blocked by the user'
                    WHEN h < 915 THEN 'gave up after 8 attempts: timeout'
                    WHEN channel = 'wechat' THEN $3 ELSE $4 END,
               CASE WHEN h < 880
                 THEN $2::timestamptz + make_interval(secs => (id * 13) % ($5::int * 3600)) END,
               CASE WHEN h BETWEEN 880 AND 904 THEN (CASE WHEN channel = 'email' THEN 'bounced'
                                                         ELSE 'blocked' END) END
        FROM (SELECT id, channel, abs(hashint8extended(id, $6)) % 1000 AS h FROM subscriber) AS hashed
        ORDER BY id
        """,
        broadcast,
        start,
        SKIP_WINDOW,
        SKIP_TOPICS,
        BROADCAST_HOURS,
        OUTCOME_HASH,
    )


async def _clicks(connection: asyncpg.Connection, start: dt.datetime) -> None:
    """CLICKS clicks decided and counted (the module's docstring), then the aggregates from them."""
    tokens = [
        row["token"]
        for row in await connection.fetch(
            "SELECT token FROM link WHERE issue_date = $1 ORDER BY channel, token", ISSUE_DATE
        )
    ]
    await connection.execute(
        """
        INSERT INTO click (token, at, clicker, counted, filtered)
        WITH raw AS (
          SELECT token, at, md5('reader ' || p % $5 || ' ' || (at AT TIME ZONE 'UTC')::date) AS clicker,
                 filtered
          FROM (
            SELECT p, j,
              ($1::text[])[1 + floor(array_length($1::text[], 1) * power(pick, 2.5))::int] AS token,
              least(now(), $2::timestamptz + make_interval(secs => $3::int * 86400 * power(moment, 3))
                + CASE WHEN j = 0 THEN interval '0'
                       WHEN p % 10 < 4 THEN make_interval(secs => 5 + p % 90)
                       ELSE make_interval(secs => 3600 + (p * 31) % 86400) END) AS at,
              CASE WHEN kind < 0.02 THEN 'scanner' WHEN kind < 0.05 AND j = 0 THEN 'preview' END
                AS filtered
            FROM (SELECT p, random() AS pick, random() AS moment, random() AS kind
                  FROM generate_series(0, $4 / 2 - 1) AS p) AS pairs
            CROSS JOIN (VALUES (0), (1)) AS second (j)
          ) AS drawn
        ), decided AS (
          SELECT token, at, clicker,
            CASE WHEN filtered IS NULL AND at - lag(at) OVER counted < $6::interval THEN 'repeat'
                 ELSE filtered END AS verdict
          FROM raw
          WINDOW counted AS (PARTITION BY token, clicker, filtered IS NULL ORDER BY at)
        )
        SELECT token, at, clicker, verdict IS NULL, verdict FROM decided ORDER BY at
        """,
        tokens,
        start,
        CLICK_DAYS,
        CLICKS,
        READERS,
        REPEAT_WINDOW,
    )
    await connection.execute(
        """
        UPDATE link SET clicks = counts.clicks, unique_clicks = counts.unique_clicks,
                        filtered_clicks = counts.filtered_clicks
        FROM (
          SELECT token, count(*) FILTER (WHERE counted) AS clicks,
                 count(DISTINCT clicker) FILTER (WHERE counted) AS unique_clicks,
                 count(*) FILTER (WHERE NOT counted) AS filtered_clicks
          FROM click GROUP BY token
        ) AS counts
        WHERE link.token = counts.token
        """
    )
    await connection.execute(
        """
        INSERT INTO click_hour (token, hour, issue_date, channel, clicks, unique_clicks)
        SELECT c.token, date_trunc('hour', c.at), l.issue_date, l.channel, count(*),
               count(*) FILTER (WHERE c.first)
        FROM (
          SELECT token, at, row_number() OVER (PARTITION BY token, clicker ORDER BY at) = 1 AS first
          FROM click WHERE counted
        ) AS c
        JOIN link AS l ON l.token = c.token
        GROUP BY 1, 2, 3, 4
        """
    )


async def describe(url: str) -> tuple[int, list[str], list[str]]:
    """The broadcast's id, lines on what the database holds, and its tracked tokens."""
    connection = await asyncpg.connect(url)
    try:
        broadcast = await connection.fetchval("SELECT id FROM broadcast WHERE issue_date = $1", ISSUE_DATE)
        states = await connection.fetch(
            "SELECT state, coalesce(outcome, '') AS outcome, count(*) AS rows FROM delivery "
            "WHERE broadcast_id = $1 GROUP BY 1, 2 ORDER BY 3 DESC",
            broadcast,
        )
        people = await connection.fetch(
            "SELECT status, count(*) AS rows FROM subscriber GROUP BY 1 ORDER BY 2 DESC"
        )
        links = await connection.fetch(
            "SELECT token, clicks, unique_clicks, filtered_clicks FROM link WHERE issue_date = $1", ISSUE_DATE
        )
        clicks = await connection.fetchval("SELECT count(*) FROM click")
        hours = await connection.fetchval("SELECT count(*) FROM click_hour")
    finally:
        await connection.close()
    lines = [
        "subscribers: " + ", ".join(f"{row['status']} {row['rows']:,}" for row in people),
        f"broadcast {broadcast}: "
        + ", ".join(
            f"{row['state']}{'/' + row['outcome'] if row['outcome'] else ''} {row['rows']:,}"
            for row in states
        ),
        f"{len(links)} tracked links, {clicks:,} click rows, {hours:,} click_hour rows; counted "
        f"{sum(row['clicks'] for row in links):,}, unique {sum(row['unique_clicks'] for row in links):,}, "
        f"filtered {sum(row['filtered_clicks'] for row in links):,}",
    ]
    return int(broadcast), lines, [row["token"] for row in links]


async def recorded_clicks(url: str) -> int:
    """Clicks the links' counters hold, counted or filtered."""
    connection = await asyncpg.connect(url)
    try:
        return int(await connection.fetchval("SELECT sum(clicks + filtered_clicks) FROM link"))
    finally:
        await connection.close()


# --- over HTTP ------------------------------------------------------------------------------------------


def analytics_env(url: str, port: int) -> dict[str, str]:
    """bench_console's server (channels configured, no worker) with click tracking on, behind a proxy on
    127.0.0.1 (readers are told apart by X-Forwarded-For)."""
    return serve_env(url, port) | {"JIANBAO_TRACK_LINKS": "true", "JIANBAO_TRUSTED_PROXIES": "127.0.0.1"}


def start_server(env: dict[str, str], port: int, folder: str) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [str(JIANBAO), "serve", "--port", str(port)],
        cwd=folder,
        env=env,
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


async def pages(base: str, broadcast_id: int, args: argparse.Namespace, report: Report) -> None:
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
    connector = aiohttp.TCPConnector(limit=args.clients)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(cookie_jar=jar, connector=connector, timeout=timeout) as session:
        await sign_in(session, base)
        for page in ANALYTICS_PAGES:
            path = page.format(id=broadcast_id, subscriber=SUBSCRIBER_ID)
            status, first = await _get(session, base + path)  # the first look, counted in the figure
            if status != 200:
                raise SystemExit(f"GET {path} answered {status}")
            latencies, failures = await load(session, base + path, args.requests, args.clients)
            latencies.append(first)
            report.add(Figure(f"GET {path}", latencies, FLOOR_MS, failures=failures))


async def clicks_at_rate(base: str, tokens: list[str], seconds: float, rate: float, first: int) -> Figure:
    """GET /r/{token} at `rate` a second for `seconds`, each sent at its time whether or not the earlier
    ones were answered; reader `first + n` has an address of its own and one of USER_AGENTS."""
    latencies: list[float] = []
    failures = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def click(reader: int) -> None:
            nonlocal failures
            headers = {
                "User-Agent": USER_AGENTS[reader % len(USER_AGENTS)],
                "X-Forwarded-For": f"10.{reader >> 16 & 255}.{reader >> 8 & 255}.{reader & 255}",
            }
            url = f"{base}/r/{tokens[reader % len(tokens)]}"
            started = time.perf_counter()
            async with session.get(url, headers=headers, allow_redirects=False) as response:
                await response.read()
                failures += response.status != 302
            latencies.append((time.perf_counter() - started) * 1000)

        began = time.monotonic()
        sending = []
        for n in range(round(seconds * rate)):
            await asyncio.sleep(max(0.0, began + n / rate - time.monotonic()))
            sending.append(asyncio.create_task(click(first + n)))
        await asyncio.gather(*sending)
    return Figure("", latencies, failures=failures)


async def editors_viewing(
    sessions: list[aiohttp.ClientSession], url: str, stop: asyncio.Event
) -> list[float]:
    """Each session reloading `url` every EDITOR_RELOAD_SECONDS (starts spread over the first second)
    until `stop`: the latency of every load."""
    latencies: list[float] = []

    async def editor(session: aiohttp.ClientSession, offset: float) -> None:
        await asyncio.sleep(offset)
        while not stop.is_set():
            began = time.monotonic()
            status, took = await _get(session, url)
            if status != 200:
                raise SystemExit(f"an editor's GET {url} answered {status}")
            latencies.append(took)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    stop.wait(), max(0.0, began + EDITOR_RELOAD_SECONDS - time.monotonic())
                )

    await asyncio.gather(
        *(editor(session, EDITOR_RELOAD_SECONDS * n / len(sessions)) for n, session in enumerate(sessions))
    )
    return latencies


async def redirects(
    base: str, broadcast_id: int, tokens: list[str], args: argparse.Namespace, report: Report
) -> int:
    """/r/ at --rate, nobody viewing and --editors viewing the stats page, in turn ROUNDS times: the
    clicks sent."""
    stats_url = base + STATS_PAGE.format(id=broadcast_id)
    sessions = [aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) for _ in range(args.editors)]
    viewed = f"{args.editors} editors reloading stats every {EDITOR_RELOAD_SECONDS:.0f} s"
    conditions = ("nobody viewing", viewed)
    clicks = {name: Figure("", []) for name in conditions}
    loads: list[float] = []
    sent = 0
    try:
        for session in sessions:
            await sign_in(session, base)
        for _round in range(ROUNDS):
            for name in conditions:
                stop = asyncio.Event()
                viewing = asyncio.create_task(
                    editors_viewing(sessions if name == viewed else [], stats_url, stop)
                )
                if name == viewed:
                    await asyncio.sleep(EDITOR_RELOAD_SECONDS)  # every editor viewing
                measured = await clicks_at_rate(base, tokens, args.seconds / ROUNDS, args.rate, sent)
                sent += len(measured.latencies)
                stop.set()
                loads += await viewing
                clicks[name].latencies += measured.latencies
                clicks[name].failures += measured.failures
    finally:
        for session in sessions:
            await session.close()
    for name, figure in clicks.items():
        note = (
            f"stats loads p95 {Figure('', loads).percentile(0.95):.0f} ms, n {len(loads)}"
            if name == viewed
            else ""
        )
        report.add(
            Figure(
                f"GET /r/{{token}} at {args.rate:.0f}/s, {name}",
                figure.latencies,
                failures=figure.failures,
                note=note,
            )
        )
    watched = report.figures[-1]
    missed = watched.percentile(0.99) >= REDIRECT_P99_MS
    report.failed |= missed
    report.notes.append(
        f"/r/ p99 while viewed: {watched.percentile(0.99):.2f} ms "
        f"(floor {REDIRECT_P99_MS:.0f} ms): {'MISSED' if missed else 'ok'}; "
        f"nobody viewing: {report.figures[-2].percentile(0.99):.2f} ms"
    )
    return sent


async def over_http(
    url: str, broadcast_id: int, tokens: list[str], args: argparse.Namespace, report: Report
) -> int:
    """The pages' and the redirect's figures against `jianbao serve`: the clicks sent to /r/."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as folder:
        env = analytics_env(url, port)
        await add_editor(url, env, folder)
        server = start_server(env, port, folder)
        try:
            await asyncio.sleep(1.0)
            await pages(base, broadcast_id, args, report)
            return await redirects(base, broadcast_id, tokens, args, report)
        finally:
            server.terminate()
            server.wait(timeout=60)  # serve drains requests, then writes the clicks still buffered


async def main_async(args: argparse.Namespace) -> int:
    began = time.perf_counter()
    url = _database_url(args.postgres)
    secret_key = serve_env(url, 0)["JIANBAO_SECRET_KEY"]
    if args.keep and await _complete(url):
        print(f"reusing the database {DATABASE} (--keep)")
    else:
        print(
            f"building the database {DATABASE}: {SUBSCRIBERS:,} subscribers, their deliveries, "
            f"{CLICKS:,} clicks ...",
            flush=True,
        )
        print(f"built in {await build(args.postgres, secret_key):.1f} s", flush=True)
    try:
        broadcast_id, lines, tokens = await describe(url)
        before = await recorded_clicks(url)
        for line in lines:
            print(line)
        report = Report()
        print()
        print(f"pages: {args.requests} GETs each from {args.clients} clients at once; /r/: {args.rate:.0f}/s")
        print(HEADER)
        sent = await over_http(url, broadcast_id, tokens, args, report)
        recorded = await recorded_clicks(url) - before
        lost = recorded != sent
        report.failed |= lost
        report.notes.append(
            f"clicks sent to /r/ {sent}, recorded {recorded}, lost {sent - recorded}: "
            + ("FAIL" if lost else "ok")
        )
        print()
        for note in report.notes:
            print(note)
        paged = [figure for figure in report.figures if figure.name.startswith("GET /console")]
        worst = max(paged, key=lambda figure: figure.percentile(0.95))
        print(f"analytics pages: worst p95 {worst.percentile(0.95):.1f} ms ({worst.name})")
        verdict = "FAIL" if report.failed else "ok"
        floors = f"pages p95 < {FLOOR_MS:.0f} ms, /r/ p99 < {REDIRECT_P99_MS:.0f} ms while viewed"
        print(f"floors: {floors}: {verdict}")
        print(f"total {time.perf_counter() - began:.0f} s")
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
    parser.add_argument("--requests", type=int, default=200, help="GETs of each analytics page")
    parser.add_argument("--clients", type=int, default=10, help="concurrent clients of the pages")
    parser.add_argument("--rate", type=float, default=200.0, help="GETs of /r/{token} a second")
    parser.add_argument("--seconds", type=float, default=20.0, help="of /r/ clicks per condition")
    parser.add_argument("--editors", type=int, default=5, help="editors viewing the stats page")
    args = parser.parse_args()
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
