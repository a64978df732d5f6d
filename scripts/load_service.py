"""Load test of the running service on loopback: WeChat keyword replies, the search route, /healthz.

    .venv/bin/python scripts/load_service.py [--requests 4000] [--concurrency 200]

Starts `jianbao serve` in its own process on a free 127.0.0.1 port (embedded default: SQLite with the
32 demo issues, WeChat on in compatible mode), then from this process, with one aiohttp client and a
bounded number of requests per phase:
  1. GET /healthz                       throughput (requests/s) and latency
  2. GET /search?q=<keyword>            same, with a mix of keywords
  3. POST /wechat (signed text "量化"...) latency p50/p99 at the given concurrency, every request a
     new MsgId so none is answered from the duplicate cache
Both processes share the machine's two cores, so the figures are a floor. Only loopback is used.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import aiohttp

TOKEN = "loadtesttoken"
KEYWORDS = ["量化", "剪枝", "NPU", "ncnn", "编译器", "int8", "端侧", "芯片", "模型", "蒸馏"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def signed_query(nonce: str) -> str:
    timestamp = str(int(time.time()))
    signature = hashlib.sha1("".join(sorted([TOKEN, timestamp, nonce])).encode()).hexdigest()
    return f"signature={signature}&timestamp={timestamp}&nonce={nonce}"


def text_message(number: int, keyword: str) -> str:
    return (
        "<xml><ToUserName><![CDATA[gh_jianbao]]></ToUserName>"
        f"<FromUserName><![CDATA[oLoadTest{number % 500:05d}abcdefghijklmnop]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{keyword}]]></Content><MsgId>{10**15 + number}</MsgId></xml>"
    )


async def phase(name: str, count: int, concurrency: int, make: object) -> dict[str, float]:
    latencies: list[float] = []
    failures = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(count):
        queue.put_nowait(number)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def worker() -> None:
            nonlocal failures
            while not queue.empty():
                number = queue.get_nowait()
                started = time.perf_counter()
                method, url, body = make(number)  # type: ignore[operator]
                async with session.request(method, url, data=body) as response:
                    await response.read()
                    if response.status != 200:
                        failures += 1
                latencies.append((time.perf_counter() - started) * 1000)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "name": name,  # type: ignore[dict-item]
        "requests": count,
        "failures": failures,
        "rps": count / elapsed,
        "p50": statistics.median(latencies),
        "p99": latencies[int(len(latencies) * 0.99) - 1],
    }


async def run(base: str, count: int, concurrency: int) -> list[dict[str, float]]:
    rng = random.Random(5)
    results = [
        await phase("GET /healthz", count, concurrency, lambda n: ("GET", f"{base}/healthz", None)),
        await phase(
            "GET /search",
            count,
            concurrency,
            lambda n: ("GET", f"{base}/search?q={quote(rng.choice(KEYWORDS))}", None),
        ),
        await phase(
            "POST /wechat keyword",
            count,
            concurrency,
            lambda n: (
                "POST",
                f"{base}/wechat?{signed_query(str(n))}",
                text_message(n, rng.choice(KEYWORDS)).encode(),
            ),
        ),
    ]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=200)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "JIANBAO_WECHAT_TOKEN": TOKEN, "JIANBAO_DATABASE_URL": ""}
        jianbao = str(Path(sys.executable).parent / "jianbao")
        server = subprocess.Popen(
            [jianbao, "serve", "--port", str(port)], cwd=folder, env=env, stdout=subprocess.DEVNULL
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    time.sleep(0.2)
            time.sleep(1.0)
            results = asyncio.run(run(base, args.requests, args.concurrency))
        finally:
            server.terminate()
            server.wait(timeout=10)
    print(f"{args.requests} requests per phase, {args.concurrency} concurrent, server and client on 2 cores")
    print(f"{'phase':24s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'failed':>7s}")
    for result in results:
        failed = int(result["failures"])
        figures = f"{result['rps']:8.0f} {result['p50']:8.1f} {result['p99']:8.1f} {failed:7d}"
        print(f"{result['name']:24s} {figures}")
    healthz, search = results[0]["rps"], results[1]["rps"]
    print(f"search throughput / healthz throughput = {search / healthz:.2f}")


if __name__ == "__main__":
    main()
