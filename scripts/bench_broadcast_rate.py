"""Does a broadcast keep to Telegram's flood limits at full speed? Several workers against a fake Bot API
that answers 429 whenever more than 30 messages are accepted in any trailing second, or two messages to
one chat come within a second.

    .venv/bin/python scripts/bench_broadcast_rate.py [--chats 5000] [--workers 3] [--issue-date 2020-07-02]

Creates a PostgreSQL database of its own (on the server of --postgres; dropped at the end), imports a
one-message issue (tests/bot/helpers.py minimal_issue; or the demo issue of --issue-date, which renders
as several messages, to exercise the 1 s per chat rule too), adds --chats Telegram subscribers, starts
`python -m tests.fakes.serve telegram --rate-limit --no-validate --no-record` in a process of its own,
runs `jianbao broadcast send`, then --workers `jianbao worker --until-done` processes at once, with the
rate limits on as deployed (JIANBAO_TELEGRAM_RATE --rate, default 30/s shared by all workers through
PostgreSQL; JIANBAO_TELEGRAM_CHAT_INTERVAL --chat-interval, default 1 s).

Prints the messages the fake accepted, the 429s it answered, duplicates, the achieved rate over the
whole run (messages / (last accept - first accept)) and over its steady middle (from 10% to 90% of the
messages, by the fake's counters read every 2 s during the run), both also as % of the fake's 30/s
(the Done-when asks >= 95% and zero 429s), and the wall time of the workers. One one-message delivery
per chat keeps 5,000 chats at about 170 s. Exits 1 on a 429, a lost or repeated
message, or a whole-run rate below 95%.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_broadcast import (
    DEFAULT_POSTGRES,
    JIANBAO,
    bench_database,
    broadcast_send,
    fake_telegram,
    issue_file,
    jianbao_env,
    prepare,
    table_counts,
)

from bot.rendering import Renderer
from bot.settings import Settings
from channels.telegram import render_telegram
from content.parser import parse_issue
from content.source import read_issue_file
from tests.fakes.telegram_rules import MESSAGES_PER_SECOND

SAMPLE_SECONDS = 2.0  # how often the fake's counters are read during the run


def run_workers(env: dict[str, str], cwd: Path, workers: int) -> tuple[float, list[str]]:
    """`jianbao worker --until-done` × workers, started together; wall time and their last stderr lines."""
    started = time.perf_counter()
    logs = [cwd / f"worker-{number}.log" for number in range(workers)]
    processes = []
    for log in logs:
        with log.open("w") as stderr:
            processes.append(
                subprocess.Popen([str(JIANBAO), "worker", "--until-done"], cwd=cwd, env=env, stderr=stderr)
            )
    for process in processes:
        process.wait()
    wall = time.perf_counter() - started
    lines = []
    for process, log in zip(processes, logs, strict=True):
        text = log.read_text().strip()
        if process.returncode != 0:
            sys.stderr.write(text + "\n")
            raise SystemExit(f"a worker exited {process.returncode}")
        lines.append(text.splitlines()[-1] if text else "")
    return wall, lines


def steady_rate(samples: list[tuple[float, int]], expected: int) -> float:
    """Messages a second between the samples (time, accepted) at 10% and 90% of the run's messages."""
    low = next(((t, n) for t, n in samples if n >= expected // 10), None)
    high = next(((t, n) for t, n in reversed(samples) if n <= expected * 9 // 10), None)
    if low is None or high is None or high[0] <= low[0]:
        return 0.0
    return (high[1] - low[1]) / (high[0] - low[0])


async def bench(args: argparse.Namespace) -> int:
    allowed = float(MESSAGES_PER_SECOND)
    with tempfile.TemporaryDirectory() as tmp:
        issue, date = issue_file(Path(tmp), args.issue_date)
        renderer = Renderer(Settings(_env_file=None))
        parts = len(
            render_telegram(renderer.document(parse_issue(read_issue_file(issue)), "telegram")).messages
        )
        print(
            f"rate: {args.chats:,} chats × {parts} message(s) of {date}, {args.workers} workers, "
            f"limits {args.rate}/s and {args.chat_interval} s per chat; the fake allows {allowed:.0f}/s"
        )
        async with bench_database(args.postgres, "jianbao_bench_rate", keep=args.keep) as url:
            await prepare(url, issue, args.chats)
            with fake_telegram("--rate-limit", "--no-validate", "--no-record") as fake:
                env = jianbao_env(
                    url,
                    fake.url,
                    rate_limits=True,
                    telegram_rate=args.rate,
                    telegram_chat_interval=args.chat_interval,
                    worker_concurrency=args.concurrency,
                )
                await asyncio.to_thread(broadcast_send, env, date, Path(tmp))
                running = asyncio.ensure_future(asyncio.to_thread(run_workers, env, Path(tmp), args.workers))
                samples: list[tuple[float, int]] = []
                while not running.done():
                    accepted_now = (await asyncio.to_thread(fake.stats))["accepted"]
                    samples.append((time.monotonic(), int(accepted_now)))
                    await asyncio.wait({running}, timeout=SAMPLE_SECONDS)
                wall, lines = running.result()
                stats = fake.stats()
            states = dict(
                map(tuple, await table_counts(url, "SELECT state, count(*) FROM delivery GROUP BY state"))
            )
    for line in lines:
        print(f"  {line}")
    accepted = int(stats["accepted"])
    throttled = int(stats["throttled"])
    span = (stats["last_accept"] or 0.0) - (stats["first_accept"] or 0.0)
    whole = (accepted - 1) / span if span > 0 else 0.0
    expected = args.chats * parts
    middle = steady_rate(samples, expected)
    per_chat_ok = (
        all(count == parts for _, count in stats["delivered"]) and len(stats["delivered"]) == args.chats
    )
    print(f"delivery states: {states}")
    print(
        f"messages accepted {accepted:,} of {expected:,} · 429s answered {throttled} · "
        f"duplicates {stats['duplicates']} · errors {stats['errors']} · "
        f"every chat got all parts: {per_chat_ok}"
    )
    print(
        f"achieved rate: whole run {whole:.2f}/s ({whole / allowed:.1%} of {allowed:.0f}/s) "
        f"over {span:.1f} s; steady middle {middle:.2f}/s ({middle / allowed:.1%})"
    )
    print(f"wall time of the workers: {wall:.1f} s")
    ok = (
        throttled == 0
        and accepted == expected
        and stats["duplicates"] == 0
        and per_chat_ok
        and whole >= 0.95 * allowed
    )
    print("PASS" if ok else "FAIL", "(>= 95% of the allowed rate, no 429, every message once)")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="a URL of the PostgreSQL server to use")
    parser.add_argument("--chats", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--issue-date", default=None, help="send this demo issue (several messages) instead")
    parser.add_argument("--rate", type=float, default=30.0, help="JIANBAO_TELEGRAM_RATE of the workers")
    parser.add_argument("--chat-interval", type=float, default=1.0, help="JIANBAO_TELEGRAM_CHAT_INTERVAL")
    parser.add_argument("--concurrency", type=int, default=64, help="JIANBAO_WORKER_CONCURRENCY")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    return asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
