"""Load test of the running service on loopback: WeChat keyword replies, the search route, /healthz.

    .venv/bin/python scripts/load_service.py [--requests 4000] [--concurrency 200] [--tool wrk|aiohttp]

Starts `jianbao serve` in its own process on a free 127.0.0.1 port (embedded default: SQLite with the
32 demo issues, WeChat on in compatible mode), then from this process, with one aiohttp client and a
bounded number of requests per phase:
  1. GET /healthz                       throughput (requests/s) and latency
  2. GET /search?q=<keyword>            same, with a mix of keywords
  3. POST /wechat (signed text "量化"...) latency p50/p99 at the given concurrency, every request a
     new MsgId so none is answered from the duplicate cache
  4. the burst after a broadcast (`--burst`, default 3000 messages from 1500 distinct followers, 200 in
     flight): each follower's first message opens WeChat's 48 h window, so it is the reply path with the
     "last seen" notes; one message in 20 is 订阅 or 退订, which must be durable. It prints the keyword
     replies' p50/p99/max and how many took 1 s or more, the commands' p99/max against the 4 s reply
     deadline, and the floor: keyword p99 under max(50 ms, 4 x /healthz p99 of the same run).
`--database postgres` runs the service on a new database of the local PostgreSQL
(JIANBAO_TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/test), dropped afterwards.
Both processes share the machine's two cores, so the figures are a floor. Only loopback is used.
With `--tool wrk` (Debian's wrk, the default when installed) the load comes from wrk's C client, which
leaves the server more of the machine; each phase then runs for --seconds instead of a request count,
and every WeChat message still carries its own MsgId (a Lua script numbers them per wrk thread).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import aiohttp

TOKEN = "loadtesttoken"
KEYWORDS = ["量化", "剪枝", "NPU", "ncnn", "编译器", "int8", "端侧", "芯片", "模型", "蒸馏"]
COMMANDS = ["订阅", "退订"]
# WeChat waits 5 s for a passive reply; the service answers "success" at 4 s and sends the reply later.
REPLY_DEADLINE_MS = 4000
KEYWORD_FLOOR_MS = 50.0  # or 4x /healthz's p99 of the same run, whichever is larger


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def signed_query(nonce: str) -> str:
    timestamp = str(int(time.time()))
    signature = hashlib.sha1("".join(sorted([TOKEN, timestamp, nonce])).encode()).hexdigest()
    return f"signature={signature}&timestamp={timestamp}&nonce={nonce}"


def reader(number: int) -> str:
    return f"oLoadTest{number:05d}abcdefghijklmnop"  # 28 characters, as openids are


def text_message(number: int, keyword: str, *, openid: str | None = None) -> str:
    return (
        "<xml><ToUserName><![CDATA[gh_jianbao]]></ToUserName>"
        f"<FromUserName><![CDATA[{openid or reader(number % 500)}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{keyword}]]></Content><MsgId>{10**15 + number}</MsgId></xml>"
    )


def follow_event(openid: str) -> str:
    return (
        "<xml><ToUserName><![CDATA[gh_jianbao]]></ToUserName>"
        f"<FromUserName><![CDATA[{openid}]]></FromUserName><CreateTime>{int(time.time())}</CreateTime>"
        "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event></xml>"
    )


async def phase(
    name: str, count: int, concurrency: int, make: object, *, kinds: object = None
) -> dict[str, float]:
    """`count` requests made by `make(number)`, `concurrency` at a time. With `kinds(number)` (a label per
    request), latencies are also kept per label, as "<label>:p99" etc."""
    latencies: list[float] = []
    labelled: dict[str, list[float]] = {}
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
                took = (time.perf_counter() - started) * 1000
                latencies.append(took)
                if kinds is not None:
                    labelled.setdefault(kinds(number), []).append(took)  # type: ignore[operator]

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    figures = {
        "name": name,  # type: ignore[dict-item]
        "requests": count,
        "failures": failures,
        "rps": count / elapsed,
        **percentiles(latencies),
    }
    for label, values in labelled.items():
        figures |= {f"{label}:{key}": value for key, value in percentiles(values).items()}
    return figures


def percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50": statistics.median(ordered),
        "p99": ordered[max(0, int(len(ordered) * 0.99) - 1)],
        "max": ordered[-1],
        "count": len(ordered),
        "over_1s": sum(1 for value in ordered if value >= 1000),
    }


async def burst(base: str, messages: int, readers: int, concurrency: int) -> list[dict[str, float]]:
    """`readers` followers (they follow first, unmeasured), then `messages` texts from them in a random
    order, each follower's first among them opening the 48 h window: keywords, and one in 20 a command.
    Before it, /healthz by the same client at the same concurrency: the burst's floor is relative to that
    (wrk's /healthz figures come from a faster client than this one, which shares the cores)."""
    rng = random.Random(13)
    openids = [f"oBurst{number:07d}abcdefghijklmno" for number in range(readers)]
    await phase(
        "follow",
        readers,
        min(concurrency, 50),
        lambda n: ("POST", f"{base}/wechat?{signed_query(f'f{n}')}", follow_event(openids[n]).encode()),
    )
    reference = await phase(
        "GET /healthz (burst ref)", messages, concurrency, lambda n: ("GET", f"{base}/healthz", None)
    )
    senders = [openids[n % readers] for n in range(messages)]
    rng.shuffle(senders)
    words = [rng.choice(COMMANDS) if n % 20 == 0 else rng.choice(KEYWORDS) for n in range(messages)]
    measured = await phase(
        "POST /wechat burst",
        messages,
        concurrency,
        lambda n: (
            "POST",
            f"{base}/wechat?{signed_query(f'b{n}')}",
            text_message(2 * 10**6 + n, words[n], openid=senders[n]).encode(),
        ),
        kinds=lambda n: "command" if words[n] in COMMANDS else "keyword",
    )
    return [reference, measured]


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


@contextlib.contextmanager
def database_url(kind: str) -> Iterator[str]:
    """The service's JIANBAO_DATABASE_URL: "" (the embedded SQLite default) or a new PostgreSQL database."""
    if kind == "sqlite":
        yield ""
        return
    import asyncpg  # the service's own driver

    server = os.environ.get("JIANBAO_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test"
    name = f"jianbao_load_{os.getpid()}"
    admin_url = server.replace("+asyncpg", "")

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(admin_url, timeout=5)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(admin(f"CREATE DATABASE {name}"))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def burst_verdict(healthz: dict[str, float], burst: dict[str, float]) -> list[str]:
    """The burst's figures against the floors of the WeChat burst issue."""
    bound = max(KEYWORD_FLOOR_MS, 4 * healthz["p99"])
    keyword_p99 = burst["keyword:p99"]
    command_max = burst.get("command:max", 0.0)
    return [
        f"burst: {int(burst['requests'])} messages, {int(burst['keyword:count'])} keywords: p50 "
        f"{burst['keyword:p50']:.1f} ms, p99 {keyword_p99:.1f} ms, max {burst['keyword:max']:.1f} ms; "
        f"{int(burst['keyword:over_1s'])} keyword replies took 1 s or more",
        f"burst floor: keyword p99 {keyword_p99:.1f} ms < max(50 ms, 4 x healthz p99 "
        f"{healthz['p99']:.1f} ms, same client) = {bound:.1f} ms: {'ok' if keyword_p99 < bound else 'FAIL'}; "
        f"no keyword reply >= 1 s: {'ok' if burst['keyword:over_1s'] == 0 else 'FAIL'}",
        f"burst commands (订阅/退订, durable): {int(burst.get('command:count', 0))}, p50 "
        f"{burst.get('command:p50', 0.0):.1f} ms, p99 "
        f"{burst.get('command:p99', 0.0):.1f} ms, max {command_max:.1f} ms, deadline {REPLY_DEADLINE_MS} ms: "
        f"{'ok' if command_max < REPLY_DEADLINE_MS else 'FAIL'}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=10, help="with wrk: how long each phase runs")
    parser.add_argument("--workers", type=int, default=1, help="server processes (jianbao serve --workers)")
    parser.add_argument("--burst", type=int, default=3000, help="messages in the burst phase (0: none)")
    parser.add_argument("--burst-readers", type=int, default=1500, help="distinct followers in the burst")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    default_tool = "wrk" if shutil.which("wrk") else "aiohttp"
    parser.add_argument("--tool", choices=["wrk", "aiohttp"], default=default_tool)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as folder, database_url(args.database) as url:
        env = {**os.environ, "JIANBAO_WECHAT_TOKEN": TOKEN, "JIANBAO_DATABASE_URL": url}
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
            if args.burst:
                results += asyncio.run(burst(base, args.burst, args.burst_readers, args.concurrency))
        finally:
            server.terminate()
            # serve drains requests in flight for up to 30 s (bot/serving.py DRAIN_SECONDS).
            server.wait(timeout=60)
    amount = f"{args.seconds} s" if args.tool == "wrk" else f"{args.requests} requests"
    print(
        f"{args.tool}: {amount} per phase, {args.concurrency} concurrent, {args.workers} server process(es) "
        f"on {args.database}; server and client share 2 cores"
    )
    print(f"{'phase':24s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'failed':>7s}")
    for result in results:
        failed = int(result["failures"])
        figures = f"{result['rps']:8.0f} {result['p50']:8.1f} {result['p99']:8.1f} {failed:7d}"
        print(f"{result['name']:24s} {figures}")
    healthz, search = results[0]["rps"], results[1]["rps"]
    print(f"search throughput / healthz throughput = {search / healthz:.2f}")
    if args.burst:
        for line in burst_verdict(results[-2], results[-1]):
            print(line)


if __name__ == "__main__":
    main()
