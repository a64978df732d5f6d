"""Throughput and memory of the broadcast engine against the fake Bot API, on PostgreSQL.

    .venv/bin/python scripts/bench_broadcast.py [--deliveries 100000] [--concurrency 64 ...]
    .venv/bin/python scripts/bench_broadcast.py --memory [--subscribers 1000000] [--memory-seconds 120]

Both modes create a PostgreSQL database of their own (on the server of --postgres, default
JIANBAO_TEST_POSTGRES_URL or postgresql://postgres@127.0.0.1:5432/test; dropped at the end, --keep keeps
it), import a one-message issue (tests/bot/helpers.py minimal_issue), insert the Telegram subscribers
with one INSERT ... SELECT generate_series, and start the fake Bot API in a process of its own
(`python -m tests.fakes.serve telegram --no-validate --no-record`, no rate limits), so the fake's work is
not on the sender's event loop.

Throughput (default): for each --concurrency C, in this one process and against the same fake, after
`jianbao broadcast send` (a subprocess; its time and peak RSS are printed apart), --rounds alternating
rounds (default 4) of N / rounds deliveries per side, so that a drift of the machine's load evens out:
  bare  the same TelegramSender (channels/telegram/transport.py) pushing one pre-rendered TelegramMessage
        to the chat ids from C tasks, recording nothing;
  full  one in-process BroadcastWorker (bot.broadcast.runtime.open_worker, rate limits off,
        worker_concurrency C) until it has sent its share (or, the last round, until nothing is left):
        claim, payload cache, send over HTTP to loopback, each result recorded (group commit) before
        the delivery gives its place to the next;
and prints each round, the totals in deliveries/s (with the CPU this process spent per delivery) and
full / bare (the Done-when asks >= 70%).

--memory: --subscribers (default 1,000,000) subscribers, `jianbao broadcast send` with its wall time and
peak RSS (ru_maxrss of that process, from wait4), then a `jianbao worker --until-done` subprocess (rate
limits off) run for --memory-seconds (0: until done), its VmRSS sampled every 10 s with the deliveries
made so far, its VmHWM polled from /proc/PID/status and its ru_maxrss read at exit; prints the
deliveries it made, their rate and the peak RSS in MB (the Done-when asks < 150 MB).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from bot.broadcast.runtime import open_worker
from bot.importing import import_paths
from bot.rendering import Renderer
from bot.settings import Settings
from channels.base import PushStatus
from channels.telegram import render_telegram
from channels.telegram.payload import TelegramMessage
from channels.telegram.transport import TelegramSender
from content.parser import parse_issue
from content.source import read_issue_file
from storage.database import Database
from storage.issues import IssueStore
from tests.bot.helpers import DEMO_DIR, minimal_issue
from tests.fakes.telegram_api import TOKEN

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
JIANBAO = ROOT / ".venv" / "bin" / "jianbao"
DEFAULT_POSTGRES = os.environ.get("JIANBAO_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test"
BENCH_DATE = "2030-01-01"  # the one-message issue's date
FIRST_CHAT = 100_000


# --- shared with scripts/bench_broadcast_rate.py --------------------------------------------------------


def _server_url(base: str) -> str:
    return make_url(base).set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def bench_database(base: str, prefix: str, *, keep: bool = False) -> AsyncIterator[str]:
    """A new database on the server of `base` (its URL), dropped on exit unless `keep`."""
    server = _server_url(base)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        if keep:
            print(f"kept database {name}")
        else:
            admin = await asyncpg.connect(server)
            try:
                await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            finally:
                await admin.close()


def issue_file(folder: Path, issue_date: str | None) -> tuple[Path, str]:
    """The issue to send: a demo issue (multi-message) or the one-message minimal issue; (file, date)."""
    if issue_date:
        return DEMO_DIR / f"{issue_date}.md", issue_date
    path = folder / f"{BENCH_DATE}.md"
    path.write_text(minimal_issue(BENCH_DATE), encoding="utf-8")
    return path, BENCH_DATE


async def prepare(url: str, issue: Path, chats: int, topics: Sequence[str] = ("[]",)) -> float:
    """Migrate, import `issue` and add `chats` active Telegram subscribers; seconds it took. `topics`:
    JSON topic lists, chat g getting the (g mod len)-th, so every list has readers spread over the id
    order the worker claims in (scripts/bench_topics.py)."""
    started = time.perf_counter()
    async with Database(url) as database:
        await database.migrate()
        report = await import_paths([issue], IssueStore(database))
        if report.failed:
            raise SystemExit(f"cannot import {issue}: {report.failed}")
    connection = await asyncpg.connect(_server_url(url))
    try:
        await connection.execute(
            """
            INSERT INTO subscriber (channel, address, address_key, status, topics, created_at, bounces)
            SELECT 'telegram', g::text, g::text, 'active',
                   ($3::text[])[1 + g % cardinality($3::text[])]::json, now(), 0
            FROM generate_series($1::bigint, $2::bigint) AS g
            """,
            FIRST_CHAT,
            FIRST_CHAT + chats - 1,
            list(topics),
        )
        await connection.execute("ANALYZE subscriber")
    finally:
        await connection.close()
    return time.perf_counter() - started


async def table_counts(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(_server_url(url))
    try:
        return list(await connection.fetch(sql, *args))
    finally:
        await connection.close()


@dataclass
class FakeTelegramProcess:
    process: subprocess.Popen[str]
    url: str

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_fake/stats", timeout=30) as response:
            data: dict[str, Any] = json.load(response)
        return data


@contextlib.contextmanager
def fake_telegram(*options: str) -> Iterator[FakeTelegramProcess]:
    """`python -m tests.fakes.serve telegram --port 0 OPTIONS` in its own process, until the block ends."""
    process = subprocess.Popen(
        [str(PYTHON), "-m", "tests.fakes.serve", "telegram", "--port", "0", *options],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith("ready "):
            raise SystemExit(f"the fake Bot API did not start: {line!r}")
        yield FakeTelegramProcess(process, line.split()[1])
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def jianbao_env(database_url: str, api_url: str, **settings: object) -> dict[str, str]:
    """The environment of a `jianbao` subprocess: this database and fake, plus JIANBAO_<NAME> settings."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("JIANBAO_")}
    env |= {
        "JIANBAO_DATABASE_URL": database_url,
        "JIANBAO_TELEGRAM_TOKEN": TOKEN,
        "JIANBAO_TELEGRAM_API_URL": api_url,
        "PTB_TIMEDELTA": "1",
    }
    env |= {
        f"JIANBAO_{name.upper()}": str(value).lower() if isinstance(value, bool) else str(value)
        for name, value in settings.items()
    }
    return env


