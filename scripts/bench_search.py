"""Search benchmark: index build time, query latency (p50/p99) and memory at 1k, 10k and 100k items.

    .venv/bin/python scripts/bench_search.py [--sizes 1000 10000 100000] [--queries 3000]

The corpus is made by resampling the 541 real items of the bundled issues and mutating each copy
(sentences of the summary shuffled and partly dropped, words swapped in from other items, a variant
number added to the title), grouped into issues of 20 items with their own dates. Each size runs in a
fresh process so its memory figure is its own. The query mix includes very common words (芯片, 模型,
推理) whose posting lists cover a large share of the corpus, and glossary-expanded ones (量化, 端侧).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

QUERIES = [
    "量化",
    "剪枝",
    "蒸馏",
    "NPU",
    "ncnn",
    "编译器",
    "int8",
    "芯片",
    "模型",
    "推理",
    "端侧",
    "目标检测",
    "INT8量化",
    "知识蒸馏",
    "Transformer",
    "TVM",
    "骁龙",
    "推理引擎",
    "模型压缩",
    "手机",
    "GPU",
    "深度学习",
    "low-bit quantization",
    "神经网络架构搜索",
    "超分辨率",
    "RISC-V",
    "編譯器",
    "ＩＮＴ８",
    "C++",
    "llama-3",
]
ITEMS_PER_ISSUE = 20


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def synthetic_issues(size: int, seed: int = 20201) -> list[object]:
    from content.demo import demo_issue_dir
    from content.model import Issue, Section
    from content.parser import parse_issue
    from content.source import read_issue_file

    rng = random.Random(seed)
    real = [parse_issue(read_issue_file(path)) for path in sorted(demo_issue_dir().glob("*.md"))]
    items = [(section.name, item) for issue in real for section in issue.sections for item in section.items]
    vocabulary = [word for _, item in items for word in re.findall(r"[\w\u4e00-\u9fff]{2,}", item.title)]
    issues = []
    start = dt.date(2000, 1, 1)
    for number in range(0, size, ITEMS_PER_ISSUE):
        sections: dict[str, list[object]] = {}
        for offset in range(min(ITEMS_PER_ISSUE, size - number)):
            section, item = rng.choice(items)
            sentences = re.split(r"(?<=[。！？.!?])", item.summary)
            rng.shuffle(sentences)
            summary = "".join(sentences[: max(1, int(len(sentences) * rng.uniform(0.5, 1.0)))])
            summary += " " + " ".join(rng.choices(vocabulary, k=3))
            title = f"{item.title} {rng.choice(vocabulary)} #{number + offset}"
            bucket = sections.setdefault(section, [])
            bucket.append(dataclasses.replace(item, title=title, summary=summary, position=len(bucket) + 1))
        issues.append(
            Issue(
                date=start + dt.timedelta(days=number // ITEMS_PER_ISSUE),
                title=f"synthetic {number}",
                sections=tuple(
                    Section(name=name, position=index, items=tuple(bucket))  # type: ignore[arg-type]
                    for index, (name, bucket) in enumerate(sections.items(), start=1)
                ),
                content_hash=f"{number:064x}",
            )
        )
    return issues


def measure(size: int, queries: int) -> dict[str, float]:
    from storage.search.index import SearchIndex

    issues = synthetic_issues(size)
    base = rss_mb()
    started = time.perf_counter()
    index = SearchIndex()
    index.replace_issues(issues)  # type: ignore[arg-type]
    build = time.perf_counter() - started
    built = rss_mb()
    for query in QUERIES:  # warm-up: first-touch of each posting list
        index.search(query, cached=False)
    latencies = []
    rng = random.Random(7)
    for _ in range(queries):
        query = rng.choice(QUERIES)
        began = time.perf_counter()
        index.search(query, limit=10, cached=False)  # the work itself, not the answer cache
        latencies.append((time.perf_counter() - began) * 1000)
    latencies.sort()
    common = [index.search(word).total for word in ("芯片", "模型")]
    return {
        "items": index.size,
        "build_s": build,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
        "max_ms": latencies[-1],
        "index_mb": built - base,
        "rss_mb": rss_mb(),
        "common_hits": min(common) / index.size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--queries", type=int, default=3000)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one size, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.queries)))
        return
    print(f"{len(QUERIES)} queries in the mix, {args.queries} timed per size, in-process, one thread")
    columns = ("items", "build s", "p50 ms", "p99 ms", "max ms", "index MB", "RSS MB")
    print(" ".join(f"{name:>{max(len(name), 7)}s}" for name in columns))
    for size in args.sizes:
        output = subprocess.run(
            [sys.executable, __file__, "--one", str(size), "--queries", str(args.queries)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        row = json.loads(output.strip().splitlines()[-1])
        print(
            f"{int(row['items']):8d} {row['build_s']:8.2f} {row['p50_ms']:7.3f} {row['p99_ms']:7.3f} "
            f"{row['max_ms']:7.2f} {row['index_mb']:9.0f} {row['rss_mb']:7.0f}"
            f"   (芯片/模型 match ≥{row['common_hits']:.0%} of items)"
        )


if __name__ == "__main__":
    main()
