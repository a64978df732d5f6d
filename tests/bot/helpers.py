"""Helpers for the bot tests: issue files to import, and the `jianbao` console script run as a subprocess.

A CLI run gets its own database through JIANBAO_DATABASE_URL: a SQLite file under the test's tmp_path, or
on PostgreSQL a whole new database, because the CLI takes only a URL and so cannot be pointed at the
per-test schema the in-process tests use. The subprocess runs in tmp_path, so it never reads a `.env` file
or the default ./var/jianbao.db of the working tree.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from content.demo import demo_issue_dir
from content.source import MAX_ISSUE_BYTES
from tests.conftest import postgres_url

DEMO_DIR = demo_issue_dir()
DEMO_FILES = sorted(DEMO_DIR.glob("*.md"))
DEMO_DATES = [path.stem for path in DEMO_FILES]  # the files are named by their issue's date

# Environment variables that change how `rich` lays out or colours its output, or what jianbao reads.
_LAYOUT_VARIABLES = ("COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")


def minimal_issue(date: str, *, first_title: str = "高通发布新一代AI芯片") -> str:
    """The smallest text the parser accepts as an issue: a title line with `date` and two sections."""
    return (
        f"# 嵌入式AI简报 ({date})：测试用的简报\n"
        "\n"
        "## 业界新闻\n"
        "\n"
        f"- [{first_title} | 量子位](https://example.com/news/1)\n"
        "摘要：一段摘要，说明这条新闻。\n"
        "\n"
        "## 论文\n"
        "\n"
        "- [2001.00001] [一篇论文的标题 | arXiv](https://arxiv.org/abs/2001.00001)\n"
    )


def copy_demo_issue(date: str, folder: Path, name: str | None = None) -> Path:
    """Copy the demo issue of `date` into `folder` (as `name`, by default its own file name)."""
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(DEMO_DIR / f"{date}.md", folder / (name or f"{date}.md")))


# --- files that are not issues ----------------------------------------------------------------------

# A real PNG's first bytes: signature, then the IHDR chunk whose length field starts with NULs.
PNG_HEADER = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00"
HUGE_FILE_BYTES = 50 * 1024 * 1024
NESTING_LEVELS = 5_000


def write_huge_file(path: Path) -> None:
    """50 MB of "- [", markdown-it's slowest input: parsing it would take minutes, reading it a while."""
    chunk = b"- [" * (1024 * 1024)
    with path.open("wb") as handle:
        for _ in range(HUGE_FILE_BYTES // len(chunk) + 1):
            handle.write(chunk)
    assert path.stat().st_size > HUGE_FILE_BYTES > MAX_ISSUE_BYTES


def deeply_nested_list(levels: int = NESTING_LEVELS) -> str:
    """A list nested `levels` deep, each level one "- " further in ("- - - x" is three nested lists).

    Indenting each level on a line of its own would take about levels² bytes, 25 MB for 5,000 levels,
    which the size limit refuses before parsing; markers on one line nest as deep in 10 KB.
    """
    return "- " * levels + "最深的一层\n"


@dataclass(frozen=True, slots=True)
class BadFile:
    """A file that must be refused: its name, how to write it, the reason the error must name."""

    name: str
    write: Callable[[Path], object]
    reason: str
    date: str | None = None  # the date its title line names, which must not end up stored

    def create(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / self.name
        self.write(path)
        return path


def _writes_bytes(data: bytes) -> Callable[[Path], object]:
    return lambda path: path.write_bytes(data)


# Named m-*.md so that they sort between the good files a-*.md and z-*.md of a folder: a bad file must not
# stop the import of the files after it.
BAD_FILES = [
    BadFile("m-gbk.md", _writes_bytes(minimal_issue("2030-01-02").encode("gbk")), "not UTF-8", "2030-01-02"),
    BadFile("m-logo-png.md", _writes_bytes(PNG_HEADER + bytes(range(256)) * 8), "binary"),
    BadFile("m-empty.md", _writes_bytes(b""), "empty"),
    BadFile("m-blank.md", _writes_bytes(b"  \n\t\n\r\n   \n\n"), "empty"),
    BadFile(
        "m-no-title.md",
        _writes_bytes(minimal_issue("2030-01-03").split("\n", 1)[1].encode()),
        "no title line",
    ),
    BadFile(
        "m-no-sections.md",
        _writes_bytes("# 嵌入式AI简报 (2030-01-04)\n\n> 导读：只有导读。\n\n- 一条热身小新闻\n".encode()),
        "no sections",
        "2030-01-04",
    ),
    BadFile("m-huge.md", write_huge_file, "too large"),
    BadFile(
        "m-nested.md",
        _writes_bytes(("# 嵌入式AI简报 (2030-01-05)\n\n" + deeply_nested_list()).encode()),
        "no sections",
        "2030-01-05",
    ),
    BadFile(
        "m-nul.md",
        _writes_bytes(minimal_issue("2030-01-06", first_title="高通\x00发布").encode()),
        "binary",
        "2030-01-06",
    ),
]
GOOD_DATES = ("2020-07-02", "2021-08-01")


def good_files(folder: Path) -> list[Path]:
    """Two demo issues, named to sort before and after the bad files of BAD_FILES."""
    first, last = GOOD_DATES
    return [copy_demo_issue(first, folder, f"a-{first}.md"), copy_demo_issue(last, folder, f"z-{last}.md")]


# --- the CLI ---------------------------------------------------------------------------------------


def jianbao_executable() -> Path:
    """The `jianbao` console script of the environment running the tests."""
    beside_python = Path(sys.executable).parent / "jianbao"
    if beside_python.is_file():
        return beside_python
    found = shutil.which("jianbao")
    if found is None:
        pytest.fail("the `jianbao` console script is not installed: pip install -e '.[dev]'", pytrace=False)
    return Path(found)


@dataclass(frozen=True, slots=True)
class CliResult:
    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    @property
    def stderr_lines(self) -> list[str]:
        return self.stderr.splitlines()


def run_cli(
    *args: str | Path,
    database_url: str,
    cwd: Path,
    columns: int | None = None,
    python_path: Path | None = None,
    stdin: str | None = None,
    environment: Mapping[str, str] | None = None,
) -> CliResult:
    """Run `jianbao ARGS` against `database_url`, with stdout and stderr captured (so not a terminal).

    `columns` sets COLUMNS, the width `rich` lays out for; by default it is unset, as under cron or a pipe.
    `python_path` makes modules there importable (a channel plug-in kept in the tests). `stdin` answers
    the command's prompts. `environment` adds variables (FORCE_COLOR, to see rich's styles).
    Every run is checked for a Python traceback, which no input may ever cause.
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("JIANBAO_") and name not in _LAYOUT_VARIABLES
    }
    env["JIANBAO_DATABASE_URL"] = database_url
    if columns is not None:
        env["COLUMNS"] = str(columns)
    if python_path is not None:
        env["PYTHONPATH"] = str(python_path)
    env.update(environment or {})
    completed = subprocess.run(
        [str(jianbao_executable()), *(str(arg) for arg in args)],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )
    result = CliResult(tuple(map(str, args)), completed.returncode, completed.stdout, completed.stderr)
    assert "Traceback" not in result.stderr, f"jianbao {' '.join(result.args)} crashed:\n{result.stderr}"
    return result


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def sqlite_dates(path: Path) -> list[str]:
    """The issue dates stored in a SQLite database file the CLI wrote, read without jianbao."""
    with closing(sqlite3.connect(path)) as connection:
        return [str(date) for (date,) in connection.execute("SELECT date FROM issue ORDER BY date")]


@asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A new, empty database on the test PostgreSQL server (its URL), dropped on exit."""
    server = make_url(postgres_url()).set(drivername="postgresql")
    try:
        admin = await asyncpg.connect(server.render_as_string(hide_password=False), timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        pytest.fail(f"PostgreSQL for the CLI tests is unreachable ({error!r})", pytrace=False)
    name = f"jianbao_cli_{uuid.uuid4().hex[:12]}"
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