@dataclass
class Finished:
    seconds: float
    max_rss_mb: float  # ru_maxrss of the process, from wait4
    returncode: int


def wait_child(process: subprocess.Popen[Any], started: float) -> Finished:
    """Reap a child with wait4, which gives its own peak RSS (not the maximum over all children)."""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return Finished(time.perf_counter() - started, usage.ru_maxrss / 1024, process.returncode)


def broadcast_send(env: dict[str, str], date: str, cwd: Path) -> Finished:
    """`jianbao broadcast send DATE --channel telegram`; its time and peak RSS."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(JIANBAO), "broadcast", "send", date, "--channel", "telegram"], cwd=cwd, env=env, text=True
    )
    finished = wait_child(process, started)
    if finished.returncode != 0:
        raise SystemExit(f"jianbao broadcast send exited {finished.returncode}")
    return finished


def proc_status_mb(pid: int, field: str) -> float | None:
    """A size field of a running process's /proc status (VmHWM: peak RSS, VmRSS: RSS now), MB; None
    once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


# --- throughput -----------------------------------------------------------------------------------------


async def bare_loop(
    sender: TelegramSender, message: TelegramMessage, chats: Sequence[int], tasks: int
) -> int:
    """Push `message` to every chat from `tasks` concurrent tasks; the number accepted."""
    pending = iter(chats)
    sent = 0

    async def run() -> None:
        nonlocal sent
        for chat in pending:
            pushed = await sender.push(str(chat), message)
            if pushed.status == PushStatus.SENT:
                sent += 1

    await asyncio.gather(*(run() for _ in range(tasks)))
    return sent


@dataclass
class Timing:
    seconds: float  # wall
    cpu: float  # CPU seconds of this process (not of the fake or PostgreSQL)
    count: int  # deliveries

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    @property
    def cpu_ms(self) -> float:
        return self.cpu / self.count * 1000


async def timed_bare(
    settings: Settings, message: TelegramMessage, chats: Sequence[int], tasks: int
) -> Timing:
    sender = TelegramSender(settings.telegram_token, settings.telegram_api_url, connections=tasks)
    await sender.start()
    try:
        started, cpu = time.perf_counter(), time.process_time()
        sent = await bare_loop(sender, message, chats, tasks)
        timing = Timing(time.perf_counter() - started, time.process_time() - cpu, len(chats))
    finally:
        await sender.close()
    if sent != len(chats):
        raise SystemExit(f"bare loop: only {sent} of {len(chats)} accepted")
    return timing


