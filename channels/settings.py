"""The settings every channel may read, beside its own (each channel's `settings` model).

The service's settings (bot/settings.py) are composed of these and of every registered channel's own
model, so a setting is still declared once (name, default, help) and read from JIANBAO_<NAME>.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class SharedSettings(BaseModel):
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
    rate_limits: bool = Field(
        default=True, description="Apply the send rates (off only for benchmarks against fakes)."
    )
    worker_concurrency: int = Field(default=64, description="Deliveries a worker sends at once.")
    send_timeout: float = Field(
        default=10.0,
        description="Seconds to wait for a platform's answer before a send is 'maybe delivered'.",
    )
