"""Telegram's own settings (JIANBAO_TELEGRAM_...), composed into the service's settings."""

from __future__ import annotations

from pydantic import Field

from channels.settings import SharedSettings


class TelegramSettings(SharedSettings):
    telegram_token: str = Field(default="", description="Telegram bot token. Empty: Telegram is off.")
    telegram_secret: str = Field(
        default="", description="Secret of the Telegram webhook (X-Telegram-Bot-Api-Secret-Token header)."
    )
    telegram_api_url: str = Field(default="https://api.telegram.org", description="Telegram Bot API root.")
    telegram_rate: float = Field(
        default=30.0, description="Telegram messages per second over all workers (Bot API: about 30/s)."
    )
    telegram_chat_interval: float = Field(
        default=1.0, description="Seconds between two messages to one Telegram chat (Bot API: 1/s per chat)."
    )
