"""The composition root: `create_app(settings)` builds storage, search, renderers and the channels in
order, and closes them in reverse (aiohttp's cleanup contexts, like starlette's lifespan).

Nothing lives at module level: every part hangs off the application under a typed key, so two apps
(two tests, two ports) never share state.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import secrets
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from bot import admin, console, git_hook, http_policy, site, subscriptions, telegram, wechat
from bot.broadcast import routes as broadcasts
from bot.errors import error_middleware
from bot.importing import import_paths
from bot.metrics import Metrics
from bot.rendering import Renderer
from bot.services import SERVICES, Services, Storage, open_storage
from bot.settings import Settings
from channels.channel import needs_public_url
from channels.email.channel import EMAIL
from channels.registry import ChannelRegistry, channel_registry
from channels.telegram.channel import TELEGRAM
from channels.wechat.channel import WECHAT
from content.demo import demo_issue_dir
from storage.links import LinkStore
from storage.subscribers import SubscriberStore

log = logging.getLogger(__name__)

# Webhook and form bodies are small; anything larger is refused with 413 before it is read.
MAX_BODY_BYTES = 1024 * 1024
# How often a running service looks for issues imported or deleted by another process.
SEARCH_REFRESH_SECONDS = 30.0


def channel_status(settings: Settings) -> dict[str, str]:
    """Which of the service's chat and sign-up features (WeChat's webhook, the Telegram bot, the email
    sign-up form) the settings turn on; a feature whose settings are missing is simply off. Whether each
    registered channel can send broadcasts is `sending_status`."""
    telegram = "" if settings.telegram_token else "off: JIANBAO_TELEGRAM_TOKEN is not set"
    if settings.telegram_token and not settings.telegram_secret:
        telegram = "refusing every update (403): JIANBAO_TELEGRAM_SECRET is required"
    email = "" if settings.smtp_url else "off: JIANBAO_SMTP_URL is not set"
    if settings.smtp_url and not settings.public_url:
        email = f"off: {needs_public_url('confirm and unsubscribe links')}"
    return {
        WECHAT.name: "" if settings.wechat_token else "off: JIANBAO_WECHAT_TOKEN is not set",
        TELEGRAM.name: telegram,
        EMAIL.name: email,
    }


def sending_status(settings: Settings, channels: ChannelRegistry) -> dict[str, str]:
    """Every registered channel -> why it cannot send broadcasts ("" when it can)."""
    return {
        name: f"off: {reason}" if reason else "" for name, reason in channels.off_reasons(settings).items()
    }


def channel_warnings(settings: Settings) -> list[str]:
    """What is on but weaker than it should be: `serve` prints these at start and the app logs them."""
    warnings = []
    if settings.wechat_token and not settings.wechat_aes_key:
        warnings.append(
            "wechat runs in plain (compatible) mode: its signature does not cover the message body. "
            "Use safe mode: set JIANBAO_WECHAT_AES_KEY (and JIANBAO_WECHAT_APPID)"
        )
    return warnings


def create_app(settings: Settings) -> web.Application:
    """The service's web application; ValueError for a setting it cannot safely start with."""
    admin.check_admin_token(settings)
    git_hook.check_git_settings(settings)
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[error_middleware])
    app.cleanup_ctx.append(_services(settings))  # first: every feature's own context runs inside it
    http_policy.setup(app, settings.trusted_proxies)
    for feature in (site, admin, subscriptions, wechat, telegram, broadcasts, console, git_hook):
        feature.setup(app)
    for warning in channel_warnings(settings):
        log.warning("%s", warning)
    return app


async def freeze_long_lived(app: web.Application) -> None:
    """After startup (an on_startup handler `serve` adds last): everything built so far (the corpus, the
    index's Python side, templates) lives as long as the process, so it is moved out of the collector's
    reach and not re-scanned by every full collection, which otherwise shows as latency spikes under
    load. Only for a process that serves one app: frozen objects are never collected, so a process that
    builds apps one after another (the tests) would keep every closed app (~25 MB each)."""
    gc.collect()
    gc.freeze()


async def prepare_storage(settings: Settings) -> None:
    """Migrate, and give the embedded default its demo issues: what every start does first."""
    async with open_storage(settings) as storage:
        await _import_demo_if_empty(settings, storage)


async def _import_demo_if_empty(settings: Settings, storage: Storage) -> None:
    if not settings.database_url and await storage.issues.count() == 0:
        # The embedded default: a fresh SQLite file gets the bundled demo issues.
        report = await import_paths([demo_issue_dir()], storage.issues)
        log.info("imported %d demo issues", len(report.imported))


def _services(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    if not settings.secret_key:
        # One random key for this app, shared by tracking links (Renderer) and subscriber tokens: what is
        # signed with it dies with the process, which is right for a key nobody configured.
        settings = settings.model_copy(update={"secret_key": secrets.token_urlsafe(32)})

    channels = channel_registry(settings.channel_plugins)

    async def context(app: web.Application) -> AsyncIterator[None]:
        # Imported when an app is built, not with this module: a process that imports bot.app without
        # serving (a tool, a test's helper) then does not load the search engine (~45 MB of tantivy,
        # rjieba and OpenCC).
        from storage.search.follow import refresh_index
        from storage.search.index import SearchIndex

        async with open_storage(settings) as storage:
            await _import_demo_if_empty(settings, storage)
            search = SearchIndex()
            await refresh_index(search, storage.issues)
            services = Services(
                settings=settings,
                storage=storage,
                subscribers=SubscriberStore(storage.database, keys=channels.address_key),
                links=LinkStore(storage.database),
                search=search,
                renderer=Renderer(settings, channels),
                metrics=Metrics(),
                channels=channels,
                channel_status=channel_status(settings),
                sending_status=sending_status(settings, channels),
            )
            app[SERVICES] = services
            refresher = asyncio.create_task(_keep_search_fresh(services))
            try:
                yield
            finally:
                refresher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await refresher

    return context


async def _keep_search_fresh(services: Services) -> None:
    from storage.search.follow import refresh_index  # loaded by then; see _services

    while True:
        await asyncio.sleep(SEARCH_REFRESH_SECONDS)
        try:
            report = await refresh_index(services.search, services.storage.issues)
        except OSError:  # the database is briefly unreachable: try again next round
            log.warning("search refresh failed; retrying in %.0f s", SEARCH_REFRESH_SECONDS)
            continue
        if report.changed:
            log.info("search index: %d issues re-indexed, %d removed", report.indexed, report.removed)
