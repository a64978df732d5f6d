"""What every channel shares: how budgets are counted, and the renderer and sender interfaces.

A channel is one module here with two halves, like listmonk's messengers: `render_*` is a pure
function from an issue document to a payload (no network, no database), and a sender (in the
broadcast) pushes payloads to the platform. Limits are named constants in each channel's module with
their source; see docs/channels.md for the facts they come from.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from content.errors import Unavailable

# Jinja2 templates live at the top of the project (and are installed beside the packages: pyproject.toml).
TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"


def characters(text: str) -> int:
    return len(text)


def utf16_units(text: str) -> int:
    """What Telegram counts: UTF-16 code units (an emoji outside the BMP is two)."""
    return len(text.encode("utf-16-le")) // 2


def utf8_bytes(text: str) -> int:
    return len(text.encode("utf-8"))


class Payload(Protocol):
    """What a renderer returns: JSON for `jianbao render --json`, and a preview for editors."""

    def to_dict(self) -> dict[str, object]: ...

    def preview(self) -> str: ...


class PushStatus(StrEnum):
    """What one push to a platform came to, as a broadcast needs to know it."""

    SENT = "sent"
    UNCERTAIN = "uncertain"  # sent, but no answer in time: it may have been delivered; never resent
    RETRY = "retry"  # not delivered, may be tried again (throttled, 5xx, connection dropped, 4xx mail)
    FAILED = "failed"  # not delivered, and trying again will not help (refused content, bad address)
    BLOCKED = "blocked"  # the platform refuses this recipient for good (bot blocked, chat gone)
    BOUNCED = "bounced"  # the mail server refused the recipient (5xx)
    SKIPPED = "skipped"  # not for this recipient now (outside WeChat's 48 h window, unfollowed)


@dataclass(frozen=True, slots=True)
class PushResult:
    status: PushStatus
    message_id: str | None = None
    error: str | None = None  # one line, no secrets, no recipient address
    retry_after: float | None = None  # the platform's own "try again in N s"


class ChannelDown(Unavailable):
    """The channel cannot send anything (token refused, API root wrong): not one recipient's problem."""

    kind = "channel_down"


class Sender(Protocol):
    """The sending half of a channel (listmonk's messenger: Name/Push/Close)."""

    name: str

    async def close(self) -> None: ...
