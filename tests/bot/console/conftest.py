"""The console through the real app: an editor, demo issues, subscribers, and the fake Telegram and
WeChat APIs behind `serve`'s own worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from bot.app import create_app
from bot.console.passwords import hash_password
from bot.importing import import_paths
from bot.settings import Settings
from storage.audit import AuditEntry, AuditTrail
from storage.database import Database
from storage.editors import EditorStore
from storage.issues import IssueStore
from storage.subscribers import SubscriberStore
from tests.bot.helpers import DEMO_DIR, sqlite_url
from tests.bot.signup_helpers import csrf_field
from tests.fakes.telegram_api import TOKEN, FakeTelegram, running_fake_telegram
from tests.fakes.wechat_api import APPID, SECRET, FakeWeChatApi, running_fake_wechat

NAME = "editor-li"
PASSWORD = "correct horse battery staple"
DAY = "2020-07-02"
CHATS = (100_001, 100_002, 100_003)


@dataclass
class SignedIn:
    client: TestClient[web.Request, web.Application]
    telegram: FakeTelegram
    wechat: FakeWeChatApi
    database_url: str
    field: str = ""  # the CSRF field of the last page read

    async def page(self, path: str, status: int = 200) -> str:
        response = await self.client.get(path, allow_redirects=False)
        html = await response.text()
        assert response.status == status, html[:500]
        if 'name="csrf_token"' in html:
            self.field = csrf_field(html)
        return html

    async def post(
        self, path: str, data: dict[str, Any] | list[tuple[str, Any]], **kwargs: Any
    ) -> ClientResponse:
        fields = list(data.items()) if isinstance(data, dict) else list(data)
        return await self.client.post(
            path, data=[("csrf_token", self.field), *fields], allow_redirects=False, **kwargs
        )

    async def audit(self) -> list[AuditEntry]:
        async with Database(self.database_url) as database:
            return await AuditTrail(database).recent()


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[SignedIn]:
    url = sqlite_url(tmp_path / "console.db")
    async with Database(url) as database:
        await database.migrate()
        await import_paths([DEMO_DIR / f"{DAY}.md"], IssueStore(database))
        await SubscriberStore(database).import_active([("telegram", str(chat), ()) for chat in CHATS])
        await EditorStore(database).add(NAME, hash_password(PASSWORD))
    async with running_fake_telegram() as telegram, running_fake_wechat() as wechat:
        settings = Settings(
            database_url=url,
            public_url="http://127.0.0.1",
            secret_key="console-test-secret-key",
            track_links=True,
            telegram_token=TOKEN,
            telegram_secret="a-webhook-secret",
            telegram_api_url=telegram.url,
            wechat_appid=APPID,
            wechat_secret=SECRET,
            wechat_token="a-wechat-token",
            wechat_api_url=wechat.url,
            wechat_thumb_media_id="a-cover-media-id",
            serve_worker="on",
            rate_limits=False,
            worker_poll_seconds=0.05,
        )
        async with TestClient(TestServer(create_app(settings), host="127.0.0.1")) as client:
            console = SignedIn(client, telegram, wechat, url)
            await console.page("/console/sign-in")
            signed = await console.post("/console/sign-in", {"name": NAME, "password": PASSWORD})
            assert signed.status == 303
            yield console
