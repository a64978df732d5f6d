"""python -m tests.fakes.serve: each fake in a process of its own, ready line, /_fake/stats, SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

import aiohttp
import aiosmtplib
import pytest

from tests.fakes import serve
from tests.fakes.telegram_api import TOKEN

ROOT = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def served(*args: str) -> AsyncIterator[list[str]]:
    """The fake's process, started with `args`; yields the URL(s) of its ready line, and checks on the
    way out that SIGTERM ends it cleanly."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.serve",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        assert line.startswith("ready "), line + (await process.stderr.read()).decode()
        yield line.split()[1:]
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 10)
        assert process.returncode == 0, stderr.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_telegram_serves_until_sigterm() -> None:
    args = ("telegram", "--port", "0", "--rate-limit", "--no-validate", "--no-record")
    async with (
        served(*args, "--faults", "500=0.5", "--seed", "7") as [url],
        aiohttp.ClientSession() as session,
    ):
        assert url.startswith("http://127.0.0.1:")
        assert not url.endswith(":0")  # the real port, not the one asked for
        async with session.post(f"{url}/_fake/block", json={"chat_ids": [99]}) as response:
            assert response.status == 200
        statuses = []
        for chat_id in (1, 2, 3, 4, 99):
            async with session.post(
                f"{url}/bot{TOKEN}/sendMessage", json={"chat_id": chat_id, "text": "x"}
            ) as r:
                statuses.append(r.status)
        async with session.get(f"{url}/_fake/stats") as response:
            stats = await response.json()
    assert statuses.count(200) == stats["accepted"] == len(stats["delivered"])
    assert set(statuses) <= {200, 403, 500}
    assert 500 in statuses  # seed 7 hits some of these chats
    assert stats["errors"] == len(statuses) - stats["accepted"]
    assert stats["first_accept"] <= stats["last_accept"]


async def test_wechat_serves_until_sigterm() -> None:
    async with (
        served("wechat", "--mass-quota", "3") as [url],
        aiohttp.ClientSession() as session,
        session.get(f"{url}/_fake/stats") as response,
    ):
        assert (await response.json())["mass_quota"] == 3


async def test_smtp_serves_until_sigterm() -> None:
    async with served("smtp", "--stats-port", "0", "--no-record") as [smtp_url, stats_url]:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "news@jianbao.example", "r@example.com", "简报"
        message["Date"], message["Message-ID"] = formatdate(), "<1@jianbao.example>"
        message.set_content("正文")
        port = int(smtp_url.rsplit(":", 1)[1])
        await aiosmtplib.send(message, hostname="127.0.0.1", port=port, timeout=5)
        async with aiohttp.ClientSession() as session, session.get(f"{stats_url}/_fake/stats") as response:
            assert (await response.json())["delivered"] == [["r@example.com", 1]]


def test_bad_faults_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert serve.main(["telegram", "--faults", "451=0.1"]) == 2
    assert "unknown fault" in capsys.readouterr().err
    assert serve.main(["smtp", "--faults", "drop"]) == 2