async def timed_full(settings: Settings, database: Database, until: int | None) -> Timing:
    """One in-process worker until it has sent `until` deliveries (it then stops claiming and finishes
    what it holds), or with None until nothing is left; timed from its first claim (senders are open)."""
    async with open_worker(settings, database) as parts:
        worker = parts.worker
        stop = asyncio.Event()

        async def watch(target: int) -> None:
            while True:  # worker.sent is a plain counter: look at it often
                await asyncio.sleep(0.005)
                if worker.sent >= target:
                    stop.set()
                    return

        watcher = asyncio.create_task(watch(until)) if until is not None else None
        started, cpu = time.perf_counter(), time.process_time()
        await worker.run(stop, until_idle=until is None)
        timing = Timing(time.perf_counter() - started, time.process_time() - cpu, worker.sent)
        if watcher is not None:
            watcher.cancel()
        return timing


def add(total: Timing | None, part: Timing) -> Timing:
    if total is None:
        return part
    return Timing(total.seconds + part.seconds, total.cpu + part.cpu, total.count + part.count)


def render_message(issue: Path, settings: Settings) -> TelegramMessage:
    messages = render_telegram(
        Renderer(settings).document(parse_issue(read_issue_file(issue)), "telegram")
    ).messages
    if len(messages) != 1:
        raise SystemExit(f"the benchmark issue renders as {len(messages)} messages, not 1")
    return messages[0]


