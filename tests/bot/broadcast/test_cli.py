"""`jianbao broadcast ...` and `jianbao worker` as an editor runs them (subprocesses), on SQLite and
PostgreSQL, with the fake Bot API in the test process. The CLI reads its settings from a `.env` file in
its working folder, as a user's would."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.bot.broadcast.conftest import DAY, chat_ids
from tests.bot.helpers import CliResult, run_cli, sqlite_url
from tests.fakes.telegram_api import TOKEN, FakeTelegram, running_fake_telegram


@dataclass
class Cli:
    url: str
    folder: Path
    telegram: FakeTelegram

    async def __call__(self, *args: str) -> CliResult:
        # In a thread: the fake Bot API answers from this test's event loop meanwhile.
        return await asyncio.to_thread(run_cli, *args, database_url=self.url, cwd=self.folder)


@pytest.fixture
async def cli(cli_database_url: str, tmp_path: Path) -> AsyncIterator[Cli]:
    """On SQLite and on PostgreSQL."""
    async with _cli(cli_database_url, tmp_path) as runner:
        yield runner


@pytest.fixture
async def sqlite_cli(tmp_path: Path) -> AsyncIterator[Cli]:
    """On SQLite only: for what does not depend on the backend (each CLI run costs a process start)."""
    async with _cli(sqlite_url(tmp_path / "cli.db"), tmp_path) as runner:
        yield runner


@asynccontextmanager
async def _cli(url: str, tmp_path: Path) -> AsyncIterator[Cli]:
    async with running_fake_telegram() as telegram:
        env = {
            "JIANBAO_TELEGRAM_TOKEN": TOKEN,
            "JIANBAO_TELEGRAM_API_URL": telegram.url,
            "JIANBAO_RATE_LIMITS": "false",
            "JIANBAO_WORKER_POLL_SECONDS": "0.1",
        }
        (tmp_path / ".env").write_text("".join(f"{name}={value}\n" for name, value in env.items()))
        runner = Cli(url, tmp_path, telegram)
        assert (await runner("import", "--demo")).code == 0
        rows = "".join(f"telegram,{chat},\n" for chat in chat_ids(3))
        (tmp_path / "people.csv").write_text("channel,address,topics\n" + rows)
        assert (await runner("subscribers", "import", "people.csv")).code == 0
        yield runner


async def test_send_work_and_status(cli: Cli) -> None:
    dry = await cli("broadcast", "send", str(DAY), "--dry-run", "--json")
    assert dry.code == 0, dry.stderr
    assert json.loads(dry.stdout)["audience"] == {"telegram": {"pending": 3}}
    missing = await cli("broadcast", "status", str(DAY))
    assert (missing.code, missing.stderr) == (1, f"jianbao: the issue of {DAY} has not been broadcast\n")

    sent = await cli("broadcast", "send", str(DAY), "--channel", "telegram", "--json")
    assert sent.code == 0, sent.stderr
    started = json.loads(sent.stdout)
    assert (started["created"], started["added_pending"], started["state"]) == (True, 3, "running")
    again = await cli("broadcast", "send", str(DAY), "--json")
    assert json.loads(again.stdout)["added_pending"] == 0

    worked = await cli("worker", "--until-done")
    assert worked.code == 0, worked.stderr
    assert "stopped after 3 deliveries" in worked.stderr
    status = json.loads((await cli("broadcast", "status", str(DAY), "--json")).stdout)
    assert (status["state"], status["counts"], status["uncertain"]) == ("done", {"telegram": {"sent": 3}}, 0)
    watched = await cli("broadcast", "status", str(DAY), "--watch")  # the live bar, forced without a tty
    assert watched.code == 0
    assert "3/3" in watched.stdout, watched.stdout
    shown = await cli("broadcast", "status", str(started["id"]), "--no-watch")
    assert shown.code == 0
    assert "done" in shown.stdout
    assert "telegram" in shown.stdout
    assert {chat for chat, _ in cli.telegram.delivered()} == set(chat_ids(3))
    assert all(count == 1 for count in cli.telegram.delivered().values())


async def test_pause_resume_cancel(sqlite_cli: Cli) -> None:
    assert (await sqlite_cli("broadcast", "send", str(DAY), "--at", "2999-01-01 08:00")).code == 0
    for verb, state in (("pause", "paused"), ("resume", "running"), ("cancel", "cancelled")):
        result = await sqlite_cli("broadcast", verb, str(DAY), "--json")
        assert result.code == 0, result.stderr
        assert json.loads(result.stdout)["state"] == state
    refused = await sqlite_cli("broadcast", "resume", str(DAY))
    assert (refused.code, refused.stderr) == (
        1,
        f"jianbao: the broadcast of {DAY} is cancelled; it cannot be running\n",
    )
    listed = json.loads((await sqlite_cli("broadcast", "list", "--json")).stdout)
    assert [(row["date"], row["state"]) for row in listed] == [(str(DAY), "cancelled")]


async def test_a_test_send_reaches_one_address_and_records_nothing(sqlite_cli: Cli) -> None:
    result = await sqlite_cli("broadcast", "send", str(DAY), "--test-to", "424242", "--json")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout) == {"channel": "telegram", "state": "sent", "error": None}
    assert {chat for chat, _ in sqlite_cli.telegram.delivered()} == {424242}
    assert json.loads((await sqlite_cli("broadcast", "list", "--json")).stdout) == []


MISTAKES: list[tuple[tuple[str, ...], int, str]] = [
    (("broadcast", "send", "2020-13-01"), 2, "broadcast send: not a date: '2020-13-01' (use YYYY-MM-DD)"),
    (
        ("broadcast", "send", str(DAY), "--at", "tomorrow"),
        2,
        "broadcast send: not a time: 'tomorrow' (use YYYY-MM-DD HH:MM, optionally with +08:00)",
    ),
    (("broadcast", "send", "1999-01-01"), 1, "no issue of 1999-01-01 in the database (import it first)"),
    (
        ("broadcast", "send", str(DAY), "--channel", "sms"),
        1,
        "unknown channel 'sms': use one of wechat, telegram, email, wecom, feishu",
    ),
    (
        ("broadcast", "send", str(DAY), "--channel", "email"),
        1,
        "email cannot send: JIANBAO_SMTP_URL is not set",
    ),
    (
        ("broadcast", "send", str(DAY), "--test-to", "not an address", "--channel", "email"),
        2,
        "broadcast send --test-to: not a valid email address: an email address must have an @-sign.",
    ),
    (("broadcast", "pause", "12345"), 1, "no broadcast with id 12345"),
]


async def test_mistakes_get_one_line_and_change_nothing(sqlite_cli: Cli) -> None:
    # One database for all the cases: none of them may change it.
    for args, code, error in MISTAKES:
        result = await sqlite_cli(*args)
        assert (result.code, result.stderr) == (code, f"jianbao: {error}\n"), args
    assert json.loads((await sqlite_cli("broadcast", "list", "--json")).stdout) == []
    assert sqlite_cli.telegram.delivered() == {}
