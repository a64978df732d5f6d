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
        default="",
        description=(
            "Bearer token of the admin API, at least 32 characters (`openssl rand -hex 32`). Empty: the "
            "admin API is off."
        ),
    )
    trusted_proxies: str = Field(
        default="",
        description=(
            "Reverse proxies whose X-Forwarded-For names the client, as addresses or networks separated "
            "by commas (127.0.0.1, 10.0.0.0/8). Empty: the connection's peer is the client."
        ),
    )
    signup_mails_per_client: int = Field(
        default=10,
        description="Sign-up confirmation mails one client address (IP) may cause per hour.",
    )
    signup_mails_per_hour: int = Field(
        default=500,
        description="Sign-up confirmation mails per hour over all clients; beyond it the form says to retry.",
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

    wechat_thumb_media_id: str = Field(
        default="",
        description="media_id of the cover image (permanent material) that WeChat mass-send articles need.",
    )
    timezone: str = Field(
        default="Asia/Shanghai", description="Time zone of times given without one (broadcast --at)."
    )
    telegram_rate: float = Field(
        default=30.0, description="Telegram messages per second over all workers (Bot API: about 30/s)."
    )
    telegram_chat_interval: float = Field(
        default=1.0, description="Seconds between two messages to one Telegram chat (Bot API: 1/s per chat)."
    )
    email_rate: float = Field(default=20.0, description="Newsletter mails per second over all workers.")
    smtp_connections: int = Field(default=4, description="SMTP connections each worker keeps open.")
    rate_limits: bool = Field(
        default=True, description="Apply the send rates above (off only for benchmarks against fakes)."
    )
    bounce_limit: int = Field(default=2, description="Hard bounces after which a subscriber is BOUNCED.")
    worker_concurrency: int = Field(default=64, description="Deliveries a worker sends at once.")
    worker_lease_seconds: float = Field(
        default=60.0, description="A claimed delivery returns to the queue this long after its worker died."
    )
    worker_poll_seconds: float = Field(default=1.0, description="How often an idle worker looks for work.")
    max_attempts: int = Field(default=8, description="Attempts of one delivery before it counts as failed.")
    retry_seconds: float = Field(
        default=30.0,
        description="First retry delay of a failed send; it doubles with each attempt (max 1 h).",
    )
    send_timeout: float = Field(
        default=10.0,
        description="Seconds to wait for a platform's answer before a send is 'maybe delivered'.",
    )
    serve_worker: str = Field(
        default="auto",
        description="Run a broadcast worker inside `serve`: auto (with the SQLite default only), on, off.",
    )


def load_settings() -> Settings:
    return Settings()
