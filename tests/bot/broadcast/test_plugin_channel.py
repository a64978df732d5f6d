"""A channel no file of bot/ or storage/ knows (tests/channels/pigeon.py, loaded by
JIANBAO_CHANNEL_PLUGINS) goes through `render`, `subscribers import`, `broadcast send`, `worker` and
`broadcast status`, run as an editor runs them: on the registry alone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.bot.broadcast.conftest import DAY
from tests.bot.helpers import CliResult, run_cli

ROOT = Path(__file__).resolve().parents[3]


class Loft:
    """The pigeon's loft: records every message it is sent, in order."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str]] = []
        app = web.Application()
        app.router.add_post("/messages", self._receive)
        self.server = TestServer(app, host="127.0.0.1")

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.received.append((body["loft"], body["text"]))
        return web.json_response({"id": str(len(self.received))})

    @property
    def url(self) -> str:
        return str(self.server.make_url("/messages"))


@pytest.fixture
async def loft() -> AsyncIterator[Loft]:
    found = Loft()
    await found.server.start_server()
    try:
        yield found
    finally:
        await found.server.close()


async def test_a_plugin_channel_goes_through_every_command(
    cli_database_url: str, tmp_path: Path, loft: Loft
) -> None:
    env = {
        "JIANBAO_CHANNEL_PLUGINS": "tests.channels.pigeon:PIGEON",
        "JIANBAO_PIGEON_URL": loft.url,
        "JIANBAO_RATE_LIMITS": "false",
        "JIANBAO_WORKER_POLL_SECONDS": "0.1",
    }
    (tmp_path / ".env").write_text("".join(f"{name}={value}\n" for name, value in env.items()))

    async def jianbao(*args: str) -> CliResult:
        return await asyncio.to_thread(
            run_cli, *args, database_url=cli_database_url, cwd=tmp_path, python_path=ROOT
        )

    assert (await jianbao("import", "--demo")).code == 0
    rendered = await jianbao("render", str(DAY), "--channel", "pigeon", "--json")
    assert rendered.code == 0, rendered.stderr
    messages = json.loads(rendered.stdout)["messages"]
    assert messages[0].startswith("嵌入式AI简报")
    assert len(messages) >= 3

    (tmp_path / "lofts.csv").write_text(
        "channel,address,topics\npigeon,alpha,\npigeon,bravo,\npigeon,Not A Loft,\n"
    )
    imported = await jianbao("subscribers", "import", "lofts.csv")
    assert imported.code == 1  # one bad row, named by its line; the others are in
    assert imported.stderr_lines == [
        "jianbao: subscribers import: line 4: a pigeon loft is 3-20 lowercase letters"
    ]
    listed = json.loads((await jianbao("subscribers", "list", "--channel", "pigeon", "--json")).stdout)
    assert [row["address"] for row in listed] == ["alpha", "bravo"]

    dry = json.loads((await jianbao("broadcast", "send", str(DAY), "--dry-run", "--json")).stdout)
    assert dry["audience"]["pigeon"] == {"pending": 2}
    assert dry["payloads"]["pigeon"] == {"messages": len(messages)}
    started = await jianbao("broadcast", "send", str(DAY), "--channel", "pigeon", "--json")
    assert started.code == 0, started.stderr
    assert json.loads(started.stdout)["added_pending"] == 2
    worked = await jianbao("worker", "--until-done")
    assert worked.code == 0, worked.stderr
    status = json.loads((await jianbao("broadcast", "status", str(DAY), "--json")).stdout)
    assert (status["state"], status["counts"]) == ("done", {"pigeon": {"sent": 2}})

    for name in ("alpha", "bravo"):  # every message once, in order
        assert [text for to, text in loft.received if to == name] == messages
    assert len(loft.received) == 2 * len(messages)


def test_no_file_of_bot_or_storage_knows_the_plugin() -> None:
    mentions = [
        path
        for folder in ("bot", "storage")
        for path in (ROOT / folder).rglob("*.py")
        if "pigeon" in path.read_text(encoding="utf-8").lower()
    ]
    assert mentions == []
