"""Telegram as a `Channel`: chat ids for addresses, an issue as several Bot API messages, each delivery
paced per chat and over the account.

The transport (python-telegram-bot, httpx) is imported when a sender is opened, not with this module, so
processes that only render stay light.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from channels.base import PushResult
from channels.channel import Channel, Delivery, Outcome, Pace, Rendered
from channels.document import IssueDocument
from channels.parts import push_parts
from channels.telegram.payload import TelegramMessage, TelegramPayload
from channels.telegram.render import render_telegram
from channels.telegram.settings import TelegramSettings
from content.errors import BadInput

if TYPE_CHECKING:
    from channels.telegram.transport import TelegramSender

__all__ = ["TELEGRAM", "TelegramChannel", "TelegramOutbox", "TelegramSettings"]

# Chat ids are signed 64-bit integers (groups and channels are negative): Bot API, "Chat" (id).
_CHAT_ID = re.compile(r"-?[1-9][0-9]{0,18}")


@dataclass
class TelegramOutbox:
    """What a worker's Telegram deliveries share: the Bot API client, and the gap to keep between two
    messages to one chat."""

    transport: TelegramSender
    chat_interval: float

    async def close(self) -> None:
        await self.transport.close()


class TelegramChannel(Channel[TelegramSettings]):
    name: ClassVar[str] = "telegram"
    label: ClassVar[str] = "Telegram"
    settings: ClassVar[type[TelegramSettings]] = TelegramSettings
    fits_messages: ClassVar[bool] = True

    def check_address(self, address: str) -> str:
        address = address.strip(" ")
        if not _CHAT_ID.fullmatch(address) or not -(2**63) <= int(address) < 2**63:
            raise BadInput("a Telegram chat id is an integer, like 123456789 or -1001234567890")
        return address

    def off_reason(self, settings: TelegramSettings) -> str:
        return "" if settings.telegram_token else "JIANBAO_TELEGRAM_TOKEN is not set"

    def rate(self, settings: TelegramSettings) -> float:
        return max(settings.telegram_rate, 0.0) if settings.rate_limits else 0.0

    def render(
        self, document: IssueDocument, settings: TelegramSettings, *, max_messages: int | None = None
    ) -> Rendered:
        payload = render_telegram(document, max_messages=max_messages)
        return Rendered(
            payload=payload,
            links=payload.links,
            parts=len(payload.messages),
            sizes={
                "messages": len(payload.messages),
                "characters": [message.length for message in payload.messages],
            },
        )

    async def open_sender(self, settings: TelegramSettings) -> TelegramOutbox:
        from channels.telegram.transport import TelegramSender

        transport = TelegramSender(
            settings.telegram_token,
            settings.telegram_api_url,
            connections=max(1, settings.worker_concurrency),
            timeout=settings.send_timeout,
        )
        try:
            await transport.start()  # a refused token is ChannelDown, once, here
        except BaseException:
            await transport.close()
            raise
        interval = settings.telegram_chat_interval if settings.rate_limits else 0.0
        return TelegramOutbox(transport, interval)

    async def deliver(
        self, sender: TelegramOutbox, rendered: Rendered, delivery: Delivery, pace: Pace
    ) -> Outcome:
        payload = rendered.payload
        if not isinstance(payload, TelegramPayload):
            raise TypeError(f"telegram cannot send a {type(payload).__name__}")
        if delivery.address is None:
            raise ValueError("a Telegram delivery needs a chat id")
        chat_id = delivery.address
        last = 0.0  # when this delivery's previous message went out (0: none yet)

        async def push(message: TelegramMessage) -> PushResult:
            nonlocal last
            if last:
                gap = last + sender.chat_interval - time.monotonic()
                if gap > 0:
                    await asyncio.sleep(gap)
            await pace.slot()
            pushed = await sender.transport.push(chat_id, message)
            last = time.monotonic()
            return pushed

        return await push_parts(payload.messages, delivery, pace, push)


TELEGRAM = TelegramChannel()
