"""The Telegram channel: a python-telegram-bot Application fed by our own webhook route.

- webhook.py: POST /telegram (secret header first, then the update), and the channel's runtime state;
- lifecycle.py: building, starting and stopping the Application with the app, commands announced;
- handlers.py: what the bot does with commands, text, page buttons and inline queries;
- replies.py, keyboard.py, deeplinks.py: the texts, the paging buttons, the t.me/<bot>?start= links.

The channel is on when settings.telegram_token is set; without it /telegram answers 404, and without
settings.telegram_secret it answers 403 to everything (an unchecked webhook would take anyone's updates).
"""

from __future__ import annotations

from aiohttp import web

from bot.telegram.deeplinks import search_payload
from bot.telegram.lifecycle import WEBHOOK_PATH, telegram_context
from bot.telegram.webhook import RUNTIME, SECRET_HEADER, TelegramRuntime, receive_update

__all__ = ["RUNTIME", "SECRET_HEADER", "WEBHOOK_PATH", "TelegramRuntime", "search_payload", "setup"]


def setup(app: web.Application) -> None:
    """Add the webhook route and the bot's start/stop step to the app."""
    app[RUNTIME] = TelegramRuntime()
    app.router.add_post(WEBHOOK_PATH, receive_update)
    app.cleanup_ctx.append(telegram_context)
