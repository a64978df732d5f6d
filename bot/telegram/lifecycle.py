"""Starting and stopping the bot with the app: python-telegram-bot's Application without an updater
(our /telegram route feeds it), pointed at settings.telegram_api_url, commands announced once at start.

Telegram being unreachable at start must not take the rest of the service (WeChat, email, the site)
down with it: the first attempt is awaited, so a healthy start is complete before the first request,
and if it fails the bot keeps trying in the background (/telegram answers 503 meanwhile, and
Telegram redelivers). A token the Bot API rejects is final: the channel reports itself off.

The bot token is part of every Bot API URL, and httpx logs request URLs (INFO) as python-telegram-bot
logs its API root (DEBUG): a filter on those loggers replaces the token before anything is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from telegram import BotCommand
from telegram.error import InvalidToken, TelegramError
from telegram.ext import Application

from bot.services import SERVICES, Services
from bot.settings import Settings
from bot.telegram.handlers import CHANNEL, BotApplication, TelegramHandlers
from bot.telegram.replies import COMMANDS
from bot.telegram.webhook import RUNTIME, TelegramRuntime

log = logging.getLogger(__name__)

# Channel status lines (`serve` and /healthz show them); they name settings, they hold none.
SECRET_REQUIRED = "refusing every update (403): JIANBAO_TELEGRAM_SECRET is required"  # noqa: S105
TOKEN_REJECTED = "off: the Bot API rejected JIANBAO_TELEGRAM_TOKEN"  # noqa: S105
UNREACHABLE = "starting: the Bot API is unreachable, retrying"
FAILED = "off: the bot failed to start (see the log)"
FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 300.0
WEBHOOK_PATH = "/telegram"
# What the webhook asks Telegram for: exactly the updates the handlers answer.
ALLOWED_UPDATES = ("message", "callback_query", "inline_query")
# Loggers that write Bot API URLs, which hold the token.
_URL_LOGGERS = ("httpx", "telegram.Bot", "telegram.ext.ExtBot")


class TokenRedactor(logging.Filter):
    def __init__(self, token: str) -> None:
        super().__init__()
        self._token = token

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self._token in message:
            record.msg = message.replace(self._token, "<token>")
            record.args = None
        return True


def build_application(settings: Settings, handlers: TelegramHandlers) -> BotApplication:
    root = settings.telegram_api_url.rstrip("/")
    application = (
        Application.builder()
        .token(settings.telegram_token)
        .base_url(f"{root}/bot")
        .base_file_url(f"{root}/file/bot")
        .updater(None)
        .job_queue(None)
        .build()
    )
    handlers.register(application)
    return application


async def telegram_context(app: web.Application) -> AsyncIterator[None]:
    """The channel's cleanup context: runs inside the services context, so app[SERVICES] exists."""
    services = app[SERVICES]
    settings = services.settings
    runtime = app[RUNTIME]
    if not settings.telegram_token:
        yield
        return
    runtime.enabled = True
    runtime.secret = settings.telegram_secret.encode()
    if not settings.telegram_secret:
        services.channel_status[CHANNEL] = SECRET_REQUIRED
        log.warning("telegram: %s", SECRET_REQUIRED)
        yield
        return
    redactor = TokenRedactor(settings.telegram_token)
    for name in _URL_LOGGERS:
        logging.getLogger(name).addFilter(redactor)
    try:
        application = build_application(settings, TelegramHandlers(services))
        first_attempt = asyncio.Event()
        starter = asyncio.create_task(_keep_starting(application, runtime, services, first_attempt))
        await first_attempt.wait()
        try:
            yield
        finally:
            starter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starter
            runtime.application = None
            if application.running:
                await application.stop()
            await application.shutdown()
            await application.bot.shutdown()  # closes the HTTP clients of a start that never succeeded
    finally:
        for name in _URL_LOGGERS:
            logging.getLogger(name).removeFilter(redactor)


async def _keep_starting(
    application: BotApplication, runtime: TelegramRuntime, services: Services, first_attempt: asyncio.Event
) -> None:
    delay = FIRST_RETRY_SECONDS
    try:
        while True:
            try:
                await application.initialize()
            except InvalidToken:  # its message quotes the token: not logged
                services.channel_status[CHANNEL] = TOKEN_REJECTED
                log.error("telegram: %s", TOKEN_REJECTED)
                return
            except TelegramError as error:  # NetworkError, TimedOut, a 5xx: Telegram may be back soon
                services.channel_status[CHANNEL] = UNREACHABLE
                log.warning("telegram: getMe failed (%s); retrying in %.0f s", type(error).__name__, delay)
                first_attempt.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_SECONDS)
                continue
            except Exception:  # a bug, not an outage: said once, and the channel stays off
                services.channel_status[CHANNEL] = FAILED
                log.exception("telegram: the bot failed to start")
                return
            await application.start()
            await _announce(application, services.settings)
            runtime.application = application
            services.channel_status[CHANNEL] = ""
            log.info("telegram: bot @%s is running", application.bot.username)
            return
    finally:
        first_attempt.set()


async def _announce(application: BotApplication, settings: Settings) -> None:
    """The command menu, and the webhook when the service knows its public https address."""
    try:
        await application.bot.set_my_commands([BotCommand(name, text) for name, text in COMMANDS])
    except TelegramError as error:
        log.warning("telegram: setMyCommands failed: %s", error.message)
    public = settings.public_url.rstrip("/")
    if not public.startswith("https://"):
        return
    try:
        await application.bot.set_webhook(
            f"{public}{WEBHOOK_PATH}",
            secret_token=settings.telegram_secret,
            allowed_updates=list(ALLOWED_UPDATES),
        )
    except TelegramError as error:
        log.warning("telegram: setWebhook failed: %s", error.message)
