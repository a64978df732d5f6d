"""What readers' topics cost a broadcast: `broadcast send` plus sending (with rendering) to N Telegram
subscribers without topics, against the same N spread over --sets distinct topic sets, in one run.

    .venv/bin/python scripts/bench_topics.py [--subscribers 100000] [--sets 1000] [--concurrency 64]

Each side gets a PostgreSQL database of its own (on --postgres, default JIANBAO_TEST_POSTGRES_URL or
postgresql://postgres@127.0.0.1:5432/test; dropped at the end) holding one generated issue of
ITEMS items, each about one glossary topic (量化, 剪枝, ...), that Telegram sends as one message.
- plain:  N subscribers, no topics: every delivery gets the same payload;
- topics: the same N subscribers, each with one of --sets distinct sets of one to three of those
  topics, so each set picks different items: its own "你关注的" block, its own render (the worst case:
  renders are shared between sets that pick the same items).
Per side: `jianbao broadcast send` (a subprocess: deciding who gets the issue, writing the ledger) and
one in-process worker sending every delivery to the fake Bot API (a process of its own, no rate
limits), with the worker's renders counted. Prints both sides' seconds and the ratio topics / plain
(the Done-when asks < 2x), then checks every delivery was sent and each set's block was its own.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import tempfile
import time
from pathlib import Path

from bot.broadcast.runtime import open_worker
from bot.settings import Settings
from scripts.bench_broadcast import (
    DEFAULT_POSTGRES,
    Timing,
    bench_database,
    broadcast_send,
    fake_telegram,
    jianbao_env,
    prepare,
    table_counts,
)
from storage.database import Database
from tests.fakes.telegram_api import TOKEN

BENCH_DATE = "2030-02-01"
# Topics whose glossary label is written in the items, one per item, in sections of SECTION_ITEMS.
TOPICS = (
    "量化", "剪枝", "蒸馏", "稀疏", "编译器", "目标检测", "超分辨率", "骁龙", "tensorrt", "tflite",
    "winograd", "transformer", "risc-v", "gpu", "npu", "卷积", "二值化", "移动端", "tvm", "边缘",
)  # fmt: skip
SECTION_ITEMS = 6


def bench_issue() -> str:
    lines = [f"# 嵌入式AI简报 ({BENCH_DATE})：话题基准用的简报", ""]
    names = ("业界新闻", "论文", "开源项目", "博文")
    for number, topic in enumerate(TOPICS):
        if number % SECTION_ITEMS == 0:
            lines += [f"## {names[number // SECTION_ITEMS % len(names)]}", ""]
        lines += [
            f"- [关于{topic}的第{number + 1}条新闻 | 来源](https://example.com/{number + 1})",
            f"摘要：这一条讲{topic}在端侧的进展。",
            "",
        ]
    return "\n".join(lines)


def topic_sets(count: int, seed: int = 7) -> list[list[str]]:
    """`count` distinct sets of one to three TOPICS (all singles and pairs first, then random triples)."""
    sets = [[topic] for topic in TOPICS] + [list(pair) for pair in itertools.combinations(TOPICS, 2)]
    triples = [list(triple) for triple in itertools.combinations(TOPICS, 3)]
    random.Random(seed).shuffle(triples)
    sets += triples
    if count > len(sets):
        raise SystemExit(f"--sets at most {len(sets)}")
    return sets[:count]


def _json(topics: list[str]) -> str:
    return "[" + ",".join(f'"{topic}"' for topic in topics) + "]"


async def side(
    name: str, args: argparse.Namespace, fake_url: str, issue: Path, sets: list[list[str]] | None, tmp: Path
) -> tuple[float, float, int]:
    n = args.subscribers
    async with bench_database(args.postgres, "jianbao_topics") as url:
        await prepare(url, issue, n, ["[]"] if sets is None else [_json(topics) for topics in sets])
        env = jianbao_env(url, fake_url, rate_limits=False, worker_concurrency=args.concurrency)
        start = await asyncio.to_thread(broadcast_send, env, BENCH_DATE, tmp)
        settings = Settings(
            _env_file=None,
            database_url=url,
            telegram_token=TOKEN,
            telegram_api_url=fake_url,
            rate_limits=False,
            worker_concurrency=args.concurrency,
        )
        async with Database(url) as database, open_worker(settings, database) as parts:
            started, cpu = time.perf_counter(), time.process_time()
            await parts.worker.run(asyncio.Event(), until_idle=True)
            sent = Timing(time.perf_counter() - started, time.process_time() - cpu, parts.worker.sent)
            renders = parts.payloads.renders
        states = dict(
            map(tuple, await table_counts(url, "SELECT state, count(*) FROM delivery GROUP BY state"))
        )
        if states != {"sent": n} or sent.count != n:
            raise SystemExit(f"{name}: expected {n} sent, got {states} ({sent.count} by the worker)")
        print(
            f"  {name:6}: broadcast send {start.seconds:6.1f} s · sending {sent.seconds:6.1f} s "
            f"({sent.rate:,.0f}/s) · renders {renders:,} · total "
            f"{start.seconds + sent.seconds:6.1f} s"
        )
        return start.seconds, sent.seconds, renders


async def main_async(args: argparse.Namespace) -> None:
    sets = topic_sets(args.sets)
    print(
        f"topics: {args.subscribers:,} Telegram subscribers, plain vs {len(sets):,} distinct topic sets, "
        f"concurrency {args.concurrency}"
    )
    with tempfile.TemporaryDirectory() as folder, fake_telegram("--no-validate", "--no-record") as fake:
        tmp = Path(folder)
        issue = tmp / f"{BENCH_DATE}.md"
        issue.write_text(bench_issue(), encoding="utf-8")
        started = time.perf_counter()
        plain = await side("plain", args, fake.url, issue, None, tmp)
        topics = await side("topics", args, fake.url, issue, sets, tmp)
        print(f"  both sides in {time.perf_counter() - started:.0f} s")
    ratio = (topics[0] + topics[1]) / (plain[0] + plain[1])
    print(f"  broadcast send: topics / plain = {topics[0] / plain[0]:.2f}x")
    print(f"  sending with rendering: topics / plain = {topics[1] / plain[1]:.2f}x")
    print(f"  send + render, topics / plain = {ratio:.2f}x (floor: < 2x)")
    if topics[2] > len(sets) + 1:
        raise SystemExit(f"{topics[2]} renders for {len(sets)} topic sets: more than one per set")
    if ratio >= 2:
        raise SystemExit("over the floor")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--sets", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
