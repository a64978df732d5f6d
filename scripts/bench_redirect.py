"""Latency of the click-tracking redirect, GET /r/{token}, under concurrency, against `jianbao serve`.

    .venv/bin/python scripts/bench_redirect.py [--requests 20000] [--concurrency 4] [--links 100]
                                               [--database sqlite|postgres] [--workers 1]

Stores --links tracking links of one issue in a new database (a SQLite file, or a new database on the
local PostgreSQL: JIANBAO_TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/test, dropped
afterwards), starts `jianbao serve` on it on a free loopback port as scripts/load_service.py does, then
measures /healthz (the floor of this client on this machine) and /r/{token} with one aiohttp client.
Every user agent clicks twice, so half the clicks are repeats. After the server has stopped (which writes
the clicks still buffered), it checks the figures: counted = unique = requests / 2, filtered = requests / 2.
The target of the issue "After the send" is /r/ p99 under 5 ms; client and server share the machine's
cores, so the figures are a ceiling of the server's own latency.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from load_service import database_url, free_port, percentiles

from channels.links import tracking_token
from storage.clicks import ClickStore
from storage.database import Database
from storage.links import LinkStore

SECRET_KEY = "bench-redirect-secret-key-0123456789abcdef"
DAY = dt.date(2026, 12, 4)
# The floor for the redirect while the analytics are viewed.
REDIRECT_P99_MS = 5.0


async def store_links(url: str, count: int) -> list[str]:
    links = [(tracking_token(SECRET_KEY.encode(), "email", DAY, u), u) for u in _urls(count)]
    async with Database(url) as database:
        await database.migrate()
        await LinkStore(database).remember("email", DAY, links)
    return [token for token, _ in links]


def _urls(count: int) -> list[str]:
    return [f"https://example.com/article/{n}" for n in range(count)]


async def measure(base: str, paths: list[str], concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    failures = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(len(paths)):
        queue.put_nowait(number)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal failures
            while not queue.empty():
                number = queue.get_nowait()
                # Each agent clicks twice: requests n and n + 1 (n even) share one.
                headers = {"User-Agent": f"Mozilla/5.0 (bench) Firefox/{number // 2}"}
                started = time.perf_counter()
                async with session.get(
                    base + paths[number], allow_redirects=False, headers=headers
                ) as answer:
                    await answer.read()
                    failures += answer.status not in (200, 302)
                latencies.append((time.perf_counter() - started) * 1000)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return {
        "requests": len(paths),
        "failures": failures,
        "rps": len(paths) / elapsed,
        **percentiles(latencies),
    }


async def figures(url: str) -> tuple[int, int, int]:
    async with Database(url) as database:
        stats = await ClickStore(database).link_stats(DAY)
    return (
        sum(s.clicks for s in stats),
        sum(s.unique_clicks for s in stats),
        sum(s.filtered_clicks for s in stats),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20_000)
    # Few in flight: beyond the cores, latency measures this client's queue, not the redirect.
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--links", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    requests = args.requests - args.requests % 2
    port = free_port()
    with tempfile.TemporaryDirectory() as folder, database_url(args.database) as postgres:
        url = postgres.replace("postgresql://", "postgresql+asyncpg://", 1) if postgres else ""
        url = url or f"sqlite:///{Path(folder) / 'bench.db'}"
        tokens = asyncio.run(store_links(url, args.links))
        env = {**os.environ, "JIANBAO_DATABASE_URL": url, "JIANBAO_SECRET_KEY": SECRET_KEY}
        server = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "jianbao"),
                "serve",
                "--port",
                str(port),
                "--workers",
                str(args.workers),
            ],
            cwd=folder,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_for(base)
            healthz = asyncio.run(measure(base, ["/healthz"] * requests, args.concurrency))
            # Both clicks of one agent go to the same link, one after the other in the queue.
            paths = [f"/r/{tokens[(n // 2) % len(tokens)]}" for n in range(requests)]
            redirect = asyncio.run(measure(base, paths, args.concurrency))
        finally:
            server.terminate()
            server.wait(timeout=60)  # serve drains, then writes the clicks still buffered
        counted = asyncio.run(figures(url))
    print(
        f"{requests} requests per phase, {args.concurrency} concurrent, "
        f"{args.workers} worker(s), {args.database}"
    )
    for name, result in (("GET /healthz", healthz), ("GET /r/{token}", redirect)):
        print(
            f"{name:16} {result['rps']:8.0f} req/s  p50 {result['p50']:6.2f} ms  "
            f"p99 {result['p99']:6.2f} ms  max {result['max']:7.2f} ms  failures {int(result['failures'])}"
        )
    verdict = "ok" if redirect["p99"] < REDIRECT_P99_MS else "over"
    print(
        f"/r/ p99 {redirect['p99']:.2f} ms against {REDIRECT_P99_MS} ms: {verdict} (client on the same cores)"
    )
    expected = (requests // 2, requests // 2, requests // 2)
    check = "ok" if counted == expected else "FAIL"
    print(f"clicks, unique, filtered = {counted}; expected {expected}: {check}")


def _wait_for(base: str) -> None:
    async def ready() -> bool:
        try:
            async with aiohttp.ClientSession() as session, session.get(base + "/readyz") as answer:
                return answer.status == 200
        except aiohttp.ClientError:
            return False

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if asyncio.run(ready()):
            return
        time.sleep(0.2)
    raise SystemExit("the service did not start within 60 s")


if __name__ == "__main__":
    main()
