"""`jianbao subscribers ...` as an editor runs it.

The import with bad rows runs the console script in a subprocess, on both backends; the other tests call
the same Typer app in this process (typer's CliRunner), which is the same code without a second's worth
of interpreter start-up per command.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bot.cli import app
from storage.audit import AuditEntry, AuditTrail
from storage.database import Database
from tests.bot.helpers import CliResult, run_cli, sqlite_url

OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"

# Line numbers are the file's own: a quoted cell may span two lines, blank lines count.
MIXED_CSV = (
    "channel,address,topics\n"  # line 1
    "email,Reader@Example.com,量化;NPU\n"  # 2
    "telegram,-1001234567890,\n"  # 3
    "wechat,too-short,量化\n"  # 4: bad openid
    "sms,+8613800000000,\n"  # 5: unknown channel
    'email,"a@b.c\nBcc: victim@example.com",\n'  # 6-7: header injection attempt
    "telegram,42,量化,extra\n"  # 8: a column too many
    "\n"  # 9: blank, not a row
    f"wechat,{OPENID},剪枝 蒸馏\n"  # 10
    "telegram,12x,\n"  # 11: not a chat id
    "email,reader@example.com,\n"  # 12: the same reader as line 2, spelled otherwise
)


Jianbao = Callable[..., CliResult]


@pytest.fixture
def subscribers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Jianbao:
    """`jianbao subscribers ARGS` in this process, against `url`, in tmp_path (where there is no .env)."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("JIANBAO_"):
            monkeypatch.delenv(name)

    def run(*args: str | Path, url: str) -> CliResult:
        arguments = ("subscribers", *map(str, args))
        result = CliRunner().invoke(app, arguments, env={"JIANBAO_DATABASE_URL": url})
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        return CliResult(arguments, result.exit_code, result.stdout, result.stderr)

    return run


def exported(subscribers: Jianbao, url: str) -> list[dict[str, Any]]:
    result = subscribers("export", "--json", url=url)
    assert result.code == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def test_import_reports_bad_rows_by_line_and_imports_the_rest(cli_database_url: str, tmp_path: Path) -> None:
    source = tmp_path / "subscribers.csv"
    source.write_text(MIXED_CSV, encoding="utf-8")

    result = run_cli("subscribers", "import", source, database_url=cli_database_url, cwd=tmp_path)

    assert result.code == 1
    assert [line.split(": ", 3)[2] for line in result.stderr_lines] == [
        "line 4",
        "line 5",
        "line 6",
        "line 8",
        "line 11",
    ]
    assert all(line.startswith("jianbao: subscribers import: line ") for line in result.stderr_lines)
    assert "3 new" in result.stdout
    assert "5 bad row(s)" in result.stdout
    export = run_cli("subscribers", "export", "--json", database_url=cli_database_url, cwd=tmp_path)
    rows = json.loads(export.stdout)
    assert [(row["channel"], row["address"], row["topics"], row["status"]) for row in rows] == [
        ("email", "Reader@Example.com", ["量化", "NPU"], "active"),
        ("telegram", "-1001234567890", [], "active"),
        ("wechat", OPENID, ["剪枝", "蒸馏"], "active"),
    ]


def test_add_remove_and_list(subscribers: Jianbao, tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "cli.db")

    added = subscribers("add", "telegram", "-1001234567890", "--topics", "量化,NPU", url=url)
    again = subscribers("add", "email", "reader@example.com", url=url)
    removed = subscribers("remove", "telegram", "-1001234567890", url=url)
    not_there = subscribers("remove", "telegram", "-1001234567890", url=url)
    listed = subscribers("list", "--status", "active", "--json", url=url)
    table = subscribers("list", url=url)

    assert (added.code, again.code, removed.code) == (0, 0, 0), added.stderr + again.stderr + removed.stderr
    assert added.stdout.startswith("added: telegram -1001234567890")
    assert not_there.code == 1
    assert not_there.stderr_lines == ["jianbao: remove: telegram -1001234567890 is not subscribed"]
    assert [row["address"] for row in json.loads(listed.stdout)] == ["reader@example.com"]
    assert "unsubscribed" in table.stdout
    assert "2 subscribers" in table.stdout


