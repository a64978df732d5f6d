"""Building a broadcast worker from the settings: a sender for each registered channel that can send,
shared rates (PostgreSQL) or local ones (SQLite, one worker), the ledger and the payload cache.

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

from bot.broadcast.payloads import PayloadCache
from bot.broadcast.worker import BroadcastWorker, Senders, WorkerConfig
from bot.rendering import Renderer
from bot.settings import Settings
from bot.tokens import ReaderIds, SubscriberTokens
from channels.base import ChannelDown
from channels.registry import ChannelRegistry, channel_registry
from content.errors import BadInput
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
        stop_seconds=max(0.0, settings.worker_stop_seconds),
    )


def rates(settings: Settings, database: Database, channels: ChannelRegistry) -> dict[str, Rate]:
    """Each channel's account-wide rate: shared by every worker on PostgreSQL, local on SQLite."""
    if not settings.rate_limits:
        return {}
    made: dict[str, Rate] = {}
    for channel in channels:
        per_second = channel.rate(settings)
        if per_second <= 0:
            made[channel.name] = Unlimited()
        elif database.backend == "postgresql":
            made[channel.name] = SharedRate(database, channel.name, per_second)
        else:
            made[channel.name] = LocalRate(per_second)
    return made


@dataclass
class WorkerParts:
    worker: BroadcastWorker
    broadcasts: BroadcastStore
    ledger: DeliveryLedger
    channels: tuple[str, ...]
    payloads: PayloadCache


@asynccontextmanager
async def open_worker(
    settings: Settings, database: Database, *, name: str | None = None
) -> AsyncIterator[WorkerParts]:
    """A worker on an open, migrated database, with a sender for each configured channel."""
    channels = channel_registry(settings.channel_plugins)
    async with AsyncExitStack() as stack:
        tokens = SubscriberTokens(settings.secret_key) if settings.secret_key else None
        readers = (
            ReaderIds(settings.secret_key) if settings.secret_key and settings.track_subscribers else None
        )
        senders = Senders(tokens=tokens, public_url=settings.public_url, readers=readers)
        for channel in channels:
            reason = channel.off_reason(settings)
            if reason:
                log.info("broadcast worker: %s is off (%s)", channel.name, reason)
                continue
            try:
                sender = await channel.open_sender(settings)
            except (ChannelDown, BadInput) as error:  # BadInput: a setting it cannot use (a malformed URL)
                log.error("broadcast worker: %s is off (%s)", channel.name, error.message)
                continue
            stack.push_async_callback(sender.close)
            senders.open[channel.name] = (channel, sender)
        broadcasts = BroadcastStore(database)
        ledger = DeliveryLedger(database, bounce_limit=settings.bounce_limit)
        payloads = PayloadCache(IssueStore(database), LinkStore(database), Renderer(settings, channels))
        worker = BroadcastWorker(
            name=name or worker_name(),
            broadcasts=broadcasts,
            ledger=ledger,
            payloads=payloads,
            senders=senders,
            rates=rates(settings, database, channels),
            config=worker_config(settings),
        )
        yield WorkerParts(
            worker=worker, broadcasts=broadcasts, ledger=ledger, channels=senders.channels, payloads=payloads
        )


def serve_runs_worker(settings: Settings) -> bool:
    """Whether `serve` runs a worker inside: "on", "off", or "auto" = only on the embedded SQLite default,
    where a separate `jianbao worker` would be one more thing to start for a one-machine setup."""
    mode = settings.serve_worker.strip().lower()
    return mode == "on" or (mode == "auto" and not settings.database_url)
