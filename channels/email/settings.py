"""The email channel's own settings (the SMTP server, the sender, the rate), composed into the service's
settings."""

from __future__ import annotations

from pydantic import Field

from channels.settings import SharedSettings


class EmailSettings(SharedSettings):
    smtp_url: str = Field(
        default="", description="SMTP server, e.g. smtp://127.0.0.1:1025. Empty: email is off."
    )
    mail_from: str = Field(
        default="嵌入式AI简报 <newsletter@localhost>",
        description="The From address of newsletter mail.",
    )
    email_rate: float = Field(default=20.0, description="Newsletter mails per second over all workers.")
    smtp_connections: int = Field(default=4, description="SMTP connections each worker keeps open.")
