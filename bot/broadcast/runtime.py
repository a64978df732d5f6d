"""Building a broadcast worker from the settings: senders for the channels that are configured, shared
rates (PostgreSQL) or local ones (SQLite, one worker), the ledger and the payload cache.

Used by `jianbao worker`, by `serve` (its in-process worker) and by the tests, so all three run the same
composition. Senders are opened in order and closed in reverse.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import aiohttp

from bot.broadcast.control import sending_channels
from bot.broadcast.payloads import PayloadCache
from bot.broadcast.worker import BroadcastWorker, Senders, WorkerConfig
from bot.rendering import Renderer
from bot.settings import Settings
from bot.tokens import SubscriberTokens
from channels.mailer import SmtpPool
from channels.telegram.transport import ChannelDown, TelegramSender
from channels.wechat_api import WeChatApi
from storage.broadcasts import BroadcastStore
from storage.database import Database
from storage.deliveries import DeliveryLedger
from storage.issues import IssueStore
from storage.links import LinkStore
from storage.ratelimit import LocalRate, Rate, SharedRate, Unlimited

log = logging.getLogger(__name__)


def worker_name() -> str:
    """host:pid:random, unique per worker run, so a restarted process never owns its past claims."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


def worker_config(settings: Settings) -> WorkerConfig:
    return WorkerConfig(
        concurrency=max(1, settings.worker_concurrency),
        claim_batch=max(1, min(100, settings.worker_concurrency)),
        lease_seconds=settings.worker_lease_seconds,
        poll_seconds=settings.worker_poll_seconds,
        max_attempts=max(1, settings.max_attempts),
        retry_seconds=settings.retry_seconds,
        chat_interval=settings.telegram_chat_interval if settings.rate_limits else 0.0,
    )


def rates(settings: Settings, database: Database) -> dict[str, Rate]:
    if not settings.rate_limits:
        return {}
    made: dict[str, Rate] = {}
    for channel, per_second in (("telegram", settings.telegram_rate), ("email", settings.email_rate)):
        if per_second <= 0:
            made[channel] = Unlimited()
        elif database.backend == "postgresql":
            made[channel] = SharedRate(database, channel, per_second)
        else:
            made[channel] = LocalRate(per_second)
    return made


@dataclass
class WorkerParts:
    worker: BroadcastWorker
    broadcasts: BroadcastStore
    ledger: DeliveryLedger
    channels: tuple[str, ...]


@asynccontextmanager
async def open_worker(
    settings: Settings, database: Database, *, name: str | None = None
) -> AsyncIterator[WorkerParts]:
    """A worker on an open, migrated database, with a sender for each configured channel."""
    reasons = sending_channels(settings)
    async with AsyncExitStack() as stack:
        senders = Senders(public_url=settings.public_url)
        if not reasons["telegram"]:
            telegram = TelegramSender(
                settings.telegram_token,
                settings.telegram_api_url,
                connections=max(1, settings.worker_concurrency),
                timeout=settings.send_timeout,
            )
            stack.push_async_callback(telegram.close)
            try:
                await telegram.start()
            except ChannelDown as error:
                log.error("broadcast worker: telegram is off (%s)", error.message)
            else:
                senders.telegram = telegram
        if not reasons["email"]:
            pool = SmtpPool(settings.smtp_url, size=settings.smtp_connections, timeout=settings.send_timeout)
            stack.push_async_callback(pool.close)
            senders.email = pool
            senders.tokens = SubscriberTokens(settings.secret_key)
        if not reasons["wechat"]:
            session = await stack.enter_async_context(aiohttp.ClientSession())
            api = WeChatApi(
                session,
                base_url=settings.wechat_api_url,
                appid=settings.wechat_appid,
                secret=settings.wechat_secret,
            )
            api.timeout = settings.send_timeout
            senders.wechat = api
            senders.wechat_thumb_media_id = settings.wechat_thumb_media_id
        for channel, reason in reasons.items():
            if reason:
                log.info("broadcast worker: %s is off (%s)", channel, reason)
        broadcasts = BroadcastStore(database)
        ledger = DeliveryLedger(database, bounce_limit=settings.bounce_limit)
        payloads = PayloadCache(IssueStore(database), LinkStore(database), Renderer(settings))
        worker = BroadcastWorker(
            name=name or worker_name(),
            broadcasts=broadcasts,
            ledger=ledger,
            payloads=payloads,
            senders=senders,
            rates=rates(settings, database),
            config=worker_config(settings),
        )
        yield WorkerParts(worker=worker, broadcasts=broadcasts, ledger=ledger, channels=senders.channels)


def serve_runs_worker(settings: Settings) -> bool:
    """Whether `serve` runs a worker inside: "on", "off", or "auto" = only on the embedded SQLite default,
    where a separate `jianbao worker` would be one more thing to start for a one-machine setup."""
    mode = settings.serve_worker.strip().lower()
    return mode == "on" or (mode == "auto" and not settings.database_url)
