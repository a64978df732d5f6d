"""Load test of the running service on loopback: WeChat keyword replies, the search route, /healthz.

    .venv/bin/python scripts/load_service.py [--requests 4000] [--concurrency 200] [--tool wrk|aiohttp]

Starts `jianbao serve` in its own process on a free 127.0.0.1 port (embedded default: SQLite with the
32 demo issues, WeChat on in compatible mode), then from this process, with one aiohttp client and a
bounded number of requests per phase:
  1. GET /healthz                       throughput (requests/s) and latency
  2. GET /search?q=<keyword>            same, with a mix of keywords
  3. POST /wechat (signed text "量化"...) latency p50/p99 at the given concurrency, every request a
     new MsgId so none is answered from the duplicate cache
Both processes share the machine's two cores, so the figures are a floor. Only loopback is used.
With `--tool wrk` (Debian's wrk, the default when installed) the load comes from wrk's C client, which
leaves the server more of the machine; each phase then runs for --seconds instead of a request count,
and every WeChat message still carries its own MsgId (a Lua script numbers them per wrk thread).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import re
import shutil
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


WRK_SCRIPT = """
local thread_id = 0
local counter = 0
local keywords = {KEYWORDS}
local paths = {}
for line in io.lines(PATHS_FILE) do paths[#paths + 1] = line end
function setup(thread) thread_id = thread_id + 1; thread:set("id", thread_id) end
function request()
  counter = counter + 1
  local keyword = keywords[(counter % #keywords) + 1]
  local msgid = (id or 0) * 1000000000 + counter
  local body = "<xml><ToUserName><![CDATA[gh_jianbao]]></ToUserName><FromUserName><![CDATA[oLoadTest"
    .. string.format("%05d", counter % 500) .. "abcdefghijklmnop]]></FromUserName><CreateTime>"
    .. os.time() .. "</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[" .. keyword
    .. "]]></Content><MsgId>" .. msgid .. "</MsgId></xml>"
  return wrk.format("POST", paths[(counter % #paths) + 1], {["Content-Type"] = "text/xml"}, body)
end
"""


def wrk_phase(name: str, url: str, seconds: int, concurrency: int, script: str | None) -> dict[str, float]:
    """One wrk run; its latency percentiles and requests/s parsed from its --latency report."""
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        if script:
            lua.write(script)
    if script:
        command += ["-s", lua.name]
    done = subprocess.run([*command, url], capture_output=True, text=True, timeout=seconds + 60, check=False)
    Path(lua.name).unlink()
    if done.returncode:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    output = done.stdout

    def milliseconds(label: str) -> float:
        value = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        if value is None:
            raise SystemExit(f"wrk printed no {label} latency:\n{output}")
        return float(value.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[value.group(2)]

    requests = re.search(r"(\d+) requests in", output)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    return {
        "name": name,  # type: ignore[dict-item]
        "requests": float(requests.group(1)) if requests else 0.0,
        "failures": float(errors.group(1)) if errors else 0.0,
        "rps": float(rate.group(1)) if rate else 0.0,
        "p50": milliseconds("50%"),
        "p99": milliseconds("99%"),
    }


# The service refuses a signed (timestamp, nonce) pair seen before with another body (a replay), and
# remembers up to 120,000 pairs: each request gets a pair of its own, from this many signed paths.
WRK_SIGNED_PATHS = 110_000


def run_wrk(base: str, seconds: int, concurrency: int) -> list[dict[str, float]]:
    timestamp = str(int(time.time()))
    with tempfile.NamedTemporaryFile("w", suffix=".paths", delete=False) as paths:
        for index in range(WRK_SIGNED_PATHS):
            nonce = f"load{index}"
            signature = hashlib.sha1("".join(sorted([TOKEN, timestamp, nonce])).encode()).hexdigest()
            paths.write(f"/wechat?signature={signature}&timestamp={timestamp}&nonce={nonce}\n")
    keywords = "{" + ", ".join(f'"{word}"' for word in KEYWORDS) + "}"
    script = WRK_SCRIPT.replace("{KEYWORDS}", keywords).replace("PATHS_FILE", f'"{paths.name}"')
    quoted = "{" + ", ".join(f'"{quote(word)}"' for word in KEYWORDS) + "}"
    search_script = (
        "local keywords = " + quoted + "\nlocal n = 0\nfunction request() n = n + 1\n"
        ' return wrk.format("GET", "/search?q=" .. keywords[(n % #keywords) + 1]) end\n'
    )
    return [
        wrk_phase("GET /healthz", f"{base}/healthz", seconds, concurrency, None),
        wrk_phase("GET /search", f"{base}/search", seconds, concurrency, search_script),
        wrk_phase("POST /wechat keyword", f"{base}/wechat", seconds, concurrency, script),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=10, help="with wrk: how long each phase runs")
    parser.add_argument("--workers", type=int, default=1, help="server processes (jianbao serve --workers)")
    default_tool = "wrk" if shutil.which("wrk") else "aiohttp"
    parser.add_argument("--tool", choices=["wrk", "aiohttp"], default=default_tool)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "JIANBAO_WECHAT_TOKEN": TOKEN, "JIANBAO_DATABASE_URL": ""}
        jianbao = str(Path(sys.executable).parent / "jianbao")
        server = subprocess.Popen(
            [jianbao, "serve", "--port", str(port), "--workers", str(args.workers)],
            cwd=folder,
            env=env,
            stdout=subprocess.DEVNULL,
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
            if args.tool == "wrk":
                results = run_wrk(base, args.seconds, args.concurrency)
            else:
                results = asyncio.run(run(base, args.requests, args.concurrency))
        finally:
            server.terminate()
            server.wait(timeout=10)
    amount = f"{args.seconds} s" if args.tool == "wrk" else f"{args.requests} requests"
    print(
        f"{args.tool}: {amount} per phase, {args.concurrency} concurrent, {args.workers} server process(es); "
        "server and client share 2 cores"
    )
    print(f"{'phase':24s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'failed':>7s}")
    for result in results:
        failed = int(result["failures"])
        figures = f"{result['rps']:8.0f} {result['p50']:8.1f} {result['p99']:8.1f} {failed:7d}"
        print(f"{result['name']:24s} {figures}")
    healthz, search = results[0]["rps"], results[1]["rps"]
    print(f"search throughput / healthz throughput = {search / healthz:.2f}")


if __name__ == "__main__":
    main()
