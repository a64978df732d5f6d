"""Every setting of jianbao, declared once: name, default and help.

Read from the environment (prefix JIANBAO_) and from a `.env` file in the working directory.
`deploy/jianbao.env.sample` lists them all; a test keeps the two in step.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="JIANBAO_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    database_url: str = Field(
        default="",
        description=(
            "Where issues and subscribers live. Empty: a SQLite file ./var/jianbao.db, created on first "
            "use. postgresql://user@host:5432/db for PostgreSQL."
        ),
    )
    public_url: str = Field(
        default="",
        description="The public root URL of this service (issue pages, unsubscribe and tracking links).",
    )
    secret_key: str = Field(
        default="",
        description=(
            "Signs unsubscribe/confirm tokens and click-tracking links. Set a long random value in "
            "production; empty means a random key per process (tokens die with it)."
        ),
    )
    mail_from: str = Field(
        default="嵌入式AI简报 <newsletter@localhost>",
        description="The From address of newsletter mail.",
    )
    track_links: bool = Field(
        default=False,
        description="Rewrite links to PUBLIC_URL/r/TOKEN to count clicks (needs PUBLIC_URL).",
    )
    utm: bool = Field(default=False, description="Add utm_source/utm_medium/utm_campaign to outgoing links.")
    admin_token: str = Field(
        default="", description="Bearer token of the admin API. Empty: the admin API is off."
    )
    wechat_appid: str = Field(default="", description="WeChat official account AppID.")
    wechat_secret: str = Field(
        default="", description="WeChat AppSecret (access tokens for customer-service and mass sends)."
    )
    wechat_token: str = Field(
        default="", description="WeChat server Token (webhook signatures). Empty: WeChat is off."
    )
    wechat_aes_key: str = Field(
        default="",
        description="WeChat EncodingAESKey (43 characters) for safe mode. Empty: compatible (plain) mode.",
    )
    wechat_api_url: str = Field(default="https://api.weixin.qq.com", description="WeChat API root.")
    telegram_token: str = Field(default="", description="Telegram bot token. Empty: Telegram is off.")
    telegram_secret: str = Field(
        default="", description="Secret of the Telegram webhook (X-Telegram-Bot-Api-Secret-Token header)."
    )
    telegram_api_url: str = Field(default="https://api.telegram.org", description="Telegram Bot API root.")
    smtp_url: str = Field(
        default="", description="SMTP server, e.g. smtp://127.0.0.1:1025. Empty: email is off."
    )


def load_settings() -> Settings:
    return Settings()
