"""Every benchmark and load script in its quick form, each figure printed beside its floor.

    .venv/bin/python scripts/figures.py [--only NAME ...] [--full]   (or: bash scripts/figures.sh)

The floors are the "Done when" figures of the issues that asked for them. Each script runs as a user
would run it (a subprocess of this Python), its own output is kept in var/figures/NAME.log, and the
figures are read off that output: what is printed here is what the script printed. The quick forms use
fewer requests, deliveries or items than the scripts' defaults, which the figures' lines say; `--full`
runs the defaults (which takes most of an hour on 2 cores). Needs the local PostgreSQL (as the tests do).
Exits 1 when a floor is missed, so a change that breaks one shows.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOGS = ROOT / "var" / "figures"


@dataclass(frozen=True)
class Figure:
    label: str
    pattern: str  # a regex over the script's output; group 1 is the figure
    floor: str  # how the floor reads
    holds: Callable[[float], bool]


@dataclass(frozen=True)
class Script:
    name: str
    quick: list[str]
    full: list[str]
    figures: list[Figure]


def below(limit: float) -> Callable[[float], bool]:
    return lambda value: value < limit


def at_least(limit: float) -> Callable[[float], bool]:
    return lambda value: value >= limit


def zero(value: float) -> bool:
    return value == 0


PYTHON = sys.executable
CRASH_TEST = [
    "-m",
    "pytest",
    "-q",
    "-s",
    "-p",
    "no:cacheprovider",
    "tests/bot/broadcast/test_crash.py",
    "-k",
    "killed",
]
# A figure whose floor the script computes from the same run: group "bound" replaces the fixed floor.
BURST_P99 = r"burst floor: keyword p99 ([\d.]+) ms < .*?= (?P<bound>[\d.]+) ms"
SCRIPTS = [
    Script(
        "render",
        ["scripts/bench_render.py", "--repeat", "100"],
        ["scripts/bench_render.py"],
        [
            Figure(
                "render all three channels, median ms",
                r"all three channels\s+median\s+([\d.]+) ms",
                "< 20 ms (issue 4)",
                below(20),
            )
        ],
    ),
    Script(
        "search-relevance",
        ["scripts/eval_search.py"],
        ["scripts/eval_search.py"],
        [
            Figure("mean R-precision", r"mean R-precision ([\d.]+)", ">= 0.85 (issue 3)", at_least(0.85)),
            Figure(
                "cross-lingual mean R-precision",
                r"cross-lingual mean R-precision ([\d.]+)",
                ">= 0.80 (issue 3)",
                at_least(0.80),
            ),
        ],
    ),
    Script(
        "search-latency",
        ["scripts/bench_search.py", "--sizes", "100000", "--queries", "1000"],
        ["scripts/bench_search.py"],
        [
            Figure(
                "search p50 ms at 100k items", r"^\s*100000\s+[\d.]+\s+([\d.]+)", "< 2 ms (issue 3)", below(2)
            ),
            Figure(
                "search p99 ms at 100k items",
                r"^\s*100000\s+[\d.]+\s+[\d.]+\s+([\d.]+)",
                "< 10 ms (issue 3)",
                below(10),
            ),
        ],
    ),
    Script(
        "import",
        ["scripts/bench_import.py"],
        ["scripts/bench_import.py"],
        [
            Figure(
                "`jianbao import --demo` on SQLite, s",
                r"sqlite\s+: `jianbao import --demo`.*: ([\d.]+) s",
                "reported (issue 2)",
                lambda value: True,
            )
        ],
    ),
    Script(
        "service-sqlite",
        ["scripts/load_service.py", "--requests", "2000"],
        ["scripts/load_service.py"],
        [
            Figure(
                "WeChat keyword p99 ms at 200 concurrent",
                r"POST /wechat keyword\s+\d+\s+[\d.]+\s+([\d.]+)",
                "< 50 ms (issue 5; wrk on 2 shared cores)",
                below(50),
            ),
            Figure(
                "search / healthz throughput",
                r"search throughput / healthz throughput = ([\d.]+)",
                ">= 0.5 (issue 5)",
                at_least(0.5),
            ),
            Figure("burst keyword p99 ms", BURST_P99, "< max(50, 4 x healthz p99) (issue 13)", below(0)),
            Figure(
                "burst keyword replies >= 1 s",
                r"burst: .*; (\d+) keyword replies took 1 s or more",
                "0 (issue 13)",
                zero,
            ),
            Figure(
                "burst command max ms",
                r"burst commands .*max ([\d.]+) ms",
                "< 4000 ms deadline (issue 13)",
                below(4000),
            ),
        ],
    ),
    Script(
        "service-postgres",
        ["scripts/load_service.py", "--requests", "2000", "--database", "postgres"],
        ["scripts/load_service.py", "--database", "postgres"],
        [
            Figure(
                "burst keyword p99 ms (PostgreSQL)",
                BURST_P99,
                "< max(50, 4 x healthz p99) (issue 13)",
                below(0),
            ),
            Figure(
                "burst keyword replies >= 1 s (PostgreSQL)",
                r"burst: .*; (\d+) keyword replies took 1 s or more",
                "0 (issue 13)",
                zero,
            ),
            Figure(
                "burst command max ms (PostgreSQL)",
                r"burst commands .*max ([\d.]+) ms",
                "< 4000 ms deadline (issue 13)",
                below(4000),
            ),
        ],
    ),
    Script(
        "broadcast",
        ["scripts/bench_broadcast.py", "--deliveries", "20000", "--rounds", "2"],
        ["scripts/bench_broadcast.py"],
        [
            Figure(
                "broadcast full path / bare loop, %",
                r"full path / bare loop = (\d+)%",
                ">= 70% (issue 6)",
                at_least(70),
            )
        ],
    ),
    Script(
        "topics",
        ["scripts/bench_topics.py", "--subscribers", "20000", "--sets", "1000"],
        ["scripts/bench_topics.py"],
        [
            Figure(
                "readers' topics: send + render, topics / plain, x",
                r"send \+ render, topics / plain = ([\d.]+)x",
                "< 2x (issue 15)",
                below(2),
            )
        ],
    ),
    Script(
        "broadcast-rate",
        ["scripts/bench_broadcast_rate.py", "--chats", "900"],
        ["scripts/bench_broadcast_rate.py"],
        [
            Figure(
                "Telegram rate, % of 30/s",
                r"achieved rate: whole run [\d.]+/s \(([\d.]+)%",
                ">= 95% (issue 6)",
                at_least(95),
            ),
            Figure("Telegram 429s", r"429s answered (\d+)", "0 (issue 6)", zero),
        ],
    ),
    Script(
        "console",
        ["scripts/bench_console.py", "--requests", "100", "--seconds", "10"],
        ["scripts/bench_console.py"],
        [
            Figure(
                "console pages, worst p95 ms (1M subscribers)",
                r"console pages: worst p95 ([\d.]+) ms",
                "< 200 ms (issue 14)",
                below(200),
            ),
            Figure(
                "keyword p99 ms while 5 editors watch",
                r"keyword p99 with 5 editors polling \S+: ([\d.]+) ms vs [\d.]+ ms with nobody watching "
                r"\(bound (?P<bound>[\d.]+) ms\)",
                "not worse than unwatched (issue 14)",
                below(0),
            ),
        ],
    ),
    Script(
        "analytics",
        ["scripts/bench_analytics.py", "--requests", "100", "--seconds", "10"],
        ["scripts/bench_analytics.py"],
        [
            Figure(
                "analytics pages, worst p95 ms (2M clicks)",
                r"analytics pages: worst p95 ([\d.]+) ms",
                "< 300 ms (issue After the send)",
                below(300),
            ),
            Figure(
                "/r/ p99 ms while 5 editors view stats",
                r"/r/ p99 while viewed: ([\d.]+) ms",
                "< 5 ms (issue After the send)",
                below(5),
            ),
            Figure("/r/ clicks not recorded", r"clicks sent to /r/ \d+, .*, lost (-?\d+)", "0", zero),
        ],
    ),
    Script(
        "crash",
        CRASH_TEST,
        CRASH_TEST,  # one size: the test's own
        [
            Figure(
                "crash: most duplicates of one kill",
                r"duplicates per kill \[([\d, ]+)\]",
                "<= concurrency 16 (issue 13)",
                below(17),
            ),
            Figure("crash: tests passed", r"(\d+) passed", "1", at_least(1)),
        ],
    ),
]


def value_of(figure: Figure, output: str) -> tuple[float, float | None] | None:
    """The figure (the largest, when the script printed a list) and the bound it printed, if any."""
    found = re.search(figure.pattern, output, re.MULTILINE)
    if found is None:
        return None
    text = found.group(1).strip()
    value = max(float(part) for part in re.split(r"[,\s]+", text) if part)
    bound = found.groupdict().get("bound")
    return value, None if bound is None else float(bound)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="+", choices=[script.name for script in SCRIPTS])
    parser.add_argument("--full", action="store_true", help="the scripts' default sizes, not the quick ones")
    args = parser.parse_args()
    LOGS.mkdir(parents=True, exist_ok=True)
    missed = 0
    began = time.monotonic()
    for script in SCRIPTS:
        if args.only and script.name not in args.only:
            continue
        command = [PYTHON, *(script.full if args.full else script.quick)]
        started = time.monotonic()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
        output = done.stdout + done.stderr
        (LOGS / f"{script.name}.log").write_text(output)
        took = time.monotonic() - started
        shown = " ".join(part for part in command[1:] if part)
        print(f"== {script.name}: {shown} ({took:.0f} s, exit {done.returncode})")
        for figure in script.figures:
            read = value_of(figure, output)
            floor = figure.floor
            if read is None:
                verdict, text = "MISSING", "-"
            else:
                value, bound = read
                holds = figure.holds(value) if bound is None else value < bound
                if bound is not None:
                    floor = f"< {bound:g} = {floor.removeprefix('< ')}"
                verdict, text = ("ok" if holds else "MISSED"), f"{value:g}"
            missed += verdict != "ok"
            print(f"   {figure.label:45s} {text:>10s}   floor {floor:50s} {verdict}")
    logs = LOGS.relative_to(ROOT)
    print(f"{missed} floor(s) missed; {time.monotonic() - began:.0f} s in all; logs in {logs}/")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
