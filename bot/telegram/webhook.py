"""POST /telegram: the updates Telegram delivers, checked and handed to python-telegram-bot.

The secret header is compared (in constant time) before the body is read, so a caller without it costs
us nothing and learns nothing. The update is then processed before we answer: our handlers take
milliseconds, and answering after the work means a failure we did not catch is a 500 that Telegram
redelivers. Redeliveries of an update already handled are recognised by update_id and skipped.
The answer is an empty 200: a JSON body would be taken by Telegram as a method call to run.
"""

from __future__ import annotations

import hmac
import json
import logging
from dataclasses import dataclass, field

from aiohttp import web
from cachetools import FIFOCache
from telegram import Update

from bot.telegram.handlers import BotApplication
from content.errors import BadInput, Unavailable

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105  # a header name, not a secret
# Telegram redelivers an update it got no 200 for; the ids of the last this many are remembered.
RECENT_UPDATES = 1024


@dataclass
class TelegramRuntime:
    """This app's Telegram state: set up by the channel's start step, read by the route."""

    enabled: bool = False  # a token is configured
    secret: bytes = b""
    application: BotApplication | None = None  # None until the Bot API answered getMe
    recent_updates: FIFOCache[int, None] = field(default_factory=lambda: FIFOCache(maxsize=RECENT_UPDATES))

    def first_delivery(self, update_id: int) -> bool:
        if update_id in self.recent_updates:
            return False
        self.recent_updates[update_id] = None
        return True


RUNTIME = web.AppKey("telegram_runtime", TelegramRuntime)


def secret_matches(given: str | None, expected: bytes) -> bool:
    """An empty expected secret matches nothing: without a secret anyone could post us updates."""
    if not expected or given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected)


async def receive_update(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    if not runtime.enabled:
        raise web.HTTPNotFound()
    if not secret_matches(request.headers.get(SECRET_HEADER), runtime.secret):
        raise web.HTTPForbidden()
    application = runtime.application
    if application is None:
        # Telegram keeps undelivered updates for a day and retries: nothing is lost by waiting.
        raise Unavailable("the Telegram bot is not running yet")
    update = _read_update(await request.read(), application)
    if runtime.first_delivery(update.update_id):
        await application.process_update(update)
    return web.Response(status=200)


def _read_update(body: bytes, application: BotApplication) -> Update:
    try:
        data = json.loads(body)
    except ValueError:  # also not UTF-8 (UnicodeDecodeError is a ValueError)
        raise BadInput("the body is not JSON") from None
    except RecursionError:  # [[[[... a million deep fits in the body limit and exhausts the parser's stack
        raise BadInput("the body is nested too deeply to be a Telegram update") from None
    if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
        raise BadInput("the body is not a Telegram update (a JSON object with update_id)")
    try:
        update = Update.de_json(data, application.bot)
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError, OverflowError, OSError):
        # A field of the wrong type or a required one missing: python-telegram-bot fails on it in
        # different ways, all of them meaning "not an update Telegram would send". RecursionError: a
        # reply_to_message chain thousands deep, which de_json follows recursively. OverflowError and OSError
        # (EOVERFLOW from the platform's time functions): a date beyond what a datetime holds.
        raise BadInput("the body is not a valid Telegram update") from None
    # python-telegram-bot takes ids as they come; an object where a chat or user id belongs would fail
    # later, inside the library, as an unhashable key.
    for entity in (update.effective_chat, update.effective_user, update.effective_sender):
        if entity is not None and (not isinstance(entity.id, int) or isinstance(entity.id, bool)):
            raise BadInput("the body is not a valid Telegram update: an id is not a number")
    return update
