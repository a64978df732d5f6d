"""How long importing the whole bundled corpus takes, on SQLite and on PostgreSQL.

    .venv/bin/python scripts/bench_import.py [--postgres postgresql://postgres@127.0.0.1:5432/test]

Prints, per backend: parse-only time, the first import (32 new issues), a re-import (all unchanged),
and the wall time of the `jianbao import --demo` command as a user runs it (process start included).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

from bot.importing import import_paths
from content.demo import demo_issue_dir
from content.parser import markdown_parser, parse_issue
from content.source import read_issue_file
from storage.database import Database
from storage.issues import IssueStore


def parse_only() -> tuple[float, int]:
    md = markdown_parser()
    start = time.perf_counter()
    items = sum(
        parse_issue(read_issue_file(path), md).item_count for path in sorted(demo_issue_dir().glob("*.md"))
    )
    return time.perf_counter() - start, items


async def imports(url: str) -> tuple[float, float]:
    async with Database(url) as database:
        await database.migrate()
        store = IssueStore(database)
        start = time.perf_counter()
        first = await import_paths([demo_issue_dir()], store)
        middle = time.perf_counter()
        again = await import_paths([demo_issue_dir()], store)
        end = time.perf_counter()
        if first.count("created") != 32 or again.count("unchanged") != 32:
            raise SystemExit(f"unexpected import outcome: {first} / {again}")
        return middle - start, end - middle


def cli(url: str) -> float:
    env = {**os.environ, "JIANBAO_DATABASE_URL": url}
    jianbao = str(Path(sys.executable).parent / "jianbao")
    start = time.perf_counter()
    subprocess.run([jianbao, "import", "--demo"], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


async def with_postgres_database(base: str) -> tuple[str, str]:
    name = f"jianbao_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(base)
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    return base.rsplit("/", 1)[0] + f"/{name}", name


async def drop_database(base: str, name: str) -> None:
    admin = await asyncpg.connect(base)
    await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    seconds, items = parse_only()
    print(f"parse only: 32 issues, {items} items in {seconds * 1000:.0f} ms")
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.db"
        first, again = asyncio.run(imports(url))
        print(f"sqlite    : first import {first * 1000:.0f} ms, re-import (unchanged) {again * 1000:.0f} ms")
        seconds = cli(f"sqlite:///{folder}/cli.db")
        print(f"sqlite    : `jianbao import --demo` into a new database: {seconds:.2f} s")
    url, name = asyncio.run(with_postgres_database(args.postgres))
    try:
        first, again = asyncio.run(imports(url))
        print(f"postgresql: first import {first * 1000:.0f} ms, re-import (unchanged) {again * 1000:.0f} ms")
        asyncio.run(drop_database(args.postgres, name))
        url, name = asyncio.run(with_postgres_database(args.postgres))
        print(f"postgresql: `jianbao import --demo` into a new database: {cli(url):.2f} s")
    finally:
        asyncio.run(drop_database(args.postgres, name))


if __name__ == "__main__":
    main()