async def throughput(args: argparse.Namespace) -> None:
    n, rounds = args.deliveries, args.rounds
    print(
        f"throughput: {n:,} deliveries per side in {rounds} alternating rounds, "
        f"concurrency {', '.join(map(str, args.concurrency))}"
    )
    with tempfile.TemporaryDirectory() as tmp, fake_telegram("--no-validate", "--no-record") as fake:
        issue, date = issue_file(Path(tmp), None)
        chats = list(range(FIRST_CHAT, FIRST_CHAT + n))
        for concurrency in args.concurrency:
            async with bench_database(args.postgres, "jianbao_bench", keep=args.keep) as url:
                took = await prepare(url, issue, n)
                settings = Settings(
                    _env_file=None,
                    database_url=url,
                    telegram_token=TOKEN,
                    telegram_api_url=fake.url,
                    rate_limits=False,
                    worker_concurrency=concurrency,
                )
                message = render_message(issue, settings)
                env = jianbao_env(url, fake.url, rate_limits=False, worker_concurrency=concurrency)
                start = await asyncio.to_thread(broadcast_send, env, date, Path(tmp))
                print(
                    f"C={concurrency}: setup {took:.1f} s · broadcast send {start.seconds:.1f} s "
                    f"(peak RSS {start.max_rss_mb:.0f} MB)"
                )
                before = fake.stats()["accepted"]
                bare: Timing | None = None
                full: Timing | None = None
                async with Database(url) as database:
                    for number in range(rounds):
                        chunk = chats[number * n // rounds : (number + 1) * n // rounds]
                        target = None if number == rounds - 1 else len(chunk)  # a new worker each round
                        # Alternate which side goes first, so that a drift of the machine's load evens out.
                        for side in ("bare", "full") if number % 2 == 0 else ("full", "bare"):
                            if side == "bare":
                                part = await timed_bare(settings, message, chunk, concurrency)
                                bare = add(bare, part)
                            else:
                                part = await timed_full(settings, database, target)
                                full = add(full, part)
                            print(
                                f"  round {number + 1} {side}: {part.count:7,} in {part.seconds:6.1f} s "
                                f"= {part.rate:5,.0f}/s, CPU {part.cpu_ms:.2f} ms/delivery in this process"
                            )
                accepted = fake.stats()["accepted"] - before
                states = dict(
                    map(tuple, await table_counts(url, "SELECT state, count(*) FROM delivery GROUP BY state"))
                )
            assert bare is not None
            assert full is not None
            if accepted != 2 * n or full.count != n or states != {"sent": n}:
                raise SystemExit(
                    f"expected {2 * n} accepted, {n} sent; got {accepted}, {full.count}, {states}"
                )
            for name, timing in (("bare loop", bare), ("full path", full)):
                print(
                    f"  {name}: {timing.count:,} in {timing.seconds:.1f} s = {timing.rate:,.0f}/s "
                    f"(CPU {timing.cpu_ms:.2f} ms/delivery in this process)"
                )
            print(f"  full path / bare loop = {full.rate / bare.rate:.0%}")


# --- memory ---------------------------------------------------------------------------------------------


async def memory(args: argparse.Namespace) -> None:
    n = args.subscribers
    span = f"for {args.memory_seconds:g} s" if args.memory_seconds else "until done"
    print(f"memory: {n:,} subscribers, worker {span}")
    with tempfile.TemporaryDirectory() as tmp:
        issue, date = issue_file(Path(tmp), None)
        async with bench_database(args.postgres, "jianbao_bench_mem", keep=args.keep) as url:
            took = await prepare(url, issue, n)
            print(f"setup (migrate, import, {n:,} subscribers): {took:.1f} s")
            with fake_telegram("--no-validate", "--no-record") as fake:
                env = jianbao_env(url, fake.url, rate_limits=False)
                start = await asyncio.to_thread(broadcast_send, env, date, Path(tmp))
                print(f"broadcast send: {start.seconds:.1f} s, peak RSS {start.max_rss_mb:.0f} MB")
                worker = await asyncio.to_thread(
                    run_worker_for, env, Path(tmp), args.memory_seconds, lambda: int(fake.stats()["accepted"])
                )
                accepted = fake.stats()["accepted"]
            rows = await table_counts(url, "SELECT state, count(*) FROM delivery GROUP BY state")
        rate = accepted / worker.seconds
        print(
            f"worker: {accepted:,} deliveries in {worker.seconds:.1f} s ({rate:,.0f}/s), "
            f"peak RSS {worker.max_rss_mb:.0f} MB (VmHWM polled {worker.polled_mb:.0f} MB)"
        )
        print(
            "worker RSS over time: "
            + ", ".join(f"{at:.0f} s {rss:.0f} MB ({done:,} sent)" for at, rss, done in worker.samples)
        )
        print(f"delivery states: {dict(map(tuple, rows))}")


SAMPLE_SECONDS = 10.0


@dataclass
class WorkerRun:
    seconds: float
    max_rss_mb: float
    polled_mb: float
    samples: list[tuple[float, float, int]]  # (seconds since start, VmRSS MB, deliveries so far)


def run_worker_for(env: dict[str, str], cwd: Path, seconds: float, delivered: Callable[[], int]) -> WorkerRun:
    """`jianbao worker --until-done` for `seconds` (0: until done), its peak RSS polled and at exit, and
    its RSS every SAMPLE_SECONDS with `delivered()` (deliveries so far)."""
    started = time.perf_counter()
    process = subprocess.Popen([str(JIANBAO), "worker", "--until-done"], cwd=cwd, env=env, text=True)
    polled = 0.0
    stopped = False
    samples: list[tuple[float, float, int]] = []
    while True:
        hwm = proc_status_mb(process.pid, "VmHWM")
        if hwm is not None:
            polled = max(polled, hwm)
        elapsed = time.perf_counter() - started
        if elapsed >= SAMPLE_SECONDS * (len(samples) + 1):
            rss = proc_status_mb(process.pid, "VmRSS")
            if rss is not None:
                samples.append((elapsed, rss, delivered()))
        # The child is not reaped yet: poll() would reap it and lose its rusage, so look at /proc.
        state = Path(f"/proc/{process.pid}/stat").read_text().split(") ", 1)[1][0]
        if state == "Z":
            break
        if seconds and not stopped and elapsed > seconds:
            process.send_signal(signal.SIGTERM)  # the worker finishes what it holds, records, exits
            stopped = True
        time.sleep(0.2)
    finished = wait_child(process, started)
    return WorkerRun(finished.seconds, finished.max_rss_mb, polled, samples)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="a URL of the PostgreSQL server to use")
    parser.add_argument("--deliveries", type=int, default=100_000)
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[Settings.model_fields["worker_concurrency"].default]
    )
    parser.add_argument("--rounds", type=int, default=4, help="alternating bare/full rounds")
    parser.add_argument("--memory", action="store_true", help="the memory run instead of throughput")
    parser.add_argument("--subscribers", type=int, default=1_000_000, help="of the memory run")
    parser.add_argument("--memory-seconds", type=float, default=120.0, help="worker run time; 0: until done")
    parser.add_argument("--keep", action="store_true", help="keep the database(s)")
    args = parser.parse_args()
    asyncio.run(memory(args) if args.memory else throughput(args))


if __name__ == "__main__":
    main()
