"""What the features of the service share: its storage and the `Services` every route reaches through
the app's SERVICES key.

A leaf module: the features (site, sign-up, WeChat, Telegram, admin, broadcasts) and the command line
import it, and it imports none of them, so neither they nor the CLI import the web application's root
(bot/app.py), which builds them all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from aiohttp import web

from bot.metrics import Metrics
from bot.rendering import Renderer
from bot.settings import Settings
from bot.topics import TopicVocabulary
from channels.registry import ChannelRegistry, channel_registry
from storage.database import Database
from storage.issues import IssueStore
from storage.links import LinkStore
from storage.subscribers import SubscriberStore

if TYPE_CHECKING:
    from storage.search.index import SearchIndex


@dataclass(frozen=True, slots=True)
class Storage:
    database: Database
    issues: IssueStore


@asynccontextmanager
async def open_storage(settings: Settings) -> AsyncIterator[Storage]:
    database = Database(settings.database_url or None)
    await database.open()
    try:
        await database.migrate()
        yield Storage(database=database, issues=IssueStore(database))
    finally:
        await database.close()


@dataclass
class Services:
    """Everything the routes use, built in order by `create_app`."""

    settings: Settings
    storage: Storage
    subscribers: SubscriberStore
    links: LinkStore
    search: SearchIndex
    renderer: Renderer
    metrics: Metrics
    channels: ChannelRegistry = field(default_factory=channel_registry)
    # The chat and sign-up features (WeChat's webhook, the Telegram bot, email sign-up) -> why each is off
    # (empty when on); `serve` prints it at start.
    channel_status: dict[str, str] = field(default_factory=dict)
    # Every registered channel -> why it cannot send broadcasts (empty when it can).
    sending_status: dict[str, str] = field(default_factory=dict)

    @cached_property
    def topics(self) -> TopicVocabulary:
        """Readers' topic words as search understands them (built on first use, on `search`)."""
        return TopicVocabulary(self.search)


SERVICES = web.AppKey("services", Services)
