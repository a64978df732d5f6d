"""Updates as Telegram POSTs them to a webhook (Bot API "Update"), for tests to send to /telegram.

Shapes follow real deliveries: a command carries its bot_command entity (python-telegram-bot's
CommandHandler needs it, as Telegram always sends it), private chats have the user's id as chat id,
callback queries carry the bot's message they were pressed on, inline queries have an offset string.
"""

from __future__ import annotations

import itertools
import re
import time
from typing import Any

from tests.fakes.telegram_html import utf16_units

_update_ids = itertools.count(815_000_001)
_message_ids = itertools.count(1)
_query_ids = itertools.count(4_328_112_000_000_000_001)
_COMMAND = re.compile(r"/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]+)?")


def user(user_id: int) -> dict[str, Any]:
    return {
        "id": user_id,
        "is_bot": False,
        "first_name": "读者",
        "username": f"reader{user_id}",
        "language_code": "zh-hans",
    }


def chat(chat_id: int) -> dict[str, Any]:
    if chat_id > 0:
        return {"id": chat_id, "type": "private", "first_name": "读者", "username": f"reader{chat_id}"}
    return {"id": chat_id, "type": "supergroup", "title": "端侧AI读书群"}


def next_update_id() -> int:
    return next(_update_ids)


def message_update(chat_id: int, text: str, *, from_id: int | None = None) -> dict[str, Any]:
    """A new text message in a chat (a private chat unless chat_id is negative)."""
    message: dict[str, Any] = {
        "message_id": next(_message_ids),
        "from": user(from_id if from_id is not None else abs(chat_id)),
        "chat": chat(chat_id),
        "date": int(time.time()),
        "text": text,
    }
    command = _COMMAND.match(text)
    if command:
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": utf16_units(command.group())}]
    return {"update_id": next_update_id(), "message": message}


def sticker_update(chat_id: int) -> dict[str, Any]:
    """A message with no text at all."""
    return {
        "update_id": next_update_id(),
        "message": {
            "message_id": next(_message_ids),
            "from": user(chat_id),
            "chat": chat(chat_id),
            "date": int(time.time()),
            "sticker": {
                "file_id": "CAACAgIAAxkBAAEBQ2Fm",
                "file_unique_id": "AgADQ2Fm",
                "type": "regular",
                "width": 512,
                "height": 512,
                "is_animated": False,
                "is_video": False,
            },
        },
    }


def callback_update(chat_id: int, message: dict[str, Any], data: str) -> dict[str, Any]:
    """A press on an inline keyboard button of `message` (a Message object the bot sent)."""
    return {
        "update_id": next_update_id(),
        "callback_query": {
            "id": str(next(_query_ids)),
            "from": user(abs(chat_id)),
            "message": message,
            "chat_instance": "-5783121409312357264",
            "data": data,
        },
    }


def inline_update(user_id: int, query: str, offset: str = "") -> dict[str, Any]:
    """@bot <query> typed in any chat."""
    return {
        "update_id": next_update_id(),
        "inline_query": {
            "id": str(next(_query_ids)),
            "from": user(user_id),
            "query": query,
            "offset": offset,
            "chat_type": "private",
        },
    }
