"""Sending Telegram messages with python-telegram-bot's Bot, and reading its errors as a broadcast must.

Error meanings (docs/channels.md, "Error meanings"): Forbidden -> the user blocked the bot;
BadRequest "chat not found" -> a dead id; other BadRequests ("can't parse entities") are content bugs that
no retry fixes; RetryAfter -> wait and resend; TimedOut -> the request went out and no answer came, so
the message may have been delivered: never resent; NetworkError (5xx, connection dropped) -> resend later.
BadRequest and TimedOut subclass NetworkError, so the order of the except clauses matters.

A pool timeout or a connect timeout means nothing was sent: those are retried, not "maybe delivered".
"""

from __future__ import annotations

import datetime as dt
import os
import warnings

import httpx
from telegram import Bot, LinkPreviewOptions
from telegram.error import (
    BadRequest,
    ChatMigrated,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest

# ChannelDown lives in channels.base (every channel raises it); re-exported for the existing importers.
from channels.base import ChannelDown, PushResult, PushStatus
from channels.telegram.payload import TelegramMessage

# The Bot API answers sendMessage in well under a second; after this long the answer is given up on
# and the message counts as "maybe delivered".
SEND_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 5.0

__all__ = ["CONNECT_TIMEOUT_SECONDS", "SEND_TIMEOUT_SECONDS", "ChannelDown", "TelegramSender"]


class TelegramSender:
    name = "telegram"

    def __init__(
        self,
        token: str,
        api_url: str,
        *,
        connections: int = 64,
        timeout: float = SEND_TIMEOUT_SECONDS,
    ) -> None:
        # python-telegram-bot 22 warns (PTBDeprecationWarning) whenever it builds a RetryAfter unless this
        # opts into the coming timedelta type, which _seconds() reads either way.
        os.environ.setdefault("PTB_TIMEDELTA", "true")
        request = HTTPXRequest(
            connection_pool_size=connections,
            read_timeout=timeout,
            write_timeout=timeout,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            # Waiting for a free connection is our own queueing, not the platform's slowness.
            pool_timeout=max(timeout, 60.0),
        )
        root = api_url.rstrip("/")
        self._bot = Bot(token, base_url=f"{root}/bot", request=request)

    async def start(self) -> None:
        try:
            await self._bot.initialize()  # getMe: a wrong token fails here, once, not per message
        except (InvalidToken, EndPointNotFound) as error:
            raise ChannelDown(
                f"telegram: the Bot API refused the bot token ({type(error).__name__})"
            ) from None
        except TelegramError as error:
            raise ChannelDown(f"telegram: cannot reach the Bot API ({type(error).__name__})") from None

    async def close(self) -> None:
        await self._bot.shutdown()

    async def push(self, chat_id: str, message: TelegramMessage) -> PushResult:
        try:
            sent = await self._bot.send_message(
                chat_id=int(chat_id),
                text=message.text,
                parse_mode=message.parse_mode,
                link_preview_options=LinkPreviewOptions(is_disabled=message.disable_web_page_preview),
            )
        except RetryAfter as error:
            return PushResult(PushStatus.RETRY, error="429 flood control", retry_after=_seconds(error))
        except Forbidden as error:
            return PushResult(PushStatus.BLOCKED, error=f"403 {_one_line(error.message)}")
        except ChatMigrated as error:
            return PushResult(PushStatus.BLOCKED, error=f"chat migrated to {error.new_chat_id}")
        except BadRequest as error:
            if "chat not found" in error.message.lower():
                return PushResult(PushStatus.BLOCKED, error="400 chat not found")
            return PushResult(PushStatus.FAILED, error=f"400 {_one_line(error.message)}")
        except TimedOut as error:
            if isinstance(error.__cause__, httpx.PoolTimeout | httpx.ConnectTimeout):
                return PushResult(PushStatus.RETRY, error="timeout before sending")
            return PushResult(PushStatus.UNCERTAIN, error="no answer in time: maybe delivered")
        except (InvalidToken, EndPointNotFound) as error:
            raise ChannelDown(
                f"telegram: the Bot API refused the bot token ({type(error).__name__})"
            ) from None
        except NetworkError as error:
            return PushResult(PushStatus.RETRY, error=_one_line(error.message))
        except TelegramError as error:
            return PushResult(PushStatus.RETRY, error=_one_line(error.message))
        return PushResult(PushStatus.SENT, message_id=str(sent.message_id))


def _seconds(error: RetryAfter) -> float:
    # Reading retry_after warns (PTBDeprecationWarning) until PTB_TIMEDELTA is set; either type is fine here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = error.retry_after
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]
