"""Fixtures of the broadcast tests: a database with the demo issue 2020-07-02 and subscribers on every
channel, the three fake platforms running on loopback, and settings that point the worker at them; the two
fake group-robot webhooks (WeCom, Feishu) and the keys, tokens and secrets of their robots."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.broadcast.runtime import WorkerParts, open_worker
from bot.importing import import_paths
from bot.settings import Settings
from storage.database import Database
from storage.issues import IssueStore
from storage.subscribers import SubscriberStore
from tests.bot.helpers import DEMO_DIR
from tests.fakes.feishu_api import FakeFeishu, running_fake_feishu
from tests.fakes.smtp import FakeSmtp, running_fake_smtp
from tests.fakes.telegram_api import TOKEN, FakeTelegram, running_fake_telegram
from tests.fakes.wechat_api import APPID, SECRET, FakeWeChatApi, running_fake_wechat
from tests.fakes.wecom_api import FakeWeCom, running_fake_wecom

DAY = dt.date(2020, 7, 2)
PUBLIC_URL = "https://jianbao.example.com"
THUMB = "thumb-media-1"


def chat_ids(count: int, start: int = 100_000) -> list[int]:
    return list(range(start, start + count))


def emails(count: int) -> list[str]:
    return [f"reader{n}@example.com" for n in range(count)]


def openid(n: int) -> str:
    return f"oJianbaoTestOpenid{n:010d}"


def wecom_key(n: int) -> str:
    """A WeCom robot key shaped like a real one (a UUID)."""
    return f"{n:08x}-7a3c-4bc4-97a0-0ec2a1fa5aaa"


def feishu_token(n: int) -> str:
    """A Feishu hook token shaped like a real one (a UUID)."""
    return f"{n:08x}-d78e-4a07-bd07-265f269f86fd"


def feishu_secret(n: int) -> str:
    """A signing secret of its own for each bot, so that a sender signing with another bot's is refused."""
    return f"nIMtb7r3N9pk{n:010d}"


@dataclass
class World:
    db: Database
    telegram: FakeTelegram
    smtp: FakeSmtp
    wechat: FakeWeChatApi
    settings: Settings
    subscribers: SubscriberStore

    def with_settings(self, **changes: object) -> Settings:
        return self.settings.model_copy(update=changes)

    async def add(self, telegram: int = 0, email: int = 0, wechat: int = 0) -> None:
        rows = [("telegram", str(chat), ()) for chat in chat_ids(telegram)]
        rows += [("email", address, ()) for address in emails(email)]
        rows += [("wechat", openid(n), ()) for n in range(wechat)]
        await self.subscribers.import_active(rows)

    async def run_worker(self, settings: Settings | None = None, *, seconds: float = 60.0) -> WorkerParts:
        """One worker until nothing is left to send."""
        async with open_worker(settings or self.settings, self.db, name="test-worker") as parts:
            await asyncio.wait_for(parts.worker.run(asyncio.Event(), until_idle=True), seconds)
        return parts


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> AsyncIterator[World]:
    await import_paths([DEMO_DIR / f"{DAY}.md"], IssueStore(db))
    with running_fake_smtp() as smtp:
        async with running_fake_telegram() as telegram, running_fake_wechat() as wechat:
            settings = Settings(
                public_url=PUBLIC_URL,
                secret_key="test-secret-key-for-broadcasts",
                telegram_token=TOKEN,
                telegram_api_url=telegram.url,
                smtp_url=f"smtp://127.0.0.1:{smtp.port}",
                wechat_appid=APPID,
                wechat_secret=SECRET,
                wechat_api_url=wechat.url,
                wechat_thumb_media_id=THUMB,
                rate_limits=False,
                worker_poll_seconds=0.05,
                worker_lease_seconds=30.0,
                retry_seconds=0.05,
                send_timeout=2.0,
                smtp_connections=4,
                # The robot channels off: their default API roots are the real platforms' (test_robots.py
                # points them at its fakes).
                wecom_api_url="",
                feishu_api_url="",
            )
            yield World(db, telegram, smtp, wechat, settings, SubscriberStore(db))


@dataclass
class Robots:
    """The two fake group-robot webhooks, with their real per-robot limits (20 a minute for a WeCom
    robot; 5 a second and 100 a minute for a Feishu bot) and no robot yet."""

    wecom: FakeWeCom
    feishu: FakeFeishu

    def settings(self, settings: Settings, **changes: object) -> Settings:
        """`settings` with the robot channels pointed at these fakes."""
        return settings.model_copy(
            update={"wecom_api_url": self.wecom.url, "feishu_api_url": self.feishu.url, **changes}
        )


@pytest.fixture
async def robots() -> AsyncIterator[Robots]:
    async with running_fake_wecom() as wecom, running_fake_feishu() as feishu:
        yield Robots(wecom, feishu)