def test_wrong_use_is_one_line_and_exit_2(subscribers: Jianbao, tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "cli.db")
    headless = tmp_path / "headless.csv"
    headless.write_text("email,reader@example.com,量化\n", encoding="utf-8")

    results = [
        subscribers("add", "email", "a@b.c\nBcc: victim@example.com", url=url),
        subscribers("add", "wechat", "too-short", url=url),
        subscribers("list", "--channel", "sms", url=url),
        subscribers("import", headless, url=url),
    ]

    for result in results:
        assert result.code == 2, result
        assert len(result.stderr_lines) == 1, result.stderr
    assert "header" in results[3].stderr
    assert exported(subscribers, url) == []


def test_a_file_that_is_not_utf8_csv_changes_nothing(subscribers: Jianbao, tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "cli.db")
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes("channel,address,topics\nemail,reader@example.com,量化\n".encode("gbk"))

    result = subscribers("import", gbk, url=url)

    assert result.code == 1
    assert result.stderr_lines == [f"jianbao: import: {gbk} is not UTF-8 text"]
    assert exported(subscribers, url) == []


def test_export_and_import_again_keeps_out_who_left(subscribers: Jianbao, tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "cli.db")
    source = tmp_path / "excel.csv"
    # As Excel saves "CSV UTF-8": a byte order mark, CRLF line ends, columns in another order.
    source.write_bytes(
        "\ufefftopics,address,channel\r\n量化,reader@example.com,email\r\n,42,telegram\r\n".encode()
    )
    assert subscribers("import", source, url=url).code == 0
    assert subscribers("remove", "telegram", "42", url=url).code == 0

    export = subscribers("export", url=url)
    records = list(csv.DictReader(io.StringIO(export.stdout)))
    assert [(row["channel"], row["address"], row["topics"], row["status"]) for row in records] == [
        ("email", "reader@example.com", "量化", "active"),
        ("telegram", "42", "", "unsubscribed"),
    ]
    backup = tmp_path / "backup.csv"
    backup.write_text(export.stdout, encoding="utf-8")
    # The export of someone who left, imported elsewhere or here again, brings nobody back.
    again = subscribers("import", backup, url=url)
    fresh = sqlite_url(tmp_path / "fresh.db")
    elsewhere = subscribers("import", backup, url=fresh)

    assert (again.code, elsewhere.code) == (0, 0)
    assert "1 unchanged" in again.stdout
    assert [(row["address"], row["status"]) for row in exported(subscribers, url)] == [
        ("reader@example.com", "active"),
        ("42", "unsubscribed"),
    ]
    assert [row["address"] for row in exported(subscribers, fresh)] == ["reader@example.com"]
    # Reimporting the original list does not bring the telegram reader back either: only `add` does.
    assert "1 who had left kept out" in subscribers("import", source, url=url).stdout


def test_erase_deletes_the_subscriber_and_records_it_without_the_address(
    subscribers: Jianbao, cli_database_url: str
) -> None:
    url = cli_database_url
    assert subscribers("add", "email", "Gone@Example.com", url=url).code == 0
    assert subscribers("add", "email", "kept@example.com", url=url).code == 0

    erased = subscribers("erase", "email", "gone@example.com", url=url)
    again = subscribers("erase", "email", "gone@example.com", url=url)

    assert (erased.code, erased.stdout) == (0, "erased: one email subscriber\n"), erased.stderr
    assert again.code == 1
    assert again.stderr_lines == ["jianbao: erase: no such subscriber: email gone@example.com"]
    assert [row["address"] for row in exported(subscribers, url)] == ["kept@example.com"]
    entries = asyncio.run(_audit(url))
    assert [(entry.actor, entry.action, entry.detail) for entry in entries] == [("cli", "erase", "email")]
    assert "gone" not in entries[0].subject.lower()


async def _audit(url: str) -> list[AuditEntry]:
    async with Database(url) as database:
        return await AuditTrail(database).recent()
