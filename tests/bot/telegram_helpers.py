"""The Telegram tests' service: the real app on a loopback port, with telegram_api_url pointing at the fake
Bot API server, and updates POSTed to /telegram with the secret header as Telegram sends them."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from bot.app import create_app
from bot.services import SERVICES, Services
from bot.settings import Settings
from bot.telegram import SECRET_HEADER
from storage.subscribers import SubscriberStatus
from tests.bot.helpers import sqlite_url
from tests.fakes.telegram_api import TOKEN, FakeTelegram, running_fake_telegram
from tests.fakes.telegram_html import parse_html
from tests.fakes.telegram_updates import message_update

SECRET = "webhook-secret_0123456789"
READER = 424242  # a private chat: the reader's user id is the chat id


def copy_database(demo_db: tuple[str, Path], folder: Path) -> str:
    """A copy of the module's demo database for one service (importing takes a second, copying nothing)."""
    source = Path(demo_db[0].removeprefix("sqlite:///"))
    return sqlite_url(Path(shutil.copy(source, folder / "telegram.db")))


def telegram_settings(database_url: str, fake: FakeTelegram, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "telegram_token": TOKEN,
        "telegram_secret": SECRET,
        "telegram_api_url": fake.url,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class TelegramService:
    app: web.Application
    client: TestClient[Any, Any]
    fake: FakeTelegram

    @property
    def services(self) -> Services:
        return self.app[SERVICES]

    async def post(
        self, update: dict[str, Any] | bytes | str, *, secret: str | None = SECRET, status: int = 200
    ) -> ClientResponse:
        """POST one update to /telegram as Telegram does, and check the status."""
        if isinstance(update, dict):
            update = json.dumps(update, ensure_ascii=False)
        body = io.BytesIO(update.encode() if isinstance(update, str) else update)
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers[SECRET_HEADER] = secret
        response = await self.client.post("/telegram", data=body, headers=headers)
        text = await response.text()
        assert response.status == status, text
        assert "Traceback" not in text
        return response

    async def say(self, chat_id: int, text: str) -> dict[str, Any]:
        """Send a message to the bot; return the one reply it sent (its sendMessage parameters)."""
        before = len(self.fake.sent_to(chat_id))
        await self.post(message_update(chat_id, text))
        replies = self.fake.sent_to(chat_id)[before:]
        assert len(replies) == 1, (text, replies, self.fake.errors)
        return replies[0]

    async def status_of(self, chat_id: int) -> SubscriberStatus | None:
        subscriber = await self.services.subscribers.get("telegram", str(chat_id))
        return subscriber.status if subscriber else None


def visible(params: dict[str, Any]) -> str:
    """The text a reader sees of a sendMessage/editMessageText call (its HTML parsed as Telegram does)."""
    return parse_html(params["text"]).text


def callback_data(params: dict[str, Any]) -> list[str]:
    markup = params.get("reply_markup") or {}
    return [button["callback_data"] for row in markup.get("inline_keyboard", []) for button in row]


@asynccontextmanager
async def running_service(settings: Settings, fake: FakeTelegram) -> AsyncIterator[TelegramService]:
    app = create_app(settings)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield TelegramService(app, client, fake)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_service(
    tmp_path_factory: pytest.TempPathFactory, demo_db: tuple[str, Path]
) -> AsyncIterator[TelegramService]:
    """One app per test module (starting one builds the search index: most of a second); each test talks
    to it from chats of its own, and the fake's records are cleared before each test."""
    async with running_fake_telegram() as fake:
        settings = telegram_settings(copy_database(demo_db, tmp_path_factory.mktemp("telegram")), fake)
        async with running_service(settings, fake) as service:
            yield service


@pytest.fixture
def service(module_service: TelegramService) -> TelegramService:
    module_service.fake.clear()
    return module_service
