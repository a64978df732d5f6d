"""Every setting of jianbao, declared once: name, default and help.

The service's own settings are here; each channel declares its own (channels/<name>/settings.py) and
those every channel reads are in channels/settings.py. `Settings` is composed of them all, so
`settings.telegram_token` is still one field of one object. Read from the environment (prefix JIANBAO_)
and from a `.env` file in the working directory. `deploy/jianbao.env.sample` lists them all; a test keeps
the two in step.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from channels.registry import ChannelSettings


class Settings(BaseSettings, ChannelSettings):
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
    track_links: bool = Field(
        default=False,
        description="Rewrite links to PUBLIC_URL/r/TOKEN to count clicks (needs PUBLIC_URL).",
    )
    track_subscribers: bool = Field(
        default=False,
        description=(
            "Keep each subscriber's clicks (with TRACK_LINKS): a mail's tracked links carry the reader's "
            "signed id, and the console shows their clicks. Off: clicks are counted per link only."
        ),
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

    timezone: str = Field(
        default="Asia/Shanghai", description="Time zone of times given without one (broadcast --at)."
    )
    bounce_limit: int = Field(default=2, description="Hard bounces after which a subscriber is BOUNCED.")
    worker_lease_seconds: float = Field(
        default=60.0, description="A claimed delivery returns to the queue this long after its worker died."
    )
    worker_poll_seconds: float = Field(default=1.0, description="How often an idle worker looks for work.")
    worker_stop_seconds: float = Field(
        default=20.0,
        description="On SIGTERM, how long a worker lets deliveries in hand finish; the rest is handed back.",
    )
    max_attempts: int = Field(default=8, description="Attempts of one delivery before it counts as failed.")
    retry_seconds: float = Field(
        default=30.0,
        description="First retry delay of a failed send; it doubles with each attempt (max 1 h).",
    )
    channel_plugins: str = Field(
        default="",
        description=(
            "Channels kept outside jianbao, as package.module:CHANNEL references separated by commas "
            "(each a channels.channel.Channel)."
        ),
    )
    serve_worker: str = Field(
        default="auto",
        description="Run a broadcast worker inside `serve`: auto (with the SQLite default only), on, off.",
    )
    git_repo: str = Field(
        default="",
        description=(
            "A local clone of the newsletter's Git repository, which the push webhook (POST /hooks/git) "
            "updates with `git fetch` and imports changed issues from. Empty: the webhook is off (404)."
        ),
    )
    git_webhook_secret: str = Field(
        default="",
        description=(
            "The secret of the push webhook (GitHub/Gitea sign each delivery with it: X-Hub-Signature-256), "
            "at least 16 characters; required with GIT_REPO (`openssl rand -hex 32`)."
        ),
    )
    git_branch: str = Field(
        default="main",
        description="The branch whose pushes are imported; pushes to other refs are acknowledged, ignored.",
    )
    git_issue_dir: str = Field(
        default="",
        description="The folder of the repository holding the issue files (*.md). Empty: anywhere in it.",
    )


def load_settings() -> Settings:
    return Settings()
